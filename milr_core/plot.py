"""The book's figures, drawing only: each function takes a tidy frame or table and returns a matplotlib Figure.

Numbers come from ``tables.py`` / ``fit.py``, captions and glue from ``style.py``. Figures are the column's
width (``style.COLUMN_WIDTH_IN``): panels wrap into rows, log axes carry few plain labels ("100", "1k"),
text is >= 9 pt, colours are colour-blind safe, outcomes look alike everywhere (``style.OUTCOME_STYLE``).
A **censored** cell (every seed's search failed) is drawn, never dropped: a hollow triangle at its bound,
pointing where eta* lies (down: ``no_success``, below; up: ``no_failure``), as the fits keep it
(``fit.cell_values``). Shared helpers for other figure modules: ``panels``, ``depth_colors``,
``depth_legend``, ``log_ticks``, ``tidy_log_axes``. No function calls ``plt.show`` or picks a backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from milr_core.fit import MAX_DEPTH_OVER_WIDTH, cell_values, in_regime
from milr_core.style import CENSORED_LABEL, CENSORED_MARKER, COLUMN_WIDTH_IN, OUTCOME_STYLE
from milr_core.tables import positive

DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "gaussians": "Gaussians"}
SYMBOLS = {"eta_star": "η*", "late_max_lr": "late max LR", "lambda_1": "λ₁", "lambda_1_eff": "λ₁ effective"}
FIT_STYLE = {"all cells": {"color": "0.45", "linestyle": "--"}, "in regime": {"color": "black", "linestyle": "-"}}
MARKERS = ("o", "s", "D", "^", "P", "X")
SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
LEGEND_ROW_IN = 0.28  # figure height added per row of a legend below the panels


# ----------------------------------------------------------------------------------------------------------
# shared helpers: panels, colours, legends, ticks


def panels(n: int, ncols: int = 2, *, sharex: bool = False, sharey: bool = False, height: float | None = None):
    """(fig, axes): ``n`` axes on a grid of at most ``ncols`` columns, the column's width; more panels wrap into
    rows (taller, never wider). ``height``: a row's, in inches (default: 0.8 of a panel's width, at most 3)."""
    n, ncols = max(int(n), 1), max(1, min(ncols, max(int(n), 1)))
    nrows = -(-n // ncols)
    height = height if height is not None else min(3.0, 0.8 * COLUMN_WIDTH_IN / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(COLUMN_WIDTH_IN, height * nrows), squeeze=False, sharex=sharex,
                             sharey=sharey, layout="constrained")  # fmt: skip
    axes = list(grid.flat)
    fig.milr_free_slots = [ax.get_subplotspec() for ax in axes[n:]]  # where ``legend_below`` puts a legend
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def depth_colors(depths) -> dict:
    """One colour per depth, dark (shallow) to light green (deep, viridis), the same in every panel of a figure."""
    depths = sorted({int(d) for d in depths})
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(depths), 2)))
    return {d: tuple(colors[i]) for i, d in enumerate(depths)}


def depth_legend(fig: Figure, colors: dict, extra: list | None = None, *, label: str = "depth") -> None:
    """The legend (``legend_below``): one entry per depth (``label`` names what the colours are), then ``extra``."""
    handles = [Line2D([], [], marker="o", linestyle="", color=c, markeredgecolor="black", markeredgewidth=0.5,
                      label=f"{label} {d}") for d, c in colors.items()]  # fmt: skip
    legend_below(fig, handles + list(extra or []))


def legend_below(fig: Figure, handles: list, ncols: int = 4) -> None:
    """The legend in the figure's empty grid slot (``panels`` leaves one when panels do not fill the grid),
    else below the panels in ``ncols`` columns, the figure taller by its rows (the panels keep their size)."""
    if not handles:
        return
    if getattr(fig, "milr_free_slots", None) and len(handles) <= 16:
        slot = fig.add_subplot(fig.milr_free_slots.pop(0))
        slot.axis("off")
        slot.legend(handles=handles, loc="center", ncols=1 + (len(handles) > 8), frameon=False, fontsize=9)
        return
    ncols = min(ncols, len(handles))
    fig.set_figheight(fig.get_figheight() + LEGEND_ROW_IN * -(-len(handles) // ncols))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False, fontsize=9,
               handletextpad=0.3, columnspacing=1.2)  # fmt: skip


class FewLogTicks(ticker.Locator):
    """At most ``most`` major ticks on a log axis: decades, or 1-3, 1-2-5 steps when the axis spans too little."""

    STEPS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0))

    def __init__(self, most: int = 5):
        self.most = most

    def __call__(self):
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin, vmax):
        vmin, vmax = sorted((float(vmin), float(vmax)))
        if not (vmax > 0 and math.isfinite(vmax)):
            return []
        vmin = vmin if vmin > 0 else vmax / 1e3
        decades = range(math.floor(math.log10(vmin)), math.ceil(math.log10(vmax)) + 1)
        inside = lambda v: vmin * (1 - 1e-9) <= v <= vmax * (1 + 1e-9)  # noqa: E731
        for subs in self.STEPS:
            ticks = [s * 10.0**d for d in decades for s in subs if inside(s * 10.0**d)]
            if len(ticks) >= (2 if len(subs) == 1 else 3):
                return ticks[:: -(-len(ticks) // self.most)]
        return [v for v in ticker.MaxNLocator(3, steps=[1, 2, 2.5, 5, 10]).tick_values(vmin, vmax) if inside(v)]


def plain_number(value: float, _position=None) -> str:
    """A tick label without mathtext: 0.05, 2, 100, 1k, 20k; beyond, powers of ten in Unicode (10⁶, 2×10⁻⁴)."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value / 1e3:g}k" if value >= 1e3 else f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    power, mantissa = "10" + str(exponent).translate(SUPERSCRIPTS), round(value / 10.0**exponent, 6)
    return power if mantissa == 1 else f"{mantissa:g}×{power}"


