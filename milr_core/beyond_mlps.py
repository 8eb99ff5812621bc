"""Chapter 13's tables, figure and sentences: eta* of model families beyond our MLPs, and the LR range test on them.

From the ``beyond_mlps`` experiment's frame (kinds ``model_eta_star`` and ``model_range_test``, ``families.py``):

- ``family_frames``: its eta* records and its range-test records, each labelled with its ``family``. The power law
  is then fitted per dataset and family by ``tables.py`` (``fits_table``, ``product_form_table``, ``alpha_vs_cutoff``,
  ``width_slope_by_depth`` with ``by=BY``), with the MLPs' regime rule of ``fit.py`` among the alternatives
  ``alpha_vs_cutoff`` shows; each family's depth and width are its own (``families.py``).
- ``finder_frame`` / ``finder_table``: per network with a measured eta*, each range-test suggestion (fastai's
  rules, ``lr_finder.py``) over eta*, and the cost of each protocol in SGD steps: the range test's steps up to its
  stop, and every probe's steps of the eta* search (validation passes counted by neither).
- ``plot_finder``: the suggestions against eta*; ``law_sentence`` and ``finder_sentence``: what we see.

All choices here are ours.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from milr_core.plot import label_of, legend_below, panels, tidy_log_axes
from milr_core.tables import ALL_CELLS, positive

BY = ("dataset", "family")
FAMILY_NAMES = {"cnn": "CNN", "transformer": "transformer", "mlp": "MLP"}
KEYS = ["dataset", "family", "depth", "width", "seed"]
RULES = {"steep": "steepest", "minimum": "minimum / 10", "valley": "valley"}  # fastai's rules, as lr_finder names them
RULE_STYLE = {"steep": ("o", "#0173b2"), "minimum": ("s", "#de8f05"), "valley": ("D", "#029e73")}


def family_frames(frame: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(eta* records, range-test records) of the experiment's frame, each with ``family`` (None where there are none)."""
    if frame is None:
        return None, None
    frame = frame.assign(family=frame["model.family"].map(lambda name: FAMILY_NAMES.get(name, name)))
    parts = [frame[frame["kind"] == kind].reset_index(drop=True) for kind in ("model_eta_star", "model_range_test")]
    return tuple(part if len(part) else None for part in parts)


# ----------------------------------------------------------------------------------------------------------
# the range test against eta*


