"""Figures of the curvature chapters (6-8 and 11): the sharpness, the late learning rate, our bounds, the catapult.

Drawing only. Each function takes a tidy frame or table of ``sharpness_tables.py`` / ``tables.py`` (or an
experiment's frame) and returns a matplotlib Figure at most ``style.COLUMN_WIDTH_IN`` wide: panels wrap into
rows (two per row) rather than shrink, log axes label a few major ticks with plain numbers, text is 9 pt or
more, colours are colour-blind safe (viridis for depth, seaborn's colour-blind palette otherwise). A frame
that is None, empty or lacks what a figure draws gives a one-panel figure that says so (``not_computed``),
so a chapter renders on a partial store.

Functions: ``plot_quantities_vs_dw``, ``plot_late_contrast``, ``plot_late_ratio``, ``plot_eta_vs_sharpness``,
``plot_products``, ``plot_bounds``, ``plot_lanczos_residuals``, ``not_computed`` (the catapult's trajectory:
``plot_catapult.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from milr_core.config import DATASET_NAMES
from milr_core.plot import depth_colors, depth_legend, legend_below, note, panels, tidy_log_axes
from milr_core.tables import positive
from milr_core.style import COLUMN_WIDTH_IN

# seaborn's colour-blind palette, fixed here so that a figure looks the same with or without style.set_style()
BLUE, ORANGE, GREEN, RED, PINK, BROWN, GREY, LIGHT_BLUE = (
    "#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#949494", "#56b4e9")  # fmt: skip
TEXT_PT = 9  # the smallest text of any figure
PANEL_HEIGHT = 2.7  # inches per row of panels
SHARPNESS = {"raw": "lambda_1", "effective": "lambda_1_eff"}  # as sharpness_tables.SHARPNESS
SHARPNESS_LABEL = {"raw": "raw λ₁ (of H)", "effective": "effective λ₁ (of P½HP½)"}
RELATION_STYLE = {  # the two products of claim (b)
    "init": {"label": "η*·λ₁(θ₀), at initialisation", "color": BLUE, "marker": "o"},
    "late": {"label": "late max LR·λ₁(θ_T), after pretraining", "color": ORANGE, "marker": "s"},
}
QUANTITY_STYLE = {  # quantities against d·w; the bounds of chapter 8
    "eta_star": {"label": "η*", "color": BLUE, "marker": "o"},
    "late_max_lr": {"label": "late max LR", "color": ORANGE, "marker": "s"},
    "lambda_1": {"label": "λ₁(H), raw", "color": BLUE, "marker": "o"},
    "lambda_1_eff": {"label": "λ₁ effective", "color": ORANGE, "marker": "s"},
    "lambda_1_ggn": {"label": "λ₁(G), Gauss-Newton", "color": GREEN, "marker": "D", "hollow": True},
    "lower_bound": {"label": "lower bound", "color": PINK, "marker": "v"},
    "ggn_upper_bound": {"label": "upper bound", "color": RED, "marker": "^"},
    "half_ntk_trace": {"label": "½ mean ‖Jᵢ‖²", "color": BROWN, "marker": "P"},
    "expected_upper_bound": {"label": "closed form of ½ E‖J‖²", "color": "black", "marker": "_"},
}
EIGEN_STYLE = {"lambda_1": (BLUE, "o"), "lambda_1_eff": (ORANGE, "s"), "lambda_1_ggn": (GREEN, "D")}
SUFFIX_LABEL = {"": "", "_init": " at θ₀", "_T": " at θ_T"}
RUN_COLORS = (BLUE, RED, GREEN, PINK, BROWN)


# ----------------------------------------------------------------------------------------------------------
# shared pieces


def missing(frame: pd.DataFrame | None, columns: Sequence[str] = ()) -> str:
    """Why ``frame`` cannot be drawn ("" if it can): None, empty, or without some of ``columns`` or any value in them."""
    if frame is None or len(frame) == 0:
        return "no stored cells yet"
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        return f"the records hold no {', '.join(absent)}"
    empty = [c for c in columns if pd.to_numeric(frame[c], errors="coerce").isna().all()]
    return f"no value of {', '.join(empty)} yet" if empty else ""


def not_computed(message: str, title: str = "Not yet computed") -> Figure:
    """A one-panel figure that says what is missing (a chapter on a partial store still shows a numbered figure)."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 1.6), layout="constrained")
    ax.set_axis_off()
    ax.text(0.5, 0.62, title, ha="center", va="center", fontsize=12, fontweight="bold", transform=ax.transAxes)
    ax.text(0.5, 0.3, message, ha="center", va="center", fontsize=10, wrap=True, transform=ax.transAxes)
    return fig


