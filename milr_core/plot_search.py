"""Chapter 1's figures: Algorithm 1 at work (the ladder of probes, their accuracy curves) and how precisely eta* is
defined (its band across arithmetics against its seed spread). Drawing only; the numbers come from the store's
ledgers and ``resolution.py``.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from milr_core.plot import DATASET_NAMES, MARKERS, legend_below, note, panels, tidy_log_axes
from milr_core.resolution import COMMITTED, REFERENCE

DATASET_COLORS = {"mnist": "#0072b2", "cifar10": "#d55e00", "gaussians": "#009e73", "fashion_mnist": "#cc79a7"}


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
