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
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from milr_core.config import DATASET_NAMES
from milr_core.fit import MAX_DEPTH_OVER_WIDTH, cell_values, in_regime
from milr_core.style import CENSORED_LABEL, CENSORED_MARKER, COLUMN_WIDTH_IN
from milr_core.tables import positive

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


def _plain_number(value: float, _position=None) -> str:
    """A tick label without mathtext: 0.05, 2, 100, 1k, 20k; beyond, powers of ten in Unicode (10⁶, 2×10⁻⁴)."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value / 1e3:g}k" if value >= 1e3 else f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    power, mantissa = "10" + str(exponent).translate(SUPERSCRIPTS), round(value / 10.0**exponent, 6)
    return power if mantissa == 1 else f"{mantissa:g}×{power}"


def log_ticks(axis, most: int = 5) -> None:
    """Few plain-number labels on a log ``axis`` (``FewLogTicks``, ``_plain_number``), unlabelled minor ticks:
    matplotlib's defaults label decades or minor ticks in mathtext, which collide on a narrow panel."""
    axis.set_major_locator(FewLogTicks(most))
    axis.set_major_formatter(ticker.FuncFormatter(_plain_number))
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


def _title_of(values: dict, rows: pd.DataFrame) -> str:
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


def _draw_seeds(ax, rows: pd.DataFrame, quantity: str, x: pd.Series, color) -> None:
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


def _censored_handles(*cells: pd.DataFrame) -> list:
    """Legend entries for the censored cells that occur in ``cells`` (``cells_of`` frames)."""
    sides = set().union(*(set(c["censored"]) for c in cells if "censored" in c)) if cells else set()
    return [Line2D([], [], marker=CENSORED_MARKER[side], linestyle="", markerfacecolor="white", markeredgecolor="0.3",
                   markersize=7, label=label) for side, label in CENSORED_LABEL.items() if side in sides]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# chapters 2-4: eta* against d w, the regime, residuals, width at fixed depth


def _draw_fits(ax, fits: pd.DataFrame, values: dict, cells: pd.DataFrame) -> None:
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
            _draw_seeds(ax, seeds, quantity, seeds["depth"] * seeds["width"], color)
            draw_cells(ax, cells[cells["depth"] == depth], "dw", color, regime=regime)
        if fits is not None:
            _draw_fits(ax, fits, values, cells)
        if (cells["censored"] == "").sum() == 0:
            note(ax, "no search converged")
        ax.set(xscale="log", yscale="log", xlabel="depth × width", title=_title_of(values, rows))
        tidy_log_axes(ax)
        first_column_label(ax, SYMBOLS.get(quantity, quantity))
    if not groups:
        note(axes[0], "no cell in the store yet", "center")
    extra = [Line2D([], [], marker="o", linestyle="", color="0.5", markersize=4, alpha=0.6, label="one seed")]
    if regime:
        cell = {"marker": "o", "linestyle": "", "color": "0.5"}
        extra += [Line2D([], [], markeredgecolor="black", label="cell, in regime", **cell),
                  Line2D([], [], alpha=0.4, label="cell, outside", **cell)]
    extra += _censored_handles(*drawn)
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
    depth_legend(fig, colors, extra + _censored_handles(resid))
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
            _draw_seeds(ax, seeds, quantity, seeds["width"], color)
            draw_cells(ax, cells[cells["depth"] == depth], "width", color, connect=True, size=30)
        slope = matching(slopes, values)["width slope"].dropna() if slopes is not None else []
        ax.set(xscale="log", yscale="log", xlabel="width",
               title=label_of(values) + (f": slope {slope.iloc[0]:+.2f}" if len(slope) else ""))  # fmt: skip
        tidy_log_axes(ax)
        base2_ticks(ax.xaxis, 5)
        first_column_label(ax, SYMBOLS.get(quantity, quantity))
    depth_legend(fig, colors, _censored_handles(*drawn))
    return fig