def grid(n: int, ncols: int = 2, height: float = PANEL_HEIGHT, sharey: bool = False):
    """``n`` panels, at most ``ncols`` a row, the whole figure ``COLUMN_WIDTH_IN`` wide (``plot.panels``)."""
    return panels(n, ncols, sharey=sharey, height=height)


def label(key) -> str:
    """A group's title: dataset names spelled out, pretraining lengths in steps."""
    parts = key if isinstance(key, tuple) else (key,)
    return " · ".join(DATASET_NAMES.get(p, str(p)) if isinstance(p, str) else f"{p:g} steps pretraining"
                      if isinstance(p, (int, float, np.integer)) else str(p) for p in parts)  # fmt: skip


def groups(frame: pd.DataFrame, by: str | Sequence[str]) -> list[tuple[object, pd.DataFrame]]:
    by = [by] if isinstance(by, str) else list(by)
    return [(key if len(by) > 1 else key[0], rows) for key, rows in frame.groupby(by, sort=False)]


def _seeds_and_cells(ax, rows: pd.DataFrame, x: str, y: str, *, color, marker: str = "o", hollow: bool = False,
                    label: str | None = None) -> int:  # fmt: skip
    """One small point per network and a large one per (depth, width) cell (geometric medians); returns how many
    networks had no positive value of ``x`` or ``y`` (a log axis cannot show them)."""
    values = rows.assign(_x=positive(rows[x]).to_numpy(), _y=positive(rows[y]).to_numpy()).dropna(subset=["_x", "_y"])
    ax.scatter(values["_x"], values["_y"], s=12, color=color, marker=marker, alpha=0.4, linewidths=0)
    cells = values.groupby(["depth", "width"])[["_x", "_y"]].agg(lambda v: float(np.exp(np.log(v).median())))
    face = "none" if hollow else color
    ax.scatter(cells["_x"], cells["_y"], s=38, marker=marker, facecolors=face, edgecolors=color if hollow else "black",
               linewidths=0.9 if hollow else 0.5, zorder=3, label=label)  # fmt: skip
    return len(rows) - len(values)


def _log_axes(ax) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")


# ----------------------------------------------------------------------------------------------------------
# quantities against d·w


