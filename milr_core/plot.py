"""The book's figures: one style, and functions that take tidy data (or a search result) and return a Figure.

Functions never call ``plt.show`` and never pick a backend: in a notebook the inline backend draws the
returned Figure, headless scripts get matplotlib's default (Agg when there is no display).
A caption's text belongs to the notebook that calls them; its data/profile/seeds sentence is built here,
by ``show_figure``, from a dataset's meta or from the tidy frame itself.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from milr_core.fit import PowerLawFit, fit_power_law, residuals, width_exponent
from milr_core.search import EtaStarResult, SeedSearch

# One colour and marker per probe outcome, the same in every figure of the book.
OUTCOME_STYLE = {
    "success": {"color": "#1b9e77", "marker": "o"},
    "diverged": {"color": "#d95f02", "marker": "X"},
    "budget": {"color": "#7570b3", "marker": "s"},
}


def set_style() -> None:
    """The book's look: seaborn's white grid, a colour-blind-safe palette, figures sized for a page."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (7.0, 4.0), "figure.dpi": 110, "savefig.bbox": "tight"})


def show_figure(
    fig: Figure, text: str, data: dict | pd.DataFrame, profile: str | None = None, seeds: list[int] | None = None
) -> object:
    """Display ``fig`` now and return its caption as Markdown: ``text``, then data source, profile and seeds.

    ``data`` is a dataset's ``meta`` (then ``profile`` and ``seeds`` are given) or a tidy sweep frame
    (then data, profile and seeds are read off it, see ``frame_provenance``); both end in the same
    sentence. Why: every figure of the book says which data (a lossy JPEG mirror is not the canonical
    set), which profile (smoke grids are tiny) and which seeds it shows, and the caption must come after
    the figure (the inline backend would otherwise draw the figure after the cell's result).
    """
    from IPython.display import Markdown, display

    if isinstance(data, pd.DataFrame):
        if profile is not None or seeds is not None:
            raise ValueError("a frame says its own profile and seeds: pass neither with it")
        provenance = frame_provenance(data)
    else:
        if profile is None or seeds is None:
            raise ValueError("with a dataset meta, pass the profile and the seeds too")
        provenance = meta_provenance(data, profile, seeds)
    display(fig)
    plt.close(fig)
    return Markdown(f"**Figure.** {text} {provenance}")


def seed_list(seeds) -> str:
    return ", ".join(str(int(s)) for s in sorted(set(seeds)))


def meta_provenance(meta: dict, profile: str, seeds: list[int]) -> str:
    """The caption's data/profile/seeds sentence for one dataset's ``meta`` (chapter 1's single search)."""
    source = meta["source"] + (f", lossy mirror {meta['mirror']}" if meta.get("lossy") else "")
    return f"Data: `{meta['name']}` ({source}). Profile: `{profile}`. Seeds: {seed_list(seeds)}."


def frame_provenance(frame: pd.DataFrame) -> str:
    """The caption's data/profile/seeds sentence for a tidy sweep frame, from its own columns.

    Per dataset: its format (``data.format``), the generated task's dimension (``data.options.dim``) and,
    in bold, whether it is a lossy mirror (``data.lossy``); then the profile(s) and the seeds, per
    dataset where the datasets' seeds differ.
    """
    parts, seeds = [], {}
    for name, rows in frame.groupby("dataset", sort=False):
        details = [f"format `{rows['data.format'].iloc[0]}`"] if "data.format" in rows else []
        if "data.options.dim" in rows and rows["data.options.dim"].notna().any():
            details.append(f"dimension {int(rows['data.options.dim'].dropna().iloc[0])}")
        if "data.lossy" in rows and rows["data.lossy"].fillna(False).astype(bool).any():
            details.append("**a lossy JPEG mirror, not the canonical files**")
        parts.append(f"`{name}` ({', '.join(details)})" if details else f"`{name}`")
        seeds[name] = seed_list(rows["seed"])
    profiles = ", ".join(f"`{p}`" for p in frame["profile"].unique()) if "profile" in frame else "not recorded"
    if len(set(seeds.values())) == 1:
        seed_text = next(iter(seeds.values()))
    else:
        seed_text = "; ".join(f"{s} ({name})" for name, s in seeds.items())
    return f"Data: {', '.join(parts)}. Profile: {profiles}. Seeds: {seed_text}.{coverage_note(frame)}{devices_note(frame)}"


def coverage_note(frame: pd.DataFrame) -> str:
    """The caption's sentence naming each grid whose store lacks cells (``run_sweep``'s grid_cells and
    grid_stored), with the widths and depths it does hold; empty when every grid is complete."""
    if not {"grid", "grid_cells", "grid_stored"} <= set(frame.columns):
        return ""
    partial = [
        f"`{name}` {int(rows['grid_stored'].iloc[0])} of {int(rows['grid_cells'].iloc[0])} cells "
        f"(widths {span(rows['width'])}, depths {span(rows['depth'])})"
        for name, rows in frame.groupby("grid", sort=False)
        if rows["grid_stored"].iloc[0] < rows["grid_cells"].iloc[0]
    ]
    if not partial:
        return ""
    return f" **Partial grids, the missing cells not yet computed:** {'; '.join(partial)}."


def span(values: pd.Series) -> str:
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}-{high}"


def devices_note(frame: pd.DataFrame) -> str:
    """The caption's sentence naming the devices and torch versions that computed the records (provenance)."""
    if not {"provenance.device", "provenance.torch"} <= set(frame.columns):
        return ""
    pairs = frame[["provenance.device", "provenance.torch"]].drop_duplicates().itertuples(index=False)
    return f" Computed on: {'; '.join(f'{device} (torch {torch})' for device, torch in pairs)}."


def seed_search(result: EtaStarResult, seed: int | None) -> SeedSearch:
    """The search of ``seed``, or of the first seed when None."""
    return result.per_seed[0] if seed is None else result.seed_result(seed)


