"""Chapter 11's trajectory through the catapult window: full-batch gradient descent under MSE at a few eta lambda_1,
the loss per step and the sharpness over the steps (``catapult.catapult_trajectory``'s record). Drawing only.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from milr_core.plot import legend_below, tidy_log_axes
from milr_core.plot_curvature import PANEL_HEIGHT, RUN_COLORS, not_computed
from milr_core.style import COLUMN_WIDTH_IN


def plot_trajectory(record: pd.Series | dict | pd.DataFrame | None) -> Figure:
    """Full-batch gradient descent on the MSE at a few η·λ₁_eff: the loss per step (left, log scale) and λ₁_eff over
    the steps (right), each run's 2/η dotted in its colour.

    ``record`` is one record of the ``trajectory`` experiment (a frame's first row is taken): ``runs``, a list of
    {eta_lambda, lr, loss, lambda_steps, lambda_1, diverged_at, regime}. Inside the catapult window the loss
    spikes, then falls as λ₁ drops below 2/η (Lewkowycz et al. 2020); below it both move smoothly.
    """
    if isinstance(record, pd.DataFrame):
        record = record.iloc[0] if len(record) else None
    runs = record.get("runs") if record is not None else None
    if not isinstance(runs, (list, tuple)) or not runs:
        return not_computed("The catapult trajectory: no stored record yet.")
    fig, (loss_ax, sharp_ax) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH_IN, PANEL_HEIGHT + 0.4), layout="constrained")
    handles = []
    for run, color in zip(runs, RUN_COLORS):
        name = f"η·λ₁ = {run['eta_lambda']:g} ({run.get('regime') or '–'})"
        loss = np.asarray(run["loss"], dtype=float)
        loss_ax.plot(np.arange(len(loss)), loss, color=color, linewidth=1.5)
        sharp_ax.plot(run["lambda_steps"], run["lambda_1"], color=color, marker="o", markersize=3.5, linewidth=1.4)
        sharp_ax.axhline(2 / run["lr"], color=color, linestyle=":", linewidth=1.3)
        if run.get("diverged_at") is not None:
            loss_ax.axvline(run["diverged_at"], color=color, linestyle="--", linewidth=1)
            name += f", diverged at step {run['diverged_at']}"
        handles.append(Line2D([], [], color=color, linewidth=1.5, label=name))
    loss_ax.set(yscale="log", xlabel="gradient-descent step", ylabel="training loss (MSE)", title="loss")
    tidy_log_axes(loss_ax)
    sharp_ax.set(xlabel="gradient-descent step", ylabel="λ₁ effective", ylim=(0, None), title="sharpness")
    handles.append(Line2D([], [], color="0.3", linestyle=":", label="2/η of the run in its colour"))
    legend_below(fig, handles, ncols=2)
    return fig