def plot_quantities_vs_dw(frame: pd.DataFrame | None, quantities: Sequence[str], *, exponents: pd.DataFrame | None = None,
                          by: str | Sequence[str] = "dataset", ylabel: str = "value") -> Figure:  # fmt: skip
    """Several quantities against depth × width, log-log, one panel per group (two a row).

    Small points: networks; large points: (depth, width) cells, geometric medians over seeds. ``exponents``
    (``tables.exponents_table``: the ``by`` columns, quantity, exponent, c) adds each fitted law c (d·w)^p dashed.
    """
    why = missing(frame, ["depth", "width"])
    present = [q for q in quantities if frame is not None and q in frame and positive(frame[q]).notna().any()]
    if why or not present:
        return not_computed(why or f"no value of {', '.join(quantities)} yet")
    keys = [by] if isinstance(by, str) else list(by)
    frame = frame.assign(dw=frame["depth"] * frame["width"])
    chosen = groups(frame, by)
    fig, axes = grid(len(chosen), height=PANEL_HEIGHT + 0.2)
    for ax, (key, rows) in zip(axes, chosen):
        dropped = 0
        for quantity in present:
            style = QUANTITY_STYLE.get(quantity, {"color": GREY, "marker": "o"})
            dropped += _seeds_and_cells(ax, rows, "dw", quantity, color=style["color"], marker=style["marker"],
                                       hollow=style.get("hollow", False))  # fmt: skip
            if exponents is None:
                continue
            values = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
            match = exponents[(exponents["quantity"] == quantity)
                              & np.logical_and.reduce([exponents[k] == v for k, v in values.items()])]  # fmt: skip
            fits = match.dropna(subset=["exponent", "c"])
            if len(fits):
                xs = np.geomspace(rows["dw"].min(), rows["dw"].max(), 40)
                ax.plot(xs, fits["c"].iloc[0] * xs ** fits["exponent"].iloc[0], color=style["color"], linestyle="--",
                        linewidth=1.1)  # fmt: skip
        if dropped:
            note(ax, f"{dropped} values missing or ≤ 0", where="lower right")
        _log_axes(ax)
        ax.set(xlabel="depth × width", title=label(key))
        tidy_log_axes(ax)
    axes[0].set_ylabel(ylabel)
    styles = [QUANTITY_STYLE.get(q, {"label": q, "color": GREY, "marker": "o"}) for q in present]
    handles = [Line2D([], [], color=s["color"], linestyle="", marker=s["marker"], label=s["label"],
                      markerfacecolor="white" if s.get("hollow") else s["color"],
                      markeredgecolor=s["color"] if s.get("hollow") else "black", markeredgewidth=0.5)
               for s in styles]  # fmt: skip
    if exponents is not None:
        handles.append(Line2D([], [], color="0.3", linestyle="--", label="fitted c·(d·w)^p"))
    legend_below(fig, handles, ncols=4)
    return fig


# ----------------------------------------------------------------------------------------------------------
# chapter 6: the late learning rate


def plot_late_contrast(networks: pd.DataFrame | None, *, sharpness: str = "effective", edge: float = 2.0,
                       band: tuple[float, float] | None = None) -> Figure:  # fmt: skip
    """Claim (b)'s two products against depth × width, one panel per dataset and pretraining length (two a row).

    ``networks`` is ``sharpness_tables.late_networks``'s frame: ``init_<s>`` = η*·λ₁(θ₀) and ``late_<s>`` = late
    max LR·λ₁(θ_T), s the ``sharpness`` ("raw" or "effective"). Dashed: ``edge`` (η·λ₁ = 2, where gradient
    descent on a quadratic stops being stable, and where the edge of stability holds the sharpness); shaded:
    ``band`` (e.g. the verdict's "within a factor 2 of 2").
    """
    field = SHARPNESS[sharpness]
    columns = [f"init_{field}", f"late_{field}", "pretrain_steps", "depth", "width"]
    why = missing(networks, columns)
    if why:
        return not_computed(f"Late learning rate × {SHARPNESS_LABEL[sharpness]}: {why}.")
    chosen = groups(networks, ["dataset", "pretrain_steps"])
    fig, axes = grid(len(chosen), ncols=min(2, networks["pretrain_steps"].nunique() or 1))
    for ax, (key, rows) in zip(axes, chosen):
        rows = rows.assign(dw=rows["depth"] * rows["width"])
        if band is not None:
            ax.axhspan(*band, color=GREY, alpha=0.18, linewidth=0)
        ax.axhline(edge, color="black", linestyle="--", linewidth=1)
        dropped = sum(_seeds_and_cells(ax, rows, "dw", f"{relation}_{field}", color=style["color"],
                                      marker=style["marker"]) for relation, style in RELATION_STYLE.items())  # fmt: skip
        if dropped:
            note(ax, f"{dropped} products missing", where="lower right")
        _log_axes(ax)
        ax.set(xlabel="depth × width", title=label(key))
        tidy_log_axes(ax)
    for ax in axes[:: min(2, len(axes))]:
        ax.set_ylabel(f"η × {SHARPNESS_LABEL[sharpness].split(' (')[0]}")
    handles = [Line2D([], [], color=s["color"], marker=s["marker"], linestyle="", markeredgecolor="black",
                      markeredgewidth=0.5, label=s["label"]) for s in RELATION_STYLE.values()]  # fmt: skip
    handles.append(Line2D([], [], color="black", linestyle="--", label=f"η·λ₁ = {edge:g}"))
    if band is not None:
        handles.append(Patch(color=GREY, alpha=0.35, label=f"{band[0]:g} to {band[1]:g}"))
    legend_below(fig, handles, ncols=2)
    return fig


