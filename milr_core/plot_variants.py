"""Figures of variants against their base (chapters 4-5: the input layer, the threshold and budget, the
preprocessing) and of held-out predictions (chapter 12). Drawing only; the numbers come from ``tables.py``
(``variant_ratios``, ``preprocessing_table``, ``held_out_table``) and the shared helpers from ``plot.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from milr_core.plot import (
    MARKERS,
    base2_ticks,
    cells_of,
    depth_colors,
    depth_legend,
    draw_cells,
    first_column_label,
    groups_of,
    label_of,
    legend_below,
    note,
    panels,
    records_of,
    tidy_log_axes,
)
from milr_core.tables import positive


def plot_ratio_vs_dw(ratios: pd.DataFrame, *, by: Sequence[str] = ("dataset", "variant"), ncols: int = 2) -> Figure:
    """Each network's value over its base variant's (``tables.variant_ratios``) against depth x width, one panel
    per variant that is not a base: seeds faint, cell medians large, colour the depth; missing ratios counted."""
    ratios = ratios[ratios["variant"] != ratios["base variant"]]
    groups = groups_of(ratios, by)
    colors = depth_colors(ratios["depth"]) if len(ratios) else {}
    fig, axes = panels(len(groups), ncols, sharey=True)
    for ax, (values, rows) in zip(axes, groups):
        ax.axhline(1.0, color="black", linewidth=0.8)
        rows = rows.assign(dw=rows["depth"] * rows["width"], ratio=positive(rows["ratio"]))
        for depth, color in colors.items():
            seeds = rows[(rows["depth"] == depth) & rows["ratio"].notna()]
            ax.scatter(seeds["dw"], seeds["ratio"], color=color, s=10, alpha=0.45, linewidths=0)
            medians = seeds.groupby("dw")["ratio"].apply(lambda r: float(np.exp(np.log(r).median())))
            ax.scatter(medians.index, medians, color=color, s=42, edgecolors="black", linewidths=0.6, zorder=3)
        if missing := int(rows["ratio"].isna().sum()):
            note(ax, f"{missing} without a ratio", "upper right")
        ax.set(xscale="log", yscale="log", xlabel="depth × width",
               title=f"{label_of(values)} / {rows['base variant'].iloc[0]}")  # fmt: skip
        tidy_log_axes(ax)
        first_column_label(ax, "ratio to the base variant")
    if not groups:
        note(axes[0], "no variant in the store yet", "center")
    depth_legend(fig, colors)
    return fig


def plot_variants(ratios: pd.DataFrame, *, by: str | Sequence[str] = ("dataset",), rtol: float | None = None) -> Figure:
    """Each variant's value over its base's (``tables.variant_ratios``) per network, variants along x (the base
    left out), colour the (depth, width), bar the median, one row per group; ``rtol`` shades the resolution."""
    groups = groups_of(ratios, by)
    cells = ratios[["depth", "width"]].drop_duplicates().sort_values(["depth", "width"])
    palette = dict(zip(map(tuple, cells.to_numpy()), sns.color_palette("colorblind", max(len(cells), 1))))
    fig, axes = panels(len(groups), 1, height=2.6)
    rng = np.random.default_rng(0)
    for ax, (values, rows) in zip(axes, groups):
        ax.axhline(1.0, color="black", linewidth=0.8)
        if rtol:
            ax.axhspan(1 / (1 + rtol), 1 + rtol, color="0.88", zorder=0)
        shown = [v for v in dict.fromkeys(rows["variant"]) if v not in set(rows["base variant"])]
        for x, variant in enumerate(shown):
            points = rows[rows["variant"] == variant].assign(ratio=lambda r: positive(r["ratio"]))
            points = points.dropna(subset="ratio")
            ax.scatter(x + rng.uniform(-0.18, 0.18, len(points)), points["ratio"], s=22, alpha=0.85, linewidths=0,
                       c=[palette[(d, w)] for d, w in zip(points["depth"], points["width"])])  # fmt: skip
            if len(points):
                ax.plot([x - 0.3, x + 0.3], [points["ratio"].median()] * 2, color="black", linewidth=2.2)
        if not shown or not ax.collections:
            note(ax, "no variant in the store yet", "center")
        ax.set_xticks(range(len(shown)), shown, rotation=20, ha="right")
        ax.set_xlim(-0.6, max(len(shown), 1) - 0.4)
        ax.set(yscale="log", title=f"{label_of(values)}: base {rows['base variant'].iloc[0]}",
               ylabel="η* / η* of the base")  # fmt: skip
        tidy_log_axes(ax)
    if not groups:
        note(axes[0], "no variant in the store yet", "center")
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=f"d={d}, w={w}")
               for (d, w), c in palette.items()]  # fmt: skip
    handles.append(Line2D([], [], color="black", linewidth=2.2, label="median"))
    handles += [Patch(color="0.88", label=f"within the search's tolerance ({rtol:g})")] if rtol else []
    legend_below(fig, handles, ncols=4)
    return fig


def plot_preprocessing(frame: pd.DataFrame, *, by: str | Sequence[str] = ("dataset",)) -> Figure:
    """eta* (left) and lambda_1 at init (right: raw filled, effective hollow) against depth, one row per group,
    from both grids of the preprocessing experiment. Colour: the preprocessing (``variant``); marker: width."""
    groups = groups_of(frame, by)
    names = list(dict.fromkeys(frame["variant"]))
    palette = dict(zip(names, sns.color_palette("colorblind", max(len(names), 1))))
    widths = sorted(frame["width"].unique())
    markers = dict(zip(widths, MARKERS * 3))
    fig, axes = panels(2 * len(groups), 2, height=2.6)
    for row, (values, rows) in enumerate(groups):
        eta_ax, lam_ax = axes[2 * row], axes[2 * row + 1]
        for (name, width), part in rows.groupby(["variant", "width"], sort=False):
            for ax, quantity, filled in ((eta_ax, "eta_star", True), (lam_ax, "lambda_1", True),
                                         (lam_ax, "lambda_1_eff", False)):  # fmt: skip
                if quantity in part and len(records_of(part, quantity)):
                    draw_cells(ax, cells_of(records_of(part, quantity), quantity), "depth", palette[name],
                               marker=markers[width], filled=filled, connect=True, size=30)  # fmt: skip
        eta_ax.set(ylabel="η*", title=f"{label_of(values)}: η*")
        lam_ax.set(ylabel="λ₁ at initialisation", title=f"{label_of(values)}: λ₁ (hollow: effective)")
        for ax in (eta_ax, lam_ax):
            ax.set(xscale="log", yscale="log", xlabel="depth")
            tidy_log_axes(ax)
            base2_ticks(ax.xaxis, 5)
            if not ax.has_data():
                note(ax, "not in the store yet")
    handles = [Patch(color=palette[n], label=str(n)) for n in names]
    handles += [Line2D([], [], marker=markers[w], linestyle="", color="0.4", label=f"width {w}") for w in widths]
    handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="0.4",
                       label="λ₁ effective")]  # fmt: skip
    legend_below(fig, handles, ncols=4)
    return fig


def plot_held_out(table: pd.DataFrame, *, by: str | Sequence[str] = ("dataset",), ncols: int = 2) -> Figure:
    """Held-out predictions (``predict.leave_one_cell_out``) against the measured eta*, one panel per group: the
    interval as a bar, colour the depth, a miss ringed red; lines: equality and a factor 2 (y spans x/÷ 4)."""
    groups = groups_of(table, by)
    colors = depth_colors(table["depth"])
    fig, axes = panels(len(groups), ncols)
    for ax, (values, rows) in zip(axes, groups):
        for _, row in rows.iterrows():
            color = colors[int(row["depth"])]
            if np.isfinite(row["low"]):
                ax.plot([row["measured"]] * 2, [row["low"], row["high"]], color=color, linewidth=1.2, alpha=0.7)
            point = (row["measured"], row["predicted"])
            ax.scatter(*point, color=color, s=40, edgecolors="black", linewidths=0.5, zorder=3)
            if row["covered"] is False:
                ax.scatter(*point, s=130, facecolors="none", edgecolors="red", linewidths=1.4, zorder=4)
        points = pd.concat([rows["measured"], rows["predicted"]])
        span = np.geomspace(points.min() / 1.5, points.max() * 1.5, 20)
        ax.plot(span, span, color="black", linewidth=1)
        for factor in (0.5, 2.0):
            ax.plot(span, factor * span, color="0.5", linestyle=":", linewidth=1)
        covered = rows["covered"].dropna()
        coverage = f"{int(covered.astype(bool).sum())}/{len(covered)} inside" if len(covered) else "no intervals"
        ax.set(xscale="log", yscale="log", xlabel="measured η* (median over seeds)",
               title=f"{label_of(values)}: {coverage}", ylim=(points.min() / 4, points.max() * 4))  # fmt: skip
        tidy_log_axes(ax)
        first_column_label(ax, "predicted η* (cell left out)")
    extra = [Line2D([], [], color="black", label="predicted = measured"),
             Line2D([], [], color="0.5", linestyle=":", label="factor 2"),
             Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="red", markersize=9,
                    label="interval misses")]  # fmt: skip
    depth_legend(fig, colors, extra)
    return fig
