"""Figures of chapter 14: what each cheap predictor of eta* costs against how far it lands, and the range test's curves.

Drawing only, from ``predictor_tables.predictor_table`` and the ``predictors`` experiment's ledger; a frame that is
None or empty gives a one-panel figure that says so (``plot_curvature.not_computed``).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from milr_core.plot_curvature import DATASET_NAMES, PANEL_HEIGHT, legend_below, not_computed
from milr_core.predictor_tables import PREDICTORS, SEARCH
from milr_core.style import COLUMN_WIDTH_IN

# seaborn's colour-blind palette, one colour per predictor
COLORS = dict(zip(PREDICTORS.values(), ("#0173b2", "#56b4e9", "#d55e00", "#029e73", "#de8f05", "#cc78bc", "#949494")))
MARKERS = {"mnist": "o", "cifar10": "s", "gaussians": "^", "fashion_mnist": "D"}
# the range test's three rules share a cost: drawn a little apart, so that none hides another
NUDGE = {PREDICTORS["range_steep"]: 0.87, PREDICTORS["range_valley"]: 1.15}
SUGGESTION_STYLE = {"range_steep": ("#029e73", ":"), "range_minimum": ("#de8f05", "--"), "range_valley": ("#cc78bc", "-.")}


def plot_cost_vs_error(table: pd.DataFrame | None) -> Figure:
    """Each predictor's median cost per network (SGD steps, symmetric log: 0 is the power law's, given the store)
    against its held-out typical factor, one filled point per predictor and dataset; hollow: the raw constant's
    factor; dashed: one eta* search's median cost per dataset. The range test's rules, of equal cost, are drawn a
    little apart."""
    if table is None or table.empty or table["held-out error"].isna().all():
        return not_computed("The store holds no predictor records with a measured η* yet.")
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.9), layout="constrained")
    rows = table[table["predictor"] != SEARCH]
    for _, row in rows.iterrows():
        color, marker = COLORS[row["predictor"]], MARKERS.get(row["dataset"], "o")
        x = row["cost (SGD steps)"] * NUDGE.get(row["predictor"], 1.0)
        ax.scatter(x, row["factor"], color=color, marker=marker, s=46, zorder=3)
        if row["predictor"] != PREDICTORS["power_law"] and math.isfinite(row["raw factor"]):
            ax.scatter(x, row["raw factor"], facecolors="none", edgecolors=color, marker=marker, s=46)
            ax.plot([x, x], [row["factor"], row["raw factor"]], color=color, lw=0.7, alpha=0.6)
    for _, row in table[table["predictor"] == SEARCH].iterrows():
        ax.axvline(row["cost (SGD steps)"], color="black", ls="--", lw=0.8)
        ax.text(row["cost (SGD steps)"], 0.97, f"η* search, {DATASET_NAMES.get(row['dataset'], row['dataset'])} ",
                rotation=90, va="top", ha="right", fontsize=8, transform=ax.get_xaxis_transform())  # fmt: skip
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("log")
    ax.set_xlim(left=-0.5)
    ax.set_xlabel("cost per network (SGD-step equivalents; 0: none beyond the store)")
    ax.set_ylabel("typical factor from η*")
    shown = [label for label in PREDICTORS.values() if label in set(rows["predictor"])]
    handles = [Line2D([], [], color=COLORS[label], marker="o", ls="", label=label) for label in shown]
    handles += [Line2D([], [], color="black", marker=MARKERS.get(d, "o"), ls="", label=DATASET_NAMES.get(d, d))
                for d in rows["dataset"].unique()]  # fmt: skip
    handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="none", ls="", label="raw constant"))
    legend_below(fig, handles, ncols=3)
    return fig


def plot_range_tests(curves: pd.DataFrame | None, eta: pd.DataFrame | None, networks: list[tuple]) -> Figure:
    """The smoothed range-test loss against the learning rate for a few networks (dataset, depth, width, seed), one
    panel each, with their measured eta* (solid), the critical LR (grey) and the three suggestions."""
    if curves is None or curves.empty or eta is None or not networks:
        return not_computed("The store holds no range-test curves yet.")
    ncols = min(3, len(networks))
    nrows = math.ceil(len(networks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(COLUMN_WIDTH_IN, PANEL_HEIGHT * nrows + 0.4), layout="constrained",
                             squeeze=False)  # fmt: skip
    keys = ["dataset", "depth", "width", "seed"]
    for ax, network in zip(axes.flat, networks):
        match = dict(zip(keys, network))
        curve = curves[(curves[keys] == pd.Series(match)).all(axis=1) & (curves["protocol"] == "range_test")]
        measured = eta[(eta[keys] == pd.Series(match)).all(axis=1)]
        if curve.empty:
            ax.set_axis_off()
            continue
        row = curve.iloc[0]
        ax.plot(row["lrs"], row["smoothed"], color="black", lw=1.2)
        for key, (color, style) in SUGGESTION_STYLE.items():
            if pd.notna(row.get(key)):
                ax.axvline(row[key], color=color, ls=style, lw=1.1)
        if pd.notna(row.get("critical_lr")):
            ax.axvline(row["critical_lr"], color="#949494", lw=2, alpha=0.7)
        if len(measured) and np.isfinite(measured["eta_star"].iloc[0]):
            ax.axvline(float(measured["eta_star"].iloc[0]), color="#d55e00", lw=1.6)
        finite = [v for v in row["smoothed"] if math.isfinite(v)]
        ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), min(max(finite), 2 * finite[0]) * 1.05)  # a blow-up clipped
        ax.set_xscale("log")
        ax.set_title(f"{DATASET_NAMES.get(match['dataset'], match['dataset'])}, depth {match['depth']}, width {match['width']}")
        ax.set_xlabel("learning rate")
    for ax in axes[:, 0]:
        ax.set_ylabel("smoothed training loss")
    for ax in list(axes.flat)[len(networks):]:
        ax.set_axis_off()
    handles = [Line2D([], [], color="#d55e00", lw=1.6, label="measured η*"),
               Line2D([], [], color="#949494", lw=2, alpha=0.7, label=PREDICTORS["critical"])]
    handles += [Line2D([], [], color=c, ls=s, label=PREDICTORS[k]) for k, (c, s) in SUGGESTION_STYLE.items()]
    legend_below(fig, handles, ncols=3)
    return fig