def plot_late_ratio(networks: pd.DataFrame | None) -> Figure:
    """Late max LR / η* of every network against depth × width, one panel per dataset, a colour per pretraining length.

    ``networks``: ``sharpness_tables.late_networks``'s frame. Large points: cell medians; hollow small points:
    networks whose pretraining stayed below the threshold t; the line at 1: the same LR early and late.
    """
    why = missing(networks, ["ratio", "pretrain_steps", "depth", "width"])
    if why:
        return not_computed(f"Late max LR / η*: {why}.")
    lengths = sorted(networks["pretrain_steps"].dropna().unique())
    colors = dict(zip(lengths, (BLUE, ORANGE, GREEN, PINK)))
    chosen = groups(networks, "dataset")
    fig, axes = grid(len(chosen))
    for ax, (key, rows) in zip(axes, chosen):
        rows = rows.assign(dw=rows["depth"] * rows["width"])
        below = pd.to_numeric(rows["pretrain_accuracy"], errors="coerce") < pd.to_numeric(rows["threshold"], errors="coerce")
        ax.axhline(1.0, color="black", linewidth=1)
        for index, steps in enumerate(lengths):
            mine = rows[rows["pretrain_steps"] == steps]
            shift = 1.06 ** (index - (len(lengths) - 1) / 2)  # side by side, not on top of each other
            _seeds_and_cells(ax, mine.assign(dw=mine["dw"] * shift), "dw", "ratio", color=colors[steps])
            low = mine[below.loc[mine.index]]
            ax.scatter(low["dw"] * shift, positive(low["ratio"]), s=40, facecolors="none", edgecolors=RED,
                       linewidths=1.1, zorder=4)  # fmt: skip
        _log_axes(ax)
        ax.set(xlabel="depth × width", title=label(key))
        tidy_log_axes(ax)
    axes[0].set_ylabel("late max LR / η*")
    handles = [Line2D([], [], color=colors[s], marker="o", linestyle="", markeredgecolor="black", markeredgewidth=0.5,
                      label=f"{s:g} steps pretraining") for s in lengths]  # fmt: skip
    handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=RED,
                          label="pretraining below t"))  # fmt: skip
    legend_below(fig, handles, ncols=3)
    return fig


# ----------------------------------------------------------------------------------------------------------
# chapter 7 (and 11): η* against the sharpness