def plot_bisection_ladder(result: EtaStarResult, seed: int | None = None) -> Figure:
    """Each probe's learning rate against its round, marked by outcome, with eta* and the final bracket.

    Why: Algorithm 1 is easiest understood as a ladder closing in on the edge from both sides.
    """
    search = seed_search(result, seed)
    fig, ax = plt.subplots()
    if search.lo is not None and search.hi is not None:
        ax.axhspan(search.lo, search.hi, color="0.85", zorder=0, label="final bracket")
    for outcome, style in OUTCOME_STYLE.items():
        points = [(r, o.lr) for r, o in search.ledger if o.outcome == outcome]
        if points:
            rounds, lrs = zip(*points)
            ax.scatter(rounds, lrs, s=60, label=outcome, zorder=3, **style)
    rounds, lrs = zip(*((r, o.lr) for r, o in search.ledger))
    ax.plot(rounds, lrs, color="0.5", linewidth=0.8, zorder=2)
    if search.eta_star is not None:
        ax.axhline(search.eta_star, color="black", linestyle="--", linewidth=1, label=rf"$\eta^*$ = {search.eta_star:.3g}")
    ax.set(yscale="log", xlabel="round (one probe per round)", ylabel="learning rate")
    ax.set_title(f"Algorithm 1, seed {search.seed}: {search.status}")
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_accuracy_curves(result: EtaStarResult, seed: int | None = None) -> Figure:
    """Validation accuracy and training loss of every probe against the step, coloured by learning rate.

    A probe's curve ends where it stopped: at the threshold (success), at blow-up (diverged), or at the
    budget. Why: it shows what "successfully begin training" means at learning rates around eta*.
    """
    search = seed_search(result, seed)
    lrs = [o.lr for _, o in search.ledger]
    norm = LogNorm(min(lrs), max(lrs)) if min(lrs) < max(lrs) else LogNorm(min(lrs) / 2, max(lrs) * 2)
    cmap = plt.get_cmap("viridis")
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11.0, 4.0), sharex=True)
    for _, probe in sorted(search.ledger, key=lambda item: item[1].lr):
        color, style = cmap(norm(probe.lr)), OUTCOME_STYLE[probe.outcome]
        for ax, curve in ((acc_ax, probe.accuracy), (loss_ax, probe.loss)):
            if curve:
                steps, values = np.asarray(curve).T
                ax.plot(steps, values, color=color, linewidth=1.2)
                ax.scatter(steps[-1], values[-1], color=color, marker=style["marker"], s=40, zorder=3)
    acc_ax.axhline(result.threshold, color="black", linestyle="--", linewidth=1, label=f"threshold t = {result.threshold:g}")
    acc_ax.set(xlabel="SGD step", ylabel="validation accuracy", title="validation accuracy")
    acc_ax.legend(loc="lower right", fontsize="small")
    loss_ax.set(xlabel="SGD step", ylabel="training-batch loss", yscale="log", title="training loss")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=[acc_ax, loss_ax], label="learning rate")
    return fig


# ----------------------------------------------------------------------------- eta* across a sweep
# Chapters 2-5: power-law fits per group of cells, their residuals and exponents, and variants of a
# protocol against its base variant. A *group* is one value of ``by`` (a column, e.g. "dataset", or a
# list of columns, e.g. ["dataset", "variant"]); its key is that value, or the tuple of values.


def group_label(key) -> str:
    return " · ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def groups_of(frame: pd.DataFrame, by: str | list[str]) -> list[tuple[object, pd.DataFrame]]:
    """The groups of ``frame`` in order of appearance, keyed by a value (``by`` a column) or a tuple (a list)."""
    return [(key[0] if isinstance(by, str) and isinstance(key, tuple) else key, rows)
            for key, rows in frame.groupby(by, sort=False)]  # fmt: skip


def fit_each(
    frame: pd.DataFrame, by: str | list[str] = "dataset", quantity: str = "eta_star", **options
) -> tuple[dict, dict]:
    """``fit_power_law`` on each group of ``frame``; returns (fits, skipped), both keyed by group.

    ``skipped`` says why a group has no fit (e.g. fewer than two distinct d w with a converged eta*), so
    that a notebook on a tiny grid reports it instead of failing. ``options`` go to ``fit_power_law``.
    """
    fits, skipped = {}, {}
    for key, rows in groups_of(frame, by):
        try:
            fits[key] = fit_power_law(rows, quantity, **options)
        except ValueError as error:
            skipped[key] = str(error)
    return fits, skipped


def ci(fit: PowerLawFit) -> tuple[float, float]:
    """alpha's bootstrap interval, NaN where the fit has none (``PowerLawFit.has_interval``)."""
    return fit.alpha_ci if fit.has_interval else (np.nan, np.nan)


def fits_table(fits: dict, skipped: dict | None = None) -> pd.DataFrame:
    """One row per fit (alpha = -exponent with its interval, R^2, cells, values used and dropped), then the skipped."""
    rows = [
        {"group": group_label(key), "alpha": fit.alpha, "alpha CI low": ci(fit)[0], "alpha CI high": ci(fit)[1],
         "c": fit.c, "R^2": fit.r2, "cells": fit.n_cells, "values": fit.n_values, "dropped": fit.n_dropped,
         "note": "" if fit.has_interval else "one seed per cell: no interval"}
        for key, fit in fits.items()
    ] + [{"group": group_label(key), "note": f"no fit: {why}"} for key, why in (skipped or {}).items()]  # fmt: skip
    return pd.DataFrame(rows).set_index("group")


def residuals_each(frame: pd.DataFrame, fits: dict, by: str | list[str] = "dataset") -> pd.DataFrame:
    """``fit.residuals`` of every group that has a fit, one frame, with the ``by`` column(s) added."""
    columns = [by] if isinstance(by, str) else list(by)
    parts = []
    for key, rows in groups_of(frame, by):
        if key in fits:
            values = (key,) if isinstance(by, str) else key
            parts.append(residuals(rows, fits[key]).assign(**dict(zip(columns, values))))
    if not parts:
        raise ValueError("no group has a fit: there are no residuals to show")
    return pd.concat(parts, ignore_index=True)


