"""Chapter 1's figures: Algorithm 1 at work (the ladder of probes, their accuracy curves) and how precisely eta* is
defined (its band across arithmetics against its seed spread). Drawing only; the numbers come from the store's
ledgers and ``resolution.py``.
"""

from __future__ import annotations

import textwrap

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from milr_core.config import DATASET_NAMES
from milr_core.plot import MARKERS, legend_below, log_ticks, note, panels, tidy_log_axes
from milr_core.resolution import COMMITTED, REFERENCE
from milr_core.style import COLUMN_WIDTH_IN, OUTCOME_STYLE

DATASET_COLORS = {"mnist": "#0072b2", "cifar10": "#d55e00", "gaussians": "#009e73", "fashion_mnist": "#cc79a7"}


def plot_bisection_ladder(ledger: pd.DataFrame, *, eta_star: float | None = None,
                          bracket: Sequence[float] | None = None, title: str | None = None) -> Figure:  # fmt: skip
    """Each probe's learning rate against its round, marked by outcome, with eta* and the final bracket.
    ``ledger``: one row per probe (``SeedSearch.ledger_records``); ``above`` rows (``probe_above``) at the right."""
    above = ledger["above"].fillna(False).astype(bool) if "above" in ledger else pd.Series(False, index=ledger.index)
    path, extra = ledger[~above], ledger[above]
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.2), layout="constrained")
    if bracket is not None:
        ax.axhspan(*bracket, color="0.85", zorder=0)
    ax.plot(path["round"], path["lr"], color="0.6", linewidth=0.9, zorder=1)
    last = int(path["round"].max()) if len(path) else 0
    for outcome, style in OUTCOME_STYLE.items():
        for part, x in ((path, path["round"]), (extra, pd.Series(last + 1.5, index=extra.index))):
            hit = part["outcome"] == outcome
            ax.scatter(x[hit], part.loc[hit, "lr"], s=50, zorder=3, edgecolors="black", linewidths=0.5, **style)
    if eta_star is not None:
        ax.axhline(eta_star, color="black", linestyle="--", linewidth=1.1)
    ticks = list(range(1, last + 1, 1 if last <= 16 else 2))
    ax.set_xticks(ticks + [last + 1.5] * bool(len(extra)), [str(t) for t in ticks] + ["above η*"] * bool(len(extra)))
    ax.set(yscale="log", xlabel="round (one probe per round on the path)", ylabel="learning rate", title=title)
    tidy_log_axes(ax)
    handles = [Line2D([], [], linestyle="", markeredgecolor="black", label=o, markersize=7, **s)
               for o, s in OUTCOME_STYLE.items()]  # fmt: skip
    handles += [Patch(color="0.85", label="final bracket")] if bracket is not None else []
    handles += [Line2D([], [], color="black", linestyle="--", label=f"η* = {eta_star:.3g}")] if eta_star else []
    legend_below(fig, handles, ncols=5)
    return fig