def plot_eta_vs_sharpness(joined: pd.DataFrame | None, *, sharpness: Sequence[str] = ("raw", "effective"),
                          edge: float = 2.0) -> Figure:  # fmt: skip
    """η* against λ₁ at initialisation, log-log: a row per dataset, a column per sharpness (raw, effective).

    ``joined`` is ``sharpness_tables.join_sharpness``'s frame. Colour: depth. Dashed: η = ``edge``/λ₁, the
    largest stable step of gradient descent on a quadratic of top curvature λ₁; points above it train from
    initial learning rates past that edge.
    """
    sharpness = [s for s in sharpness if joined is not None and SHARPNESS[s] in joined]
    why = missing(joined, ["eta_star", "depth", "width", *(SHARPNESS[s] for s in sharpness)])
    if why or not sharpness:
        return not_computed(f"η* against λ₁: {why or 'no sharpness stored'}.")
    colors = depth_colors(joined["depth"])
    chosen = [(key, rows, name) for key, rows in groups(joined, "dataset") for name in sharpness]
    fig, axes = grid(len(chosen), ncols=len(sharpness))
    for ax, (key, rows, name) in zip(axes, chosen):
        lam, eta = positive(rows[SHARPNESS[name]]), positive(rows["eta_star"])
        ax.scatter(lam, eta, c=[colors[int(d)] for d in rows["depth"]], s=30, edgecolors="black", linewidths=0.4,
                   zorder=3)  # fmt: skip
        if lam.notna().any():
            xs = np.geomspace(lam.min() / 1.3, lam.max() * 1.3, 30)
            ax.plot(xs, edge / xs, color="black", linestyle="--", linewidth=1)
        _log_axes(ax)
        ax.set(xlabel=f"{SHARPNESS_LABEL[name]} at init", title=f"{label(key)} · {name}")
        tidy_log_axes(ax)
    for ax in axes[:: len(sharpness)]:
        ax.set_ylabel("η*")
    depth_legend(fig, colors, [Line2D([], [], color="black", linestyle="--", label=f"η = {edge:g}/λ₁")])
    return fig


def plot_products(frame: pd.DataFrame | None, *, sharpness: Sequence[str] = ("raw", "effective"), edge: float = 2.0,
                  window: tuple[float, float] | None = None) -> Figure:  # fmt: skip
    """η*·λ₁ of every network against depth × width, one panel per dataset (two a row), colour: depth.

    ``frame`` holds ``eta_lambda`` (η* × raw λ₁) and/or ``eta_lambda_eff`` (× effective λ₁):
    ``sharpness_tables.join_sharpness``'s frame, or the catapult experiment's. With both sharpnesses the raw
    product is hollow, the effective filled, a grey segment joining a network's two. Dashed: ``edge``; an
    inverse relation η* = c/λ₁ would put every network on one horizontal line. ``window`` = (2, 4) shades the
    catapult window of Lewkowycz et al. (2020) and draws its upper edge dash-dotted.
    """
    columns = {name: SHARPNESS[name].replace("lambda_1", "eta_lambda") for name in sharpness}
    columns = {name: c for name, c in columns.items() if frame is not None and c in frame and positive(frame[c]).notna().any()}
    why = missing(frame, ["depth", "width"])
    if why or not columns:
        return not_computed(f"η*·λ₁: {why or 'no network with both η* and λ₁ yet'}.")
    colors = depth_colors(frame["depth"])
    chosen = groups(frame, "dataset")
    fig, axes = grid(len(chosen))
    for ax, (key, rows) in zip(axes, chosen):
        dw = (rows["depth"] * rows["width"]).astype(float)
        jitter = dw * np.exp(0.04 * (rows["seed"].astype(float) - rows["seed"].mean())) if "seed" in rows else dw
        depth_color = [colors[int(d)] for d in rows["depth"]]
        if window is not None:
            ax.axhspan(*window, color=ORANGE, alpha=0.15, linewidth=0)
            ax.axhline(window[1], color="black", linestyle="-.", linewidth=1)
        ax.axhline(edge, color="black", linestyle="--", linewidth=1)
        if len(columns) == 2:
            ax.vlines(jitter, positive(rows[columns["raw"]]), positive(rows[columns["effective"]]), color=GREY,
                      linewidth=0.8, zorder=2)  # fmt: skip
        for name, column in columns.items():
            hollow = name == "raw" and len(columns) == 2
            ax.scatter(jitter, positive(rows[column]), s=30, zorder=3, facecolors="white" if hollow else depth_color,
                       edgecolors=depth_color if hollow else "black", linewidths=1.0 if hollow else 0.4)  # fmt: skip
        _log_axes(ax)
        ax.set(xlabel="depth × width", title=label(key))
        tidy_log_axes(ax)
    axes[0].set_ylabel("η*·λ₁" if len(columns) == 2 else f"η* × {SHARPNESS_LABEL[next(iter(columns))].split(' (')[0]}")
    handles = [Line2D([], [], color="black", linestyle="--", label=f"η*·λ₁ = {edge:g}")]
    if len(columns) == 2:
        handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="0.3",
                           label="raw λ₁"),
                    Line2D([], [], marker="o", linestyle="", color="0.3", label="effective λ₁")]  # fmt: skip
    if window is not None:
        handles += [Patch(color=ORANGE, alpha=0.3, label=f"catapult window [{window[0]:g}, {window[1]:g})"),
                    Line2D([], [], color="black", linestyle="-.", label=f"η*·λ₁ = {window[1]:g}")]  # fmt: skip
    depth_legend(fig, colors, handles)
    return fig