def log_ticks(axis, subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """Plain-number labels ("50", "0.2") at ``subs`` times powers of ten on a log axis, unlabelled minor ticks.

    Why: matplotlib's default labels minor ticks in mathtext ("3x10^1") when an axis spans less than a
    decade, as smoke grids do, and they overlap.
    """
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=tuple(np.arange(1.0, 10.0))))
    axis.set_minor_formatter(ticker.NullFormatter())


def depth_colors(depths) -> dict:
    """One colour per depth, dark (shallow) to light green (deep), the same in every panel of a figure."""
    depths = sorted({int(d) for d in depths})
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(depths), 2)))
    return {d: colors[i] for i, d in enumerate(depths)}


def panels(n: int, ncols: int, sharey: bool = True, width: float = 4.3, height: float = 3.6):
    """A figure with ``n`` axes on a grid of at most ``ncols`` columns (no empty axes left over)."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, sharey=sharey, layout="constrained"
    )
    axes = list(grid.flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def depth_legend(fig: Figure, colors: dict, extra: list | None = None) -> None:
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=f"depth {d}") for d, c in colors.items()]
    fig.legend(handles=handles + (extra or []), loc="outside right upper", fontsize="small")


def group_title(key, rows: pd.DataFrame) -> str:
    """The group's label, with the threshold when it is one value."""
    thresholds = rows["threshold"].dropna().unique() if "threshold" in rows else []
    return group_label(key) + (f" (t = {thresholds[0]:g})" if len(thresholds) == 1 else "")


def fit_label(fit: PowerLawFit) -> str:
    """alpha with its interval and R^2; no interval where every cell has one seed (the bootstrap has nothing to resample)."""
    low, high = fit.alpha_ci
    if not fit.has_interval:
        return rf"fit: $\alpha$ = {fit.alpha:.2f} (one seed per cell: no interval), $R^2$ = {fit.r2:.2f}"
    return rf"fit: $\alpha$ = {fit.alpha:.2f} [{low:.2f}, {high:.2f}], $R^2$ = {fit.r2:.2f}"


def draw_seeds_and_medians(ax, rows: pd.DataFrame, quantity: str, colors: dict, x: str, connect: bool) -> pd.DataFrame:
    """One small point per seed and a large point per cell (median over seeds on the log scale, as the fits
    aggregate), coloured by depth, against column ``x`` ("dw" or "width"); ``connect`` joins each depth's
    medians by a line. Notes how many searches did not converge (they cannot sit on a log axis) and
    returns the drawn rows (depth, width, dw, value)."""
    values = pd.to_numeric(rows[quantity], errors="coerce").astype(float)
    usable = np.isfinite(values) & (values > 0)
    kept = rows.loc[usable, ["depth", "width"]].assign(dw=rows["depth"] * rows["width"], value=values[usable])
    for depth, color in colors.items():
        seeds = kept[kept["depth"] == depth]
        if seeds.empty:
            continue
        ax.scatter(seeds[x], seeds["value"], color=color, s=15, alpha=0.45, linewidths=0)
        cells = seeds.groupby(x)["value"].apply(lambda v: float(np.exp(np.median(np.log(v)))))
        if connect:
            ax.plot(cells.index, cells.to_numpy(), color=color, marker="o", markersize=7, markeredgecolor="black",
                    markeredgewidth=0.7, linewidth=1.4, zorder=3)  # fmt: skip
        else:
            ax.scatter(cells.index, cells.to_numpy(), color=color, s=60, edgecolors="black", linewidths=0.7, zorder=3)
    if (~usable).any():
        ax.text(0.97, 0.96, f"{int((~usable).sum())} of {len(rows)} searches did not converge",
                transform=ax.transAxes, ha="right", va="top", fontsize="x-small")  # fmt: skip
    return kept


def plot_power_law(
    frame: pd.DataFrame, fits: dict, *, by: str | list[str] = "dataset", quantity: str = "eta_star", ncols: int = 3
) -> Figure:
    """eta* against depth x width on log-log axes, one panel per group, with the fitted power law.

    Each panel: one small point per seed and a large point per cell (the median over seeds on the log
    scale, as the fit aggregates), coloured by depth; the fitted line, its alpha with the bootstrap
    interval and R^2 in the legend (or why there is no fit); the number of searches that did not
    converge, which cannot be drawn on a log axis. ``fits`` is keyed like ``fit_each``'s.
    """
    groups = groups_of(frame, by)
    colors = depth_colors(frame["depth"])
    fig, axes = panels(len(groups), ncols)
    for ax, (key, rows) in zip(axes, groups):
        kept = draw_seeds_and_medians(ax, rows, quantity, colors, "dw", connect=False)
        if key in fits and not kept.empty:
            xs = np.geomspace(kept["dw"].min(), kept["dw"].max(), 50)
            ax.plot(xs, fits[key].predict(xs), color="black", linestyle="--", linewidth=1.2, label=fit_label(fits[key]))
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="x-small", frameon=False)
        else:
            ax.text(0.03, 0.04, "no power-law fit (too few cells)", transform=ax.transAxes, fontsize="small")
        ax.set(xscale="log", yscale="log", xlabel=r"depth $\times$ width", title=group_title(key, rows))
        log_ticks(ax.xaxis)
        log_ticks(ax.yaxis)
    axes[0].set_ylabel(r"$\eta^*$" if quantity == "eta_star" else quantity)
    extra = [
        plt.Line2D([], [], marker="o", linestyle="", color="0.4", markersize=4, alpha=0.6, label="one seed"),
        plt.Line2D([], [], marker="o", linestyle="", color="0.4", markeredgecolor="black", label="median over seeds"),
    ]
    depth_legend(fig, colors, extra)
    return fig