def log_ticks(axis, most: int = 5) -> None:
    """Few plain-number labels on a log ``axis`` (``FewLogTicks``, ``plain_number``), unlabelled minor ticks:
    matplotlib's defaults label decades or minor ticks in mathtext, which collide on a narrow panel."""
    axis.set_major_locator(FewLogTicks(most))
    axis.set_major_formatter(ticker.FuncFormatter(plain_number))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=tuple(np.arange(2.0, 10.0)), numticks=100))
    axis.set_minor_formatter(ticker.NullFormatter())


def tidy_log_axes(ax) -> None:
    """``log_ticks`` on whichever axes of ``ax`` are logarithmic."""
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            log_ticks(axis)


def base2_ticks(axis, most: int = 6, fractions: bool = False) -> None:
    """Powers of two on a log axis of depths or widths (16, 64, 256, 1024) or, with ``fractions``, of ratios
    such as depth / width (1/256, 1/16, 1)."""
    axis.set_major_locator(ticker.LogLocator(base=2, numticks=most))
    plain = lambda v, _: f"1/{round(1 / v)}" if fractions and v < 1 else f"{v:g}"  # noqa: E731
    axis.set_major_formatter(ticker.FuncFormatter(plain))
    axis.set_minor_locator(ticker.NullLocator())


def note(ax, text: str, where: str = "lower left") -> None:
    """A short note inside a panel (9 pt); ``where="center"`` for a panel with nothing else, its axes hidden."""
    x, ha = (0.03, "left") if "left" in where else (0.97, "right") if "right" in where else (0.5, "center")
    y, va = (0.04, "bottom") if "lower" in where else (0.96, "top") if "upper" in where else (0.5, "center")
    if where == "center":
        ax.set_axis_off()
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=9, color="0.25")


# ----------------------------------------------------------------------------------------------------------
# groups and cells