# ----------------------------------------------------------------------------------------------------------
# chapter 8: our bounds and the eigenvalues' convergence

BOUND_QUANTITIES = ("lower_bound", "lambda_1_ggn", "lambda_1", "ggn_upper_bound", "half_ntk_trace", "expected_upper_bound")


def plot_bounds(check: pd.DataFrame | None) -> Figure:
    """Our bounds on λ₁ against depth × width (left) and divided by λ₁(G) (right), a row per dataset.

    ``check`` is ``sharpness_tables.bounds_check``'s frame. Right: the proved lower bound sits at or below 1,
    the proved upper bound at or above; λ₁(H)/λ₁(G) shows how far the full Hessian's top eigenvalue moves from
    its Gauss-Newton part, and the upper bound's height above 1 is its looseness.
    """
    why = missing(check, [*BOUND_QUANTITIES, "depth", "width"])
    if why:
        return not_computed(f"Bounds on λ₁: {why}.")
    chosen = groups(check, "dataset")
    fig, axes = grid(2 * len(chosen), height=PANEL_HEIGHT + 0.1)
    for (left, right), (key, rows) in zip(zip(axes[::2], axes[1::2]), chosen):
        dw = (rows["depth"] * rows["width"]).astype(float)
        jitter = dw * np.exp(0.04 * (rows["seed"].astype(float) - rows["seed"].mean())) if "seed" in rows else dw
        ggn = positive(rows["lambda_1_ggn"])
        for quantity in BOUND_QUANTITIES:
            style = QUANTITY_STYLE[quantity]
            kwargs = dict(color=style["color"], marker=style["marker"], zorder=3,
                          s=70 if style["marker"] == "_" else 20, linewidths=1.2 if style["marker"] == "_" else 0.3)
            if style["marker"] != "_":
                kwargs["edgecolors"] = "black"
            left.scatter(jitter, positive(rows[quantity]), **kwargs)
            if quantity != "lambda_1_ggn":
                right.scatter(jitter, positive(rows[quantity]) / ggn, **kwargs)
        right.axhline(1.0, color=GREEN, linewidth=1.3)
        held = rows["sandwich"].mean() if "sandwich" in rows else math.nan
        for ax in (left, right):
            _log_axes(ax)
            ax.set_xlabel("depth × width")
            tidy_log_axes(ax)
        left.set(ylabel="curvature", title=label(key))
        right.set(ylabel="value / λ₁(G)", title=f"{label(key)}: sandwich holds in {held:.0%}")
    handles = [Line2D([], [], color=QUANTITY_STYLE[q]["color"], marker=QUANTITY_STYLE[q]["marker"], linestyle="",
                      markeredgecolor="black" if QUANTITY_STYLE[q]["marker"] != "_" else QUANTITY_STYLE[q]["color"],
                      markeredgewidth=0.5 if QUANTITY_STYLE[q]["marker"] != "_" else 1.5, markersize=7,
                      label=QUANTITY_STYLE[q]["label"]) for q in BOUND_QUANTITIES]  # fmt: skip
    legend_below(fig, handles, ncols=3)
    return fig