def plot_residuals(resid: pd.DataFrame, *, by: str | list[str] = "dataset", cutoff: float | None = None, ncols: int = 3) -> Figure:
    """Each cell's log residual from its group's power-law fit against depth / width, one panel per group.

    ``resid`` is ``residuals_each``'s frame. A power law that holds only for wide networks (condition
    (i)) leaves residuals that drift away from zero as d / w grows; ``cutoff`` marks the d / w below which
    the restricted fit keeps cells.
    """
    groups = groups_of(resid, by)
    colors = depth_colors(resid["depth"])
    fig, axes = panels(len(groups), ncols)
    for ax, (key, rows) in zip(axes, groups):
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.scatter(rows["depth_over_width"], rows["residual"], c=[colors[int(d)] for d in rows["depth"]], s=50,
                   edgecolors="black", linewidths=0.5, zorder=3)  # fmt: skip
        if cutoff is not None:
            ax.axvline(cutoff, color="0.4", linestyle=":", linewidth=1.2)
        ax.set(xscale="log", xlabel="depth / width", title=group_label(key))
        log_ticks(ax.xaxis)
    axes[0].set_ylabel(r"log residual, $\ln(\eta^* / \mathrm{fit})$")
    extra = [plt.Line2D([], [], color="0.4", linestyle=":", label=f"cutoff d/w = {cutoff:.3g}")] if cutoff else []
    depth_legend(fig, colors, extra)
    return fig


def plot_exponents(fits: dict, *, title: str | None = None) -> Figure:
    """alpha of each fit with its bootstrap interval, one row per fit (labelled by its key), top to bottom.

    Why: whether two fits (all cells against wide cells only; input layer at a small or the full LR)
    disagree is read off whether their intervals overlap.
    """
    labels = [group_label(key) for key in fits]
    fig, ax = plt.subplots(figsize=(7.0, 0.9 + 0.45 * max(len(fits), 1)), layout="constrained")
    for row, fit in enumerate(fits.values()):
        low, high = fit.alpha_ci if fit.has_interval else (fit.alpha, fit.alpha)
        ax.errorbar(fit.alpha, row, xerr=[[fit.alpha - low], [high - fit.alpha]], fmt="o", color="C0", capsize=4,
                    markerfacecolor="C0" if fit.has_interval else "white")  # fmt: skip
        note = "" if fit.has_interval else ", one seed: no interval"
        ax.annotate(f"$R^2$ {fit.r2:.2f}, {fit.n_cells} cells{note}", (high, row), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize="x-small")  # fmt: skip
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.margins(x=0.25)
    ax.set(xlabel=r"$\alpha$ in $\eta^* \approx c\,(d w)^{-\alpha}$ (95% bootstrap interval)", title=title)
    return fig


def variant_ratios(frame: pd.DataFrame, base: str | None = None, quantity: str = "eta_star") -> pd.DataFrame:
    """Each row of ``frame`` with its base variant's value for the same dataset, depth, width and seed, and the ratio.

    ``base`` is the base variant's name; None takes each grid's first variant (its grid's base, in the
    grids' order). The ratio is NaN where either search did not converge.
    """
    keys = ["dataset", "depth", "width", "seed"]
    parts = []
    for grid, rows in frame.groupby("grid", sort=False):
        name = rows["variant"].iloc[0] if base is None else base
        if name not in set(rows["variant"]):
            raise ValueError(f"grid {grid!r} has no variant {name!r}; it has {', '.join(rows['variant'].unique())}")
        reference = rows.loc[rows["variant"] == name, keys + [quantity]].rename(columns={quantity: "base_value"})
        merged = rows[keys + ["variant", quantity]].merge(reference, on=keys, how="left", validate="many_to_one")
        merged["ratio"] = pd.to_numeric(merged[quantity], errors="coerce") / pd.to_numeric(merged["base_value"], errors="coerce")
        parts.append(merged.assign(grid=grid, base_variant=name))
    return pd.concat(parts, ignore_index=True)