def label_of(values: dict) -> str:
    """A group's label: its values joined by " · ", dataset names spelled as in the text (CIFAR-10)."""
    return " · ".join(DATASET_NAMES.get(str(v), str(v)) for v in values.values())


def groups_of(frame: pd.DataFrame, by: str | Sequence[str]) -> list[tuple[dict, pd.DataFrame]]:
    """The groups of ``frame`` in order of appearance, each with its dict of ``by`` values."""
    by = [by] if isinstance(by, str) else list(by)
    return [(dict(zip(by, key if isinstance(key, tuple) else (key,))), rows)
            for key, rows in frame.groupby(by, sort=False)]  # fmt: skip


def matching(table: pd.DataFrame, values: dict) -> pd.DataFrame:
    """The rows of a summary table that belong to the group ``values`` (on the columns it has)."""
    keep = pd.Series(True, index=table.index)
    for column, value in values.items():
        keep &= table[column] == value if column in table else True
    return table[keep]


def title_of(values: dict, rows: pd.DataFrame) -> str:
    """The group's label, with the threshold t when the group has one."""
    thresholds = rows["threshold"].dropna().unique() if "threshold" in rows else []
    return label_of(values) + (f" (t = {thresholds[0]:g})" if len(thresholds) == 1 else "")


def first_column_label(ax, text: str) -> None:
    if ax.get_subplotspec().is_first_col():
        ax.set_ylabel(text)