def finder_frame(eta: pd.DataFrame, ranges: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
    """One row per network with a measured eta* and rule: eta*, the rule's suggestion, their ratio, and the SGD steps
    of the range test (up to its stop) and of the eta* search (every probe's, from ``ledger``, the experiment's
    ``ResultStore.ledger_frame``)."""
    search = ledger.groupby("hash")["steps"].sum() if "steps" in ledger else pd.Series(dtype=float)
    measured = eta.assign(eta_star=positive(eta["eta_star"])).dropna(subset=["eta_star"])
    networks = measured[KEYS + ["eta_star"]].assign(search_steps=measured["hash"].map(search).to_numpy())
    suggestions = ranges[KEYS + ["range_steps_used", *(f"range_{rule}" for rule in RULES)]]
    joined = networks.merge(suggestions, on=KEYS)
    rows = [joined[KEYS + ["eta_star", "search_steps", "range_steps_used"]].assign(
        rule=rule, suggestion=positive(joined[f"range_{rule}"])) for rule in RULES]  # fmt: skip
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return frame.assign(ratio=frame["suggestion"] / frame["eta_star"]) if len(frame) else frame


def finder_table(finder: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, family and rule: networks (and those without a suggestion), the median ratio suggestion / eta*
    with its smallest and largest, the typical factor ``exp(mean(abs(ln ratio)))``, Spearman's rank correlation of the
    suggestion with eta* across networks, and the median SGD steps of one range test and of one eta* search."""
    table = []
    for (dataset, family, rule), group in finder.groupby(["dataset", "family", "rule"], sort=False):
        usable = group.dropna(subset=["suggestion"])
        ratio = usable["ratio"]
        rho = stats.spearmanr(usable["suggestion"], usable["eta_star"]).statistic if len(usable) > 2 else math.nan
        table.append({
            "dataset": dataset, "family": family, "rule": RULES[rule], "networks": len(usable),
            "missing": len(group) - len(usable), "median ratio": ratio.median(), "lowest": ratio.min(),
            "highest": ratio.max(), "factor": math.exp(np.log(ratio).abs().mean()) if len(ratio) else math.nan,
            "rank ρ": rho, "range test (steps)": group["range_steps_used"].median(),
            "η* search (steps)": group["search_steps"].median(),
        })  # fmt: skip
    return pd.DataFrame(table)


def plot_finder(finder: pd.DataFrame) -> Figure:
    """Each range-test suggestion against the network's eta* (log-log), one panel per dataset and family, one marker
    per rule; the diagonal is eta* itself, the dotted line a tenth of it."""
    groups = [(dict(zip(BY, key)), rows) for key, rows in finder.groupby(list(BY), sort=False)]
    fig, axes = panels(len(groups), 2)
    for ax, (values, rows) in zip(axes, groups):
        for rule, (marker, color) in RULE_STYLE.items():
            part = rows[rows["rule"] == rule]
            ax.scatter(part["eta_star"], part["suggestion"], marker=marker, s=30, color=color, edgecolors="black",
                       linewidths=0.4, alpha=0.85, zorder=3)  # fmt: skip
        if rows["eta_star"].notna().any():
            span = np.array([rows["eta_star"].min() / 2, rows["eta_star"].max() * 2])
            ax.plot(span, span, color="black", linewidth=1)
            ax.plot(span, span / 10, color="0.4", linewidth=1, linestyle=":")
        ax.set(xscale="log", yscale="log", xlabel="measured η*", ylabel="suggested rate", title=label_of(values))
        tidy_log_axes(ax)
    handles = [Line2D([], [], marker=m, linestyle="", color=c, markeredgecolor="black", label=f"range test: {RULES[r]}")
               for r, (m, c) in RULE_STYLE.items()]  # fmt: skip
    handles += [Line2D([], [], color="black", label="= η*"), Line2D([], [], color="0.4", linestyle=":", label="= η* / 10")]
    legend_below(fig, handles, ncols=3)
    return fig


# ----------------------------------------------------------------------------------------------------------
# what we see


def law_sentence(fits: pd.DataFrame, product: pd.DataFrame, values: dict) -> str:
    """The power law over all cells of one dataset and family, and whether depth and width enter as d w."""
    fit = fits[(fits["cells"] == ALL_CELLS) & (fits["dataset"] == values["dataset"]) & (fits["family"] == values["family"])]
    form = product[(product["dataset"] == values["dataset"]) & (product["family"] == values["family"])]
    if fit.empty or pd.isna(fit["alpha"].iloc[0]):
        return f"no power law could be fitted ({fit['note'].iloc[0] if len(fit) else 'no cells'})."
    row = fit.iloc[0]
    text = (f"η* ≈ c (d·w)^−α with α = {row['alpha']:.2f} [{row['alpha low']:.2f}, {row['alpha high']:.2f}] over "
            f"{int(row['n cells'])} cells, R² = {row['R^2']:.2f}, a cell typically {row['scatter']:.2f}x off the law")
    if len(form) and pd.notna(form["a (depth)"].iloc[0]):
        shape = form.iloc[0]
        verdict = "consistent with d·w" if shape["d*w consistent"] else "not d·w: depth and width enter apart"
        text += f"; fitted apart, η* ∝ d^{shape['a (depth)']:.2f} w^{shape['b (width)']:.2f} ({verdict})"
    return text + "."


def finder_sentence(table: pd.DataFrame, values: dict) -> str:
    """Which range-test rule lands closest to eta* for one dataset and family, and what a test costs against a search."""
    rows = table[(table["dataset"] == values["dataset"]) & (table["family"] == values["family"])]
    rows = rows.dropna(subset=["factor"])
    if rows.empty:
        return "no range test has a suggestion to compare."
    best = rows.loc[rows["factor"].idxmin()]
    steps, search = best["range test (steps)"], best["η* search (steps)"]
    cost = f"; a range test took {steps:.0f} SGD steps, {steps / search:.2g} of one η* search's {search:.0f}"
    rho = f", rank ρ {best['rank ρ']:.2f} with η* across networks" if pd.notna(best["rank ρ"]) else ""
    return (f"of fastai's rules, {best['rule']} lands closest: median suggestion {best['median ratio']:.2g} x η* "
            f"(from {best['lowest']:.2g} to {best['highest']:.2g}, typically a factor {best['factor']:.2f} off{rho})"
            f"{cost if pd.notna(search) and search > 0 else ''}.")  # fmt: skip


def per_family(frame: pd.DataFrame | None, sentence) -> str:
    """A Markdown list, one item per dataset and family of ``frame``: its label and ``sentence(values)``."""
    if frame is None or frame.empty:
        return "Not yet computed."
    groups = frame[list(BY)].drop_duplicates().to_dict("records")
    return "\n".join(f"- **{label_of(values)}**: {sentence(values)}" for values in groups)