def _eigenvalue_records(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per stored eigenvalue: the ``frame``'s group columns, eigenvalue (e.g. lambda_1_eff_T), residual,
    dtype, converged, tol, dw."""
    parts = []
    for base in EIGEN_STYLE:
        for suffix in SUFFIX_LABEL:
            value, residual = base + suffix, f"{base}_residual{suffix}"
            if value not in frame or residual not in frame:
                continue
            rows = frame[frame[value].notna()]
            parts.append(pd.DataFrame({
                "experiment": rows["experiment"] if "experiment" in rows else "", "dataset": rows["dataset"],
                "base": base, "suffix": suffix, "eigenvalue": value,
                "residual": pd.to_numeric(rows[residual], errors="coerce"),
                "dtype": rows.get(f"{base}_dtype{suffix}", pd.Series("float32", rows.index)).astype(str),
                "tol": pd.to_numeric(rows.get("sharpness.tol", pd.Series(math.nan, rows.index)), errors="coerce"),
                "dw": rows["depth"] * rows["width"],
            }))  # fmt: skip
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def plot_lanczos_residuals(frame: pd.DataFrame | None, *, by: str | Sequence[str] = "dataset") -> Figure:
    """Every stored eigenvalue's true relative residual, ‖Hv − λv‖ over the absolute value of λ, against d·w, by group.

    ``frame``: experiment frames (concatenated; an ``experiment`` column may name each), with the
    ``<eigenvalue>_residual`` and ``_dtype`` fields of ``sharpness.py`` (suffixes _init and _T of the late-LR
    experiment included). Colour and marker: which eigenvalue; filled: float32, hollow: float64. Dashed: the
    tolerance the record was stopped at (``sharpness.tol``); a point above it did not converge.
    """
    records = _eigenvalue_records(frame) if frame is not None and len(frame) else pd.DataFrame()
    if records.empty or records["residual"].notna().sum() == 0:
        return not_computed("Lanczos residuals: " + (missing(frame) or "no eigenvalue with a residual stored") + ".")
    chosen = groups(records, by)
    fig, axes = grid(len(chosen), sharey=True)
    for ax, (key, rows) in zip(axes, chosen):
        for (base, suffix, dtype), points in rows.groupby(["base", "suffix", "dtype"], sort=False):
            color, marker = EIGEN_STYLE[base]
            shift = {"": 1.0, "_init": 0.95, "_T": 1.05}[suffix]
            hollow = dtype == "float64"
            ax.scatter(points["dw"] * shift, positive(points["residual"]), s=18 if suffix != "_T" else 24,
                       marker=marker, facecolors="white" if hollow else color, edgecolors=color if hollow else "black",
                       linewidths=0.9 if hollow else 0.3, alpha=0.8, zorder=3)  # fmt: skip
        for tol in rows["tol"].dropna().unique():
            ax.axhline(tol, color="black", linestyle="--", linewidth=1)
        above = int((rows["residual"] > rows["tol"] * (1 + 1e-9)).sum())
        note(ax, f"{len(rows)} eigenvalues, {above} above tolerance", where="lower right")
        _log_axes(ax)
        ax.set(xlabel="depth × width", title=label(key))
        tidy_log_axes(ax)
    axes[0].set_ylabel("‖Hv − λv‖ / |λ|")
    handles = [Line2D([], [], color=c, marker=m, linestyle="", markeredgecolor="black", markeredgewidth=0.3,
                      label=QUANTITY_STYLE[b]["label"]) for b, (c, m) in EIGEN_STYLE.items()
               if b in set(records["base"])]  # fmt: skip
    handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="0.3", label="float64"),
                Line2D([], [], color="black", linestyle="--", label="tolerance")]  # fmt: skip
    legend_below(fig, handles, ncols=3)
    return fig