def cells_of(rows: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """The cells of one group as the fits see them (``fit.cell_values``: medians over seeds, censored cells at their
    bound; then those where no LR reached t, at their best accuracy's LR): depth, width, n_seeds, censored ("",
    "below", "above", "unreached"), dw, value, in_regime."""
    cells = cell_values(rows, quantity)
    table, unreached = cells.table.assign(value=np.exp(cells.log_y)), cells.unreached.rename(columns={"lr": "value"})
    table = pd.concat([table, unreached.assign(censored="unreached")], ignore_index=True) if len(unreached) else table
    return table.assign(dw=table["depth"] * table["width"], in_regime=in_regime(table) if len(table) else [])


def records_of(rows: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """The rows that measured ``quantity`` (a frame may mix kinds, e.g. eta* and sharpness records of one network):
    those with a value and, for eta*, those whose search failed (censored)."""
    measured = rows[quantity].notna() if quantity in rows else pd.Series(False, index=rows.index)
    failed = rows["status"].isin(["no_success", "no_failure"]) if "status" in rows and quantity == "eta_star" else False
    return rows[measured | failed]


def draw_seeds(ax, rows: pd.DataFrame, quantity: str, x: pd.Series, color) -> None:
    """One small, faint point per seed with a value (a censored seed has none: its cell shows the bound)."""
    value = positive(rows[quantity])
    ax.scatter(x[value.notna()], value[value.notna()], color=color, s=10, alpha=0.45, linewidths=0, zorder=2)


def draw_cells(ax, cells: pd.DataFrame, x: str, color, *, regime: bool = False, marker: str = "o",
               filled: bool = True, connect: bool = False, size: float = 42) -> None:  # fmt: skip
    """Each cell's median (filled, black edge; ``filled=False``: hollow) or, censored, a hollow triangle at its
    bound. ``regime``: cells outside the regime are faded. ``connect`` joins the measured cells along ``x``."""
    measured = cells[cells["censored"] == ""].sort_values(x)
    if connect and len(measured) > 1:
        ax.plot(measured[x], measured["value"], color=color, linewidth=1.2, zorder=2)
    strong = measured["in_regime"].astype(bool) if regime else pd.Series(True, index=measured.index)
    for part, alpha, edge in ((measured[strong], 1.0, "black"), (measured[~strong], 0.4, "none")):
        ax.scatter(part[x], part["value"], marker=marker, s=size, facecolors=color if filled else "white",
                   edgecolors=edge if filled else color, linewidths=0.6 if filled else 1.3, alpha=alpha, zorder=3)
    for side, symbol in CENSORED_MARKER.items():
        part = cells[cells["censored"] == side]
        face = {"facecolors": "white", "edgecolors": color} if symbol != "x" else {"color": color}
        ax.scatter(part[x], part["value"], marker=symbol, s=size * 1.3, linewidths=1.4, zorder=4,
                   gid=f"censored-{side}", **face)  # fmt: skip


def censored_handles(*cells: pd.DataFrame) -> list:
    """Legend entries for the censored cells that occur in ``cells`` (``cells_of`` frames)."""
    sides = set().union(*(set(c["censored"]) for c in cells if "censored" in c)) if cells else set()
    return [Line2D([], [], marker=CENSORED_MARKER[side], linestyle="", markerfacecolor="white", markeredgecolor="0.3",
                   markersize=7, label=label) for side, label in CENSORED_LABEL.items() if side in sides]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# chapter 1: one search


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


# ----------------------------------------------------------------------------------------------------------
# chapters 2-4: eta* against d w, the regime, residuals, width at fixed depth


def draw_fits(ax, fits: pd.DataFrame, values: dict, cells: pd.DataFrame) -> None:
    """Each fit of ``fits`` (``tables.fits_table``) for this group: c (d w)^-alpha over the cells it covers."""
    for _, row in matching(fits, values).iterrows():
        scope = row.get("cells", "all cells")
        covered = cells[cells["in_regime"].astype(bool)] if scope == "in regime" else cells
        if covered.empty or not (np.isfinite(row.get("alpha", np.nan)) and np.isfinite(row.get("c", np.nan))):
            continue
        xs = np.geomspace(covered["dw"].min(), covered["dw"].max(), 50)
        style = FIT_STYLE.get(scope, FIT_STYLE["all cells"])
        ax.plot(xs, row["c"] * xs ** -row["alpha"], linewidth=1.4, zorder=4, **style)


def plot_power_law(frame: pd.DataFrame, fits: pd.DataFrame | None = None, *, by: str | Sequence[str] = ("dataset",),
                   quantity: str = "eta_star", ncols: int = 2, regime: bool = True) -> Figure:  # fmt: skip
    """eta* against depth x width (log-log), one panel per group: seeds faint, cells (medians) large, colour the
    depth; with ``regime`` the cells outside ``fit.REGIME_RULE`` faded. ``fits`` (``tables.fits_table``) adds the
    fit over all cells (dashed grey) and the fit in the regime (solid black, over its cells)."""
    groups = groups_of(frame, by)
    colors = depth_colors(frame["depth"])
    fig, axes = panels(len(groups), ncols)
    drawn = []
    for ax, (values, rows) in zip(axes, groups):
        drawn.append(cells := cells_of(rows, quantity))
        for depth, color in colors.items():
            seeds = rows[rows["depth"] == depth]
            draw_seeds(ax, seeds, quantity, seeds["depth"] * seeds["width"], color)
            draw_cells(ax, cells[cells["depth"] == depth], "dw", color, regime=regime)
        if fits is not None:
            draw_fits(ax, fits, values, cells)
        if (cells["censored"] == "").sum() == 0:
            note(ax, "no search converged")
        ax.set(xscale="log", yscale="log", xlabel="depth × width", title=title_of(values, rows))
        tidy_log_axes(ax)
        first_column_label(ax, SYMBOLS.get(quantity, quantity))
    if not groups:
        note(axes[0], "no cell in the store yet", "center")
    extra = [Line2D([], [], marker="o", linestyle="", color="0.5", markersize=4, alpha=0.6, label="one seed")]
    if regime:
        cell = {"marker": "o", "linestyle": "", "color": "0.5"}
        extra += [Line2D([], [], markeredgecolor="black", label="cell, in regime", **cell),
                  Line2D([], [], alpha=0.4, label="cell, outside", **cell)]
    extra += censored_handles(*drawn)
    extra += [Line2D([], [], label=f"fit, {scope}", **style) for scope, style in FIT_STYLE.items()] * (fits is not None)
    depth_legend(fig, colors, extra)
    return fig


def plot_residuals(resid: pd.DataFrame, *, by: str | Sequence[str] = ("dataset",),
                   cutoff: float | None = MAX_DEPTH_OVER_WIDTH, ncols: int = 2) -> Figure:  # fmt: skip
    """Each cell's log residual (``tables.residuals_table``) against depth / width, one panel per group: cells in
    the regime strong, others faded, censored ones triangles (a bound); ``cutoff``: the regime's largest d / w."""
    groups = groups_of(resid, by)
    colors = depth_colors(resid["depth"]) if len(resid) else {}
    fig, axes = panels(len(groups), ncols, sharey=True)
    for ax, (values, rows) in zip(axes, groups):
        ax.axhline(0.0, color="black", linewidth=0.8)
        for depth, color in colors.items():
            draw_cells(ax, rows[rows["depth"] == depth].assign(value=lambda r: r["residual"]), "depth_over_width",
                       color, regime=True)  # fmt: skip
        if cutoff is not None:
            ax.axvline(cutoff, color="0.3", linestyle=":", linewidth=1.3)
        ax.set(xscale="log", xlabel="depth / width", title=label_of(values))
        base2_ticks(ax.xaxis, fractions=True)
        first_column_label(ax, "ln(η* / fitted η*)")
    if not groups:
        note(axes[0], "no group has a fit in the regime", "center")
    extra = [Line2D([], [], color="0.3", linestyle=":", label="largest d/w in the regime")] if cutoff else []
    depth_legend(fig, colors, extra + censored_handles(resid))
    return fig


def plot_alpha_vs_cutoff(table: pd.DataFrame, *, by: str | Sequence[str] = ("dataset",)) -> Figure:
    """alpha (left, with its interval) and R^2 (right) against the largest d / w kept, one row per group
    (``tables.alpha_vs_cutoff``): one series per minimum depth; a black ring marks our rule."""
    groups = groups_of(table, by)
    depths = sorted(table["min depth"].dropna().astype(int).unique()) or [1]
    colors = depth_colors(depths)
    fig, axes = panels(2 * len(groups), 2, sharex=True, height=2.2)
    cutoffs = table.sort_values("max d/w value", ascending=False)["max d/w"].drop_duplicates().tolist()
    position = {c: i for i, c in enumerate(cutoffs)}
    for row, (values, rows) in enumerate(groups):
        alpha_ax, r2_ax = axes[2 * row], axes[2 * row + 1]
        for k, depth in enumerate(depths):
            part = rows[(rows["min depth"] == depth) & rows["alpha"].notna()]
            x = part["max d/w"].map(position) + 0.12 * (k - (len(depths) - 1) / 2)
            error = [(part["alpha"] - part["alpha low"]).fillna(0), (part["alpha high"] - part["alpha"]).fillna(0)]
            style = {"color": colors[depth], "markersize": 5, "markeredgecolor": "black", "markeredgewidth": 0.4}
            alpha_ax.errorbar(x, part["alpha"], yerr=error, fmt="o", capsize=2, **style)
            r2_ax.plot(x, part["R^2"], marker="o", linewidth=1, **style)
            ours = part["our rule"].fillna(False).astype(bool)
            for ax, column in ((alpha_ax, "alpha"), (r2_ax, "R^2")):
                ax.scatter(x[ours], part.loc[ours, column], s=160, facecolors="none", edgecolors="black",
                           linewidths=1.5, zorder=4)  # fmt: skip
        alpha_ax.set(ylabel="α", title=f"{label_of(values)}: α")
        r2_ax.set(ylabel="R²", title=f"{label_of(values)}: R²", ylim=(min(0.0, r2_ax.get_ylim()[0]), 1.02))
    for ax in axes:
        ax.set_xticks(range(len(cutoffs)), cutoffs)
        ax.set_xlim(-0.5, len(cutoffs) - 0.5)
    for ax in axes[-2:]:
        ax.set_xlabel("largest depth / width kept")
    ring = Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black", markersize=10,
                  markeredgewidth=1.5, label="our rule")  # fmt: skip
    depth_legend(fig, colors, [ring], label="depth ≥")
    return fig


def plot_width_slopes(table: pd.DataFrame, fits: pd.DataFrame | None = None, *, by=("dataset",)) -> Figure:
    """At each depth, the slope of ln eta* on ln width with its interval (``tables.width_slope_by_depth``), one
    series per group. A law in d w predicts -alpha at every depth: ``fits`` draws it (dashed, in regime)."""
    groups = groups_of(table, by)
    palette = sns.color_palette("colorblind", max(len(groups), 1))
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.2), layout="constrained")
    ax.axhline(0.0, color="black", linewidth=0.8)
    handles = []
    for k, (values, rows) in enumerate(groups):
        rows = rows[rows["width slope"].notna()]
        x = rows["depth"].astype(float) * 2 ** (0.12 * (k - (len(groups) - 1) / 2))
        slope = rows["width slope"]
        error = [(slope - rows["slope low"]).fillna(0), (rows["slope high"] - slope).fillna(0)]
        ax.errorbar(x, rows["width slope"], yerr=error, fmt=MARKERS[k % 6], color=palette[k], markersize=6, capsize=3,
                    markeredgecolor="black", markeredgewidth=0.4)  # fmt: skip
        handles.append(Line2D([], [], marker=MARKERS[k % 6], linestyle="", color=palette[k], label=label_of(values)))
        for alpha in [] if fits is None else matching(fits[fits["cells"] == "in regime"], values)["alpha"].dropna():
            ax.axhline(-alpha, color=palette[k], linestyle="--", linewidth=1.1)
    if fits is not None:
        handles.append(Line2D([], [], color="0.4", linestyle="--", label="−α of the fit in the regime"))
    ax.set(xscale="log", xlabel="depth", ylabel="slope of ln η* on ln width")
    base2_ticks(ax.xaxis, 5)
    legend_below(fig, handles)
    return fig