def plot_variants(ratios: pd.DataFrame, *, by: str | list[str] = "dataset", ncols: int = 2) -> Figure:
    """eta* of each variant divided by its base variant's, per (depth, width, seed), one panel per group.

    ``ratios`` is ``variant_ratios``'s frame. Variants run along x in the grid's order (the base first,
    at 1 by construction); points are cells and seeds, coloured by (depth, width), slightly spread; the
    black bar is the variant's median. A variant that leaves eta* unchanged sits on the line at 1.
    """
    groups = groups_of(ratios, by)
    cells = ratios[["depth", "width"]].drop_duplicates().sort_values(["depth", "width"])
    palette = dict(zip(map(tuple, cells.to_numpy()), sns.color_palette("colorblind", len(cells))))
    fig, axes = panels(len(groups), ncols, width=5.2, height=4.0)
    rng = np.random.default_rng(0)
    for ax, (key, rows) in zip(axes, groups):
        variants = list(dict.fromkeys(rows["variant"]))
        ax.axhline(1.0, color="black", linewidth=0.8)
        for x, variant in enumerate(variants):
            points = rows[(rows["variant"] == variant) & np.isfinite(rows["ratio"])]
            jitter = rng.uniform(-0.15, 0.15, len(points))
            ax.scatter(x + jitter, points["ratio"], c=[palette[(d, w)] for d, w in zip(points["depth"], points["width"])],
                       s=28, alpha=0.8, linewidths=0)  # fmt: skip
            if len(points):
                ax.plot([x - 0.3, x + 0.3], [points["ratio"].median()] * 2, color="black", linewidth=2.2)
        ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
        ax.set(yscale="log", title=group_label(key), xlabel="variant (base first)")
        log_ticks(ax.yaxis, subs=(1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0))
    axes[0].set_ylabel(r"$\eta^*$ / $\eta^*$ of the base variant")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=f"d={d}, w={w}") for (d, w), c in palette.items()]
    handles.append(plt.Line2D([], [], color="black", linewidth=2.2, label="median"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return fig


# Chapters 6-8: the late-training maximum LR against eta*, sharpness at init against eta*, and our bounds on
# lambda_1. Several quantities share one log-log panel per dataset; exponents are shown signed (y ~ (d w)^p).

QUANTITY_STYLE = {
    "eta_star": {"label": r"$\eta^*$ (at init)", "color": "C0", "marker": "o"},
    "late_max_lr": {"label": "late max LR", "color": "C1", "marker": "s"},
    "lambda_1": {"label": r"$\lambda_1(H)$", "color": "C0", "marker": "o"},
    "lambda_1_ggn": {"label": r"$\lambda_1(G)$", "color": "C2", "marker": "D"},
    "lower_bound": {"label": "lower bound", "color": "C4", "marker": "v"},
    "ggn_upper_bound": {"label": "upper bound (empirical)", "color": "C3", "marker": "^"},
    "half_ntk_trace": {"label": r"$\frac{1}{2}$ mean $\|J_i\|_F^2$", "color": "C5", "marker": "P"},
    "expected_upper_bound": {"label": "closed form E", "color": "black", "marker": "_"},
}


def tidy_log_axes(ax) -> None:
    """Plain-number tick labels on whichever axes of ``ax`` are logarithmic."""
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            log_ticks(axis)


def quantity_style(quantity: str, index: int = 0) -> dict:
    return QUANTITY_STYLE.get(quantity, {"label": quantity, "color": f"C{index % 10}", "marker": "o"})


def exponents_table(frame: pd.DataFrame, quantities: list[str], by: str | list[str] = "dataset") -> pd.DataFrame:
    """Signed exponent p of quantity ~ c (d w)^p per group and quantity, with its 95% bootstrap interval and R^2.

    A group where no fit is possible (fewer than two distinct d w with a usable value) gets a row saying why.
    """
    rows = []
    for quantity in quantities:
        fits, skipped = fit_each(frame, by, quantity)
        rows += [{"group": group_label(key), "quantity": quantity, "exponent": fit.exponent,
                  "CI low": fit.exponent_ci[0] if fit.has_interval else np.nan,
                  "CI high": fit.exponent_ci[1] if fit.has_interval else np.nan, "R^2": fit.r2, "cells": fit.n_cells,
                  "values": fit.n_values, "dropped": fit.n_dropped,
                  "note": "" if fit.has_interval else "one seed per cell: no bootstrap interval"}
                 for key, fit in fits.items()]  # fmt: skip
        rows += [{"group": group_label(key), "quantity": quantity, "note": f"no fit: {why}"} for key, why in skipped.items()]
    return pd.DataFrame(rows).set_index(["group", "quantity"])


def plot_quantities_vs_dw(
    frame: pd.DataFrame, quantities: list[str], *, by: str | list[str] = "dataset", fit: bool = True,
    ylabel: str = "value", ncols: int = 3,
) -> Figure:
    """Several quantities against depth x width on log-log axes, one panel per group (dataset).

    One small point per seed, a large point per cell (median over seeds on the log scale) and, with
    ``fit``, each quantity's fitted power law with its signed exponent in the legend (or "no fit").
    Non-positive or missing values cannot be drawn on a log axis: their number is written in the panel.
    """
    groups = groups_of(frame, by)
    fig, axes = panels(len(groups), ncols, sharey=False, width=4.8)
    for ax, (key, rows) in zip(axes, groups):
        dropped = 0
        for index, quantity in enumerate(quantities):
            style = quantity_style(quantity, index)
            values = pd.to_numeric(rows[quantity], errors="coerce").astype(float)
            usable = np.isfinite(values) & (values > 0)
            dropped += int((~usable).sum())
            kept = pd.DataFrame({"dw": (rows["depth"] * rows["width"])[usable], "value": values[usable]})
            if kept.empty:
                continue
            ax.scatter(kept["dw"], kept["value"], color=style["color"], marker=style["marker"], s=14, alpha=0.4,
                       linewidths=0)  # fmt: skip
            cells = kept.groupby("dw")["value"].apply(lambda v: float(np.exp(np.median(np.log(v)))))
            label = style["label"]
            if fit:
                fits, _ = fit_each(rows.assign(_g=0), "_g", quantity)
                if fits:
                    f = fits[0]
                    xs = np.geomspace(kept["dw"].min(), kept["dw"].max(), 50)
                    ax.plot(xs, f.predict(xs), color=style["color"], linestyle="--", linewidth=1.1)
                    low, high = f.exponent_ci
                    interval = f"[{low:.2f}, {high:.2f}]" if high > low else "(one seed: no interval)"
                    label += rf": $(dw)^{{{f.exponent:.2f}}}$ {interval}"
                else:
                    label += ": no fit"
            ax.scatter(cells.index, cells.to_numpy(), color=style["color"], marker=style["marker"], s=55,
                       edgecolors="black", linewidths=0.6, zorder=3, label=label)  # fmt: skip
        if dropped:
            ax.text(0.97, 0.03, f"{dropped} value(s) missing or <= 0, not drawn", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize="x-small")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel=r"depth $\times$ width", title=group_title(key, rows))
        tidy_log_axes(ax)
        ax.legend(loc="best", fontsize="x-small")
    axes[0].set_ylabel(ylabel)
    return fig


def plot_late_ratio(frame: pd.DataFrame, *, by: str | list[str] = "dataset") -> Figure:
    """Per group (dataset), two panels: late max LR / eta* per network, and the pretraining accuracy against t.

    Left: the ratio of each seed against d w, coloured by depth, with the line ratio = 1 (a ratio above
    1 means the trained network tolerates a larger LR than the fresh one). Right: the validation accuracy
    the pretraining reached, with the threshold t; networks below t are crossed out in red, since their
    late search starts from a network that had not "successfully begun training" by our criterion.
    """
    groups = groups_of(frame, by)
    colors = depth_colors(frame["depth"])
    fig, grid = plt.subplots(len(groups), 2, figsize=(10.5, 3.7 * len(groups)), squeeze=False, layout="constrained")
    for (ratio_ax, acc_ax), (key, rows) in zip(grid, groups):
        dw = rows["depth"] * rows["width"]
        ratio = pd.to_numeric(rows["ratio"], errors="coerce").astype(float)
        accuracy = pd.to_numeric(rows["pretrain_accuracy"], errors="coerce").astype(float)
        threshold = pd.to_numeric(rows["threshold"], errors="coerce").astype(float)
        below = accuracy < threshold
        jitter = np.exp(0.04 * (rows["seed"].to_numpy(float) - rows["seed"].mean()))
        for ax, values in ((ratio_ax, ratio), (acc_ax, accuracy)):
            ok = values.notna() & ~below
            ax.scatter(dw[ok] * jitter[ok.to_numpy()], values[ok], c=[colors[int(d)] for d in rows["depth"][ok]],
                       s=45, edgecolors="black", linewidths=0.5, zorder=3)  # fmt: skip
            bad = values.notna() & below
            if bad.any():
                ax.scatter(dw[bad] * jitter[bad.to_numpy()], values[bad], c=[colors[int(d)] for d in rows["depth"][bad]],
                           s=45, edgecolors="black", linewidths=0.5, zorder=3)  # fmt: skip
                ax.scatter(dw[bad] * jitter[bad.to_numpy()], values[bad], marker="x", color="red", s=110,
                           linewidths=1.6, zorder=4)  # fmt: skip
            ax.set(xscale="log", xlabel=r"depth $\times$ width")
            tidy_log_axes(ax)
        ratio_ax.axhline(1.0, color="black", linewidth=0.9, linestyle="--")
        ratio_ax.set(yscale="log", ylabel=r"late max LR / $\eta^*$", title=f"{group_label(key)}: late / initial")
        tidy_log_axes(ratio_ax)
        for t in threshold.dropna().unique():
            acc_ax.axhline(t, color="black", linewidth=0.9, linestyle="--")
        acc_ax.set(ylabel="validation accuracy after pretraining",
                   title=f"{group_label(key)}: {int(below.sum())} of {len(rows)} below t")
        missing = int(ratio.isna().sum())
        if missing:
            ratio_ax.text(0.03, 0.04, f"{missing} without a ratio", transform=ratio_ax.transAxes, fontsize="x-small")
    extra = [plt.Line2D([], [], color="black", linestyle="--", label="ratio 1 / threshold t"),
             plt.Line2D([], [], marker="x", linestyle="", color="red", markersize=9, label="pretraining below t")]
    depth_legend(fig, colors, extra)
    return fig


def plot_eta_vs_sharpness(joined: pd.DataFrame, *, by: str | list[str] = "dataset") -> Figure:
    """eta* against lambda_1 at init (left) and against 2 / lambda_1 (right), log-log, one row per group.

    ``joined`` is ``milr_core.sharpness.join_eta_star``'s frame. The reference line is eta* = 2 / lambda_1
    (the identity on the right), the largest stable step of gradient descent on a quadratic with top
    curvature lambda_1; points above it train at initial learning rates beyond that classical edge.
    """
    groups = groups_of(joined, by)
    colors = depth_colors(joined["depth"])
    fig, grid = plt.subplots(len(groups), 2, figsize=(10.5, 3.9 * len(groups)), squeeze=False, layout="constrained")
    for (left, right), (key, rows) in zip(grid, groups):
        c = [colors[int(d)] for d in rows["depth"]]
        sizes = 25 + 25 * np.log2(rows["width"].to_numpy(float) / rows["width"].min())
        for ax, x in ((left, rows["lambda_1"]), (right, rows["two_over_lambda"])):
            ax.scatter(x, rows["eta_star"], c=c, s=sizes, edgecolors="black", linewidths=0.5, zorder=3)
            ax.set(xscale="log", yscale="log")
        lam = np.geomspace(rows["lambda_1"].min() / 1.5, rows["lambda_1"].max() * 1.5, 50)
        left.plot(lam, 2 / lam, color="black", linestyle="--", linewidth=1, label=r"$\eta = 2/\lambda_1$")
        left.set(xlabel=r"$\lambda_1$ at initialisation", ylabel=r"$\eta^*$", title=group_label(key))
        left.legend(loc="best", fontsize="x-small")
        inv = np.geomspace(min(rows["two_over_lambda"].min(), rows["eta_star"].min()) / 1.5,
                           max(rows["two_over_lambda"].max(), rows["eta_star"].max()) * 1.5, 50)  # fmt: skip
        right.plot(inv, inv, color="black", linestyle="--", linewidth=1, label=r"$\eta^* = 2/\lambda_1$")
        right.set(xlabel=r"$2/\lambda_1$", ylabel=r"$\eta^*$", title=f"{group_label(key)}: against the GD edge")
        right.legend(loc="best", fontsize="x-small")
        for ax in (left, right):
            tidy_log_axes(ax)
    extra = [plt.Line2D([], [], marker="o", linestyle="", color="0.5", markersize=s, label=f"width {w}")
             for w, s in zip(sorted(joined["width"].unique()), np.linspace(5, 10, joined["width"].nunique()))]  # fmt: skip
    depth_legend(fig, colors, extra)
    return fig


def plot_eta_lambda_product(
    joined: pd.DataFrame, *, by: str | list[str] = "dataset", ncols: int = 3, window: tuple[float, float] | None = None
) -> Figure:
    """eta* x lambda_1 of every network against depth x width, one panel per group, coloured by depth.

    Constant if eta* and lambda_1 were inversely related; the dashed line is 2 (eta* = 2 / lambda_1) and
    the dotted line the group's median product. ``window`` = (2, 4) shades the catapult window of
    Lewkowycz et al. (2020) and draws its upper edge too (chapter 11).
    """
    groups = groups_of(joined, by)
    colors = depth_colors(joined["depth"])
    fig, axes = panels(len(groups), ncols, sharey=False, width=4.6)
    for ax, (key, rows) in zip(axes, groups):
        dw = rows["depth"] * rows["width"]
        ax.scatter(dw, rows["eta_lambda"], c=[colors[int(d)] for d in rows["depth"]], s=45, edgecolors="black",
                   linewidths=0.5, zorder=3)  # fmt: skip
        ax.axhline(2.0, color="black", linestyle="--", linewidth=1)
        ax.axhline(rows["eta_lambda"].median(), color="0.4", linestyle=":", linewidth=1.2)
        if window is not None:
            ax.axhspan(*window, color="C1", alpha=0.15, linewidth=0)
            ax.axhline(window[1], color="black", linestyle="-.", linewidth=1)
        spread = rows["eta_lambda"].max() / rows["eta_lambda"].min()
        ax.set(xscale="log", yscale="log", xlabel=r"depth $\times$ width",
               title=f"{group_label(key)}: max/min = {spread:.2g}")  # fmt: skip
        tidy_log_axes(ax)
    axes[0].set_ylabel(r"$\eta^* \lambda_1$")
    extra = [plt.Line2D([], [], color="black", linestyle="--", label=r"$\eta^*\lambda_1 = 2$"),
             plt.Line2D([], [], color="0.4", linestyle=":", label="median")]
    if window is not None:
        extra += [plt.Line2D([], [], color="black", linestyle="-.", label=rf"$\eta^*\lambda_1 = {window[1]:g}$"),
                  Patch(color="C1", alpha=0.3, label="catapult window")]  # fmt: skip
    depth_legend(fig, colors, extra)
    return fig


def plot_bounds(table: pd.DataFrame, *, by: str | list[str] = "dataset") -> Figure:
    """Our bounds on lambda_1 against depth x width (left) and each divided by lambda_1(G) (right), one row per group.

    ``table`` is ``milr_core.theory.bounds_check``'s frame. Right: a proved lower bound sits at or below
    1, a proved upper bound at or above; lambda_1(H) / lambda_1(G) shows how far the full Hessian's top
    eigenvalue moves from its Gauss-Newton part; the gap between the upper bound and 1 is its looseness.
    """
    quantities = ["lower_bound", "lambda_1", "lambda_1_ggn", "ggn_upper_bound", "half_ntk_trace", "expected_upper_bound"]
    groups = groups_of(table, by)
    fig, grid = plt.subplots(len(groups), 2, figsize=(11.5, 3.9 * len(groups)), squeeze=False, layout="constrained")
    for (left, right), (key, rows) in zip(grid, groups):
        dw = rows["depth"] * rows["width"]
        jitter = np.exp(0.05 * (rows["seed"].to_numpy(float) - rows["seed"].mean()))
        for index, quantity in enumerate(quantities):
            style = quantity_style(quantity, index)
            kwargs = dict(color=style["color"], marker=style["marker"], s=36 if style["marker"] != "_" else 120,
                          zorder=3, label=style["label"])  # fmt: skip
            if style["marker"] not in ("_",):
                kwargs |= {"edgecolors": "black", "linewidths": 0.4}
            left.scatter(dw * jitter, rows[quantity], **kwargs)
            if quantity != "lambda_1_ggn":
                right.scatter(dw * jitter, rows[quantity] / rows["lambda_1_ggn"], **kwargs)
        right.axhline(1.0, color=quantity_style("lambda_1_ggn")["color"], linewidth=1.2, label=r"$\lambda_1(G)$")
        held = rows["sandwich"].mean() if "sandwich" in rows else np.nan
        left.set(xscale="log", yscale="log", xlabel=r"depth $\times$ width", ylabel="curvature",
                 title=f"{group_label(key)}")  # fmt: skip
        right.set(xscale="log", yscale="log", xlabel=r"depth $\times$ width", ylabel=r"value / $\lambda_1(G)$",
                  title=f"{group_label(key)}: lower <= $\\lambda_1(G)$ <= upper in {held:.0%}")  # fmt: skip
        tidy_log_axes(left)
        tidy_log_axes(right)
    handles, labels = grid[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    return fig


def late_ratio_table(frame: pd.DataFrame, by: str | list[str] = "dataset") -> pd.DataFrame:
    """Per group (dataset): networks, late max LR / eta* (median, min, max) and networks whose pretraining stayed below t."""
    below = pd.to_numeric(frame["pretrain_accuracy"], errors="coerce") < pd.to_numeric(frame["threshold"], errors="coerce")
    return frame.assign(below_t=below).groupby(by, sort=False).agg(
        networks=("ratio", "size"), ratio_median=("ratio", "median"), ratio_min=("ratio", "min"),
        ratio_max=("ratio", "max"), pretraining_below_t=("below_t", "sum"),
    )  # fmt: skip


# Chapters 10-12, beyond the paper: eta* against width per parameterisation, catapult trajectories, and
# held-out predictions of milr predict.


def width_exponents_table(frame: pd.DataFrame, by: str | list[str] = ["dataset", "variant"], quantity: str = "eta_star") -> pd.DataFrame:  # noqa: B006
    """Per group: the slope s of log eta* on log width at fixed depth (``fit.width_exponent``), with its interval.

    s = 0: eta* does not depend on width at fixed depth (hyperparameter transfer across width).
    """
    rows = []
    for key, group in groups_of(frame, by):
        try:
            w = width_exponent(group, quantity)
        except ValueError as error:
            rows.append({"group": group_label(key), "note": f"no fit: {error}"})
            continue
        one_seed = w.n_values == w.n_cells
        rows.append({"group": group_label(key), "width slope": w.slope,
                     "CI low": np.nan if one_seed else w.slope_ci[0], "CI high": np.nan if one_seed else w.slope_ci[1],
                     "cells": w.n_cells, "depths": w.n_depths, "dropped": w.n_dropped,
                     "note": "one seed per cell: no interval" if one_seed else ""})  # fmt: skip
    return pd.DataFrame(rows).set_index("group")


def plot_eta_vs_width(
    frame: pd.DataFrame, *, by: str | list[str] = ["dataset", "variant"], quantity: str = "eta_star", ncols: int = 3  # noqa: B006
) -> Figure:
    """eta* against width at each depth (one line per depth through the cells' medians), one panel per group.

    Flat lines mean eta* transfers across width at fixed depth; the panel's title gives the width slope
    (``fit.width_exponent``). Panels do not share the y axis: parameterisations differ in eta*'s scale.
    """
    groups = groups_of(frame, by)
    colors = depth_colors(frame["depth"])
    fig, axes = panels(len(groups), ncols, sharey=False, width=4.0, height=3.4)
    for ax, (key, rows) in zip(axes, groups):
        kept = draw_seeds_and_medians(ax, rows, quantity, colors, "width", connect=True)
        try:
            w = width_exponent(rows, quantity, n_bootstrap=200)
            slope = f"width slope {w.slope:+.2f}"
        except ValueError:
            slope = "no width slope"
        ax.set(xscale="log", yscale="log", xlabel="width", title=f"{group_label(key)}: {slope}")
        ax.title.set_fontsize("medium")
        tidy_log_axes(ax)
        ax.set_xticks(sorted(kept["width"].unique()))  # the grid's widths (powers of two) as labels
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes[0].set_ylabel(r"$\eta^*$" if quantity == "eta_star" else quantity)
    depth_legend(fig, colors)
    return fig


def plot_catapult_trajectories(runs: list) -> Figure:
    """Full-batch MSE training at a few learning rates: the loss per step (left, log scale) and lambda_1 over
    steps (right) with each run's 2 / lr (dotted, its colour); ``runs`` holds ``catapult.CatapultTrajectory`` objects.

    In the catapult window (2 <= lr lambda_1 < 4) the loss spikes, then falls as lambda_1 drops below 2 / lr;
    below 2 / lambda_1 both move smoothly (Lewkowycz et al. 2020).
    """
    fig, (loss_ax, sharp_ax) = plt.subplots(1, 2, figsize=(10.5, 3.8), layout="constrained")
    for index, run in enumerate(runs):
        color = f"C{index}"
        label = rf"$\eta\lambda_1$ = {run.eta_lambda:.2g}"
        loss_ax.plot(range(len(run.loss)), run.loss, color=color, linewidth=1.6, label=label)
        sharp_ax.plot(run.lambda_steps, run.lambda_1, color=color, marker="o", markersize=4, linewidth=1.6, label=label)
        sharp_ax.axhline(2 / run.lr, color=color, linestyle=":", linewidth=1.3)
        if run.diverged_at is not None:
            loss_ax.axvline(run.diverged_at, color=color, linestyle="--", linewidth=1)
    loss_ax.set(yscale="log", xlabel="gradient-descent step", ylabel="training loss (MSE, full batch)",
                title="loss")  # fmt: skip
    sharp_ax.set(xlabel="gradient-descent step", ylabel=r"$\lambda_1$ (top Hessian eigenvalue)", ylim=(0, None),
                 title=r"sharpness; dotted: $2/\eta$ of the run in its colour")  # fmt: skip
    for ax, where in ((loss_ax, "best"), (sharp_ax, "center right")):
        tidy_log_axes(ax)
        ax.legend(loc=where, fontsize="small")
    return fig


def plot_held_out(table: pd.DataFrame, *, by: str | list[str] = "dataset", ncols: int = 3) -> Figure:
    """Held-out predictions (``predict.leave_one_cell_out``) against the measured eta*, log-log, one panel per group.

    Each cell: the prediction from the other cells with its interval (vertical bar; none where the other
    cells leave no scatter), coloured by depth; a cell whose interval misses the measured value is ringed
    in red. The solid line is perfect prediction, the dotted lines a factor 2 either way. The y axis spans the
    points times or divided by 4: longer bars (few cells leave few degrees of freedom) run off the panel.
    """
    groups = groups_of(table, by)
    colors = depth_colors(table["depth"])
    fig, axes = panels(len(groups), ncols, sharey=False, width=4.2, height=3.8)
    for ax, (key, rows) in zip(axes, groups):
        for _, row in rows.iterrows():
            color = colors[int(row["depth"])]
            if np.isfinite(row["low"]):
                ax.plot([row["measured"]] * 2, [row["low"], row["high"]], color=color, linewidth=1.2, alpha=0.7)
            ax.scatter(row["measured"], row["predicted"], color=color, s=45, edgecolors="black", linewidths=0.5, zorder=3)
            if row["covered"] is False:
                ax.scatter(row["measured"], row["predicted"], s=140, facecolors="none", edgecolors="red",
                           linewidths=1.4, zorder=4)  # fmt: skip
        values = pd.concat([rows["measured"], rows["predicted"]])
        span = np.geomspace(values.min() / 1.5, values.max() * 1.5, 20)
        ax.plot(span, span, color="black", linewidth=1)
        for factor in (0.5, 2.0):
            ax.plot(span, factor * span, color="0.5", linestyle=":", linewidth=1)
        covered = rows["covered"].dropna()
        coverage = f"{int(covered.astype(bool).sum())}/{len(covered)} inside" if len(covered) else "no intervals"
        ax.set(xscale="log", yscale="log", xlabel=r"measured $\eta^*$ (median over seeds)",
               title=f"{group_label(key)}: {coverage}", ylim=(values.min() / 4, values.max() * 4))  # fmt: skip
        tidy_log_axes(ax)
    axes[0].set_ylabel(r"predicted $\eta^*$ (cell left out)")
    extra = [plt.Line2D([], [], color="black", label="predicted = measured"),
             plt.Line2D([], [], color="0.5", linestyle=":", label="factor 2"),
             plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="red",
                        markersize=10, label="interval misses")]  # fmt: skip
    depth_legend(fig, colors, extra)
    return fig