def plot_accuracy_curves(ledger: pd.DataFrame, *, threshold: float) -> Figure:
    """Validation accuracy (top) and training-batch loss (bottom) of every probe against the step, coloured by LR.
    ``ledger``'s ``accuracy`` and ``loss``: [step, value] pairs per probe; each curve ends in its outcome's marker."""
    lrs = ledger["lr"].astype(float)
    norm = LogNorm(lrs.min(), lrs.max()) if lrs.min() < lrs.max() else LogNorm(lrs.min() / 2, lrs.max() * 2)
    cmap = plt.get_cmap("viridis")
    fig, (acc_ax, loss_ax) = plt.subplots(2, 1, figsize=(COLUMN_WIDTH_IN, 5.0), sharex=True, layout="constrained")
    for _, probe in ledger.sort_values("lr").iterrows():
        color, style = cmap(norm(probe["lr"])), OUTCOME_STYLE[probe["outcome"]]
        for ax, curve in ((acc_ax, probe.get("accuracy")), (loss_ax, probe.get("loss"))):
            points = np.asarray(curve if isinstance(curve, (list, tuple, np.ndarray)) else [], dtype=float)
            points = points[np.all(np.isfinite(points), axis=1)] if points.ndim == 2 else np.empty((0, 2))
            if len(points):
                ax.plot(points[:, 0], points[:, 1], color=color, linewidth=1.1)
                ax.scatter(*points[-1], color=color, marker=style["marker"], s=30, edgecolors="black", linewidths=0.4,
                           zorder=3)  # fmt: skip
    acc_ax.axhline(threshold, color="black", linestyle="--", linewidth=1)
    acc_ax.text(0.01, threshold, f"t = {threshold:g}", transform=acc_ax.get_yaxis_transform(), va="bottom", fontsize=9)
    acc_ax.set(ylabel="validation accuracy")
    loss_ax.set(xlabel="SGD step", ylabel="training-batch loss", yscale="log")
    tidy_log_axes(loss_ax)
    log_ticks(fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=[acc_ax, loss_ax], shrink=0.8, pad=0.01,
                           label="learning rate").ax.yaxis)  # fmt: skip
    handles = [Line2D([], [], linestyle="", color="0.4", markeredgecolor="black", label=f"ends: {o}",
                      marker=s["marker"], markersize=7) for o, s in OUTCOME_STYLE.items()]  # fmt: skip
    legend_below(fig, handles, ncols=3)
    return fig


def plot_resolution(table: pd.DataFrame) -> Figure:
    """Left: each cell's band of eta* across arithmetics (median over seeds of max / min) against its spread over
    seeds, log-log, with the diagonal (a band below it lies inside the seed term). Right: each perturbation's
    eta* over the reference's (median over seeds), one point per cell, with the search's tolerance 1 +- rtol."""
    fig, (left, right) = panels(2, 2, height=3.1)
    if table.empty:
        for ax in (left, right):
            note(ax, "the resolution grid is not stored yet", where="center")
        return fig
    cells = table.drop_duplicates(subset=["dataset", "depth", "width"])
    depths = sorted(cells["depth"].unique())
    for _, cell in cells.iterrows():
        left.scatter(cell["seed spread"], cell["band"], color=DATASET_COLORS.get(cell["dataset"], "0.4"), s=40,
                     marker=MARKERS[depths.index(cell["depth"]) % len(MARKERS)], edgecolors="black", linewidths=0.4)  # fmt: skip
    span = [min(cells["seed spread"].min(), cells["band"].min(), 1.0), max(cells["seed spread"].max(), cells["band"].max()) * 1.1]
    left.plot(span, span, color="0.5", linestyle="--", linewidth=1)
    left.set(xscale="log", yscale="log", xlabel="spread over seeds (max / min)", ylabel="band across arithmetics")
    variants = [v for v in table["variant"].unique() if v != REFERENCE]
    order = sorted(variants, key=lambda v: (v == COMMITTED, v))
    for position, variant in enumerate(order):
        rows = table[table["variant"] == variant]
        jitter = position + np.linspace(-0.15, 0.15, len(rows)) if len(rows) > 1 else np.array([position])
        right.scatter(jitter, rows["ratio"], s=26, color=[DATASET_COLORS.get(d, "0.4") for d in rows["dataset"]],
                      edgecolors="black", linewidths=0.3, zorder=3)  # fmt: skip
    right.axhline(1.0, color="black", linewidth=0.8)
    for bound in (1.05, 1 / 1.05):
        right.axhline(bound, color="0.6", linewidth=0.8, linestyle=":")
    right.set_xticks(range(len(order)), [textwrap.fill(v, 13) for v in order], fontsize=8)
    right.set(yscale="log", ylabel=f"η* / η* ({REFERENCE})")
    for ax in (left, right):
        tidy_log_axes(ax)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, markeredgecolor="black", label=DATASET_NAMES[d])
               for d, c in DATASET_COLORS.items() if d in set(table["dataset"])]  # fmt: skip
    handles += [Line2D([], [], marker=MARKERS[i % len(MARKERS)], linestyle="", color="0.6", label=f"depth {d}")
                for i, d in enumerate(depths)]  # fmt: skip
    legend_below(fig, handles, ncols=4)
    return fig
