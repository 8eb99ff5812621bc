"""The book's figures: one style, and functions that take tidy data (or a search result) and return a Figure.

Functions never call ``plt.show`` and never pick a backend: in a notebook the inline backend draws the
returned Figure, headless scripts get matplotlib's default (Agg when there is no display).
Captions (data source, profile, seeds) belong to the notebook that calls them, not here.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

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


def show_figure(fig: Figure, text: str, meta: dict, profile: str, seeds: list[int]) -> object:
    """Display ``fig`` now and return its caption as Markdown: ``text``, then data source, profile and seeds.

    Why: every figure of the book says which data (a lossy JPEG mirror is not the canonical set),
    which profile (smoke grids are tiny) and which seeds it shows, and the caption must come after
    the figure (the inline backend would otherwise draw the figure after the cell's result).
    """
    from IPython.display import Markdown, display

    display(fig)
    plt.close(fig)
    source = meta["source"] + (f", lossy mirror {meta['mirror']}" if meta.get("lossy") else "")
    seed_list = ", ".join(str(s) for s in seeds)
    return Markdown(f"**Figure.** {text} Data: `{meta['name']}` ({source}). Profile: `{profile}`. Seeds: {seed_list}.")


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