def plot_eta_vs_width(frame: pd.DataFrame, *, by: str | Sequence[str] = ("dataset", "variant"),
                      quantity: str = "eta_star", ncols: int = 2, slopes: pd.DataFrame | None = None) -> Figure:
    """eta* against width, a line per depth through the cells' medians, one panel per group (flat: eta* does not
    move with width). ``slopes`` (``tables.width_exponents_table``, same ``by``) titles each with its slope."""
    groups = groups_of(frame, by)
    colors = depth_colors(frame["depth"])
    fig, axes = panels(len(groups), ncols)
    drawn = []
    for ax, (values, rows) in zip(axes, groups):
        drawn.append(cells := cells_of(rows, quantity))
        for depth, color in colors.items():
            seeds = rows[rows["depth"] == depth]
            draw_seeds(ax, seeds, quantity, seeds["width"], color)
            draw_cells(ax, cells[cells["depth"] == depth], "width", color, connect=True, size=30)
        slope = matching(slopes, values)["width slope"].dropna() if slopes is not None else []
        ax.set(xscale="log", yscale="log", xlabel="width",
               title=label_of(values) + (f": slope {slope.iloc[0]:+.2f}" if len(slope) else ""))  # fmt: skip
        tidy_log_axes(ax)
        base2_ticks(ax.xaxis, 5)
        first_column_label(ax, SYMBOLS.get(quantity, quantity))
    depth_legend(fig, colors, censored_handles(*drawn))
    return fig


# ----------------------------------------------------------------------------------------------------------
# chapters 4-5: variants against their base, preprocessing


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


# ----------------------------------------------------------------------------------------------------------
# chapter 12: held-out predictions


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
