"""The book's figure functions on small planted frames (no training): each returns a Figure of the column's width,
with the points, lines and censored cells it promises; log axes carry few, plain labels."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from milr_core import plot, plot_search, plot_variants, tables  # noqa: E402
from milr_core.style import COLUMN_WIDTH_IN  # noqa: E402


def sweep_frame(datasets=("gaussians", "mnist"), variants=("base",), depths=(1, 2, 4), widths=(16, 64), seeds=(0, 1)):
    """A tidy eta* frame following eta* = 8 (d w)^-0.5 with a little seed noise, every search converged."""
    rng = np.random.default_rng(0)
    rows = [
        {"grid": f"g_{dataset}", "variant": variant, "dataset": dataset, "depth": depth, "width": width, "seed": seed,
         "threshold": 0.8, "status": "converged", "eta_star": 8 * (depth * width) ** -0.5 * np.exp(rng.normal(0, 0.02)),
         "bracket": [0.001, 10.0], "search.rtol": 0.05, "profile": "smoke"}
        for dataset in datasets for variant in variants for depth in depths for width in widths for seed in seeds
    ]  # fmt: skip
    return pd.DataFrame(rows)


def censor(frame, depth, width, status="no_success"):
    """Every seed of one cell failed: no eta*, the status, and the final bracket [0.001, 0.002]."""
    frame = frame.copy()
    where = (frame["depth"] == depth) & (frame["width"] == width)
    frame.loc[where, "eta_star"] = np.nan
    frame.loc[where, "status"] = status
    frame.loc[where, "bracket"] = pd.Series([[0.001, 0.002]] * int(where.sum()), index=frame.index[where])
    return frame


def points(ax) -> int:
    """Points drawn on ``ax`` by scatter."""
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


def censored(ax, side: str = "below") -> np.ndarray:
    """The y values of the censored cells drawn on ``ax`` (hollow triangles, ``gid`` censored-below / -above)."""
    drawn = [c.get_offsets() for c in ax.collections if c.get_gid() == f"censored-{side}"]
    return np.concatenate([np.asarray(d)[:, 1] for d in drawn]) if drawn else np.empty(0)


def labels(axis) -> list[str]:
    """The tick labels matplotlib would draw on ``axis`` (inside its view)."""
    axis.figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    return [t.get_text() for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs()) if low <= v <= high and t.get_text()]


def column_width(fig: Figure) -> bool:
    return fig.get_figwidth() <= COLUMN_WIDTH_IN + 1e-9


# ----------------------------------------------------------------------------- shared helpers


def test_panels_wrap_into_rows_at_the_column_width():
    fig, axes = plot.panels(3, 2)
    assert len(axes) == 3 and len(fig.axes) == 3 and column_width(fig)
    one, (ax,) = plot.panels(1, 3)
    assert one.get_figwidth() == COLUMN_WIDTH_IN
    assert fig.get_figheight() > one.get_figheight()  # two rows are taller than one


@pytest.mark.parametrize(("low", "high", "expected"), [
    (16, 32768, ["100", "1k", "10k"]),
    (0.001, 10.0, ["0.001", "0.01", "0.1", "1", "10"]),
    (0.3, 2.5, ["0.5", "1", "2"]),
    (1.1, 1.9, ["1.5"]),
    (0.1, 1e10, ["0.1", "100", "10⁵", "10⁸"]),
])  # fmt: skip
def test_log_ticks_are_few_and_plain(low, high, expected):
    fig, ax = plt.subplots()
    ax.set(xscale="log", xlim=(low, high))
    plot.log_ticks(ax.xaxis)
    shown = labels(ax.xaxis)
    assert len(shown) <= 5 and all("$" not in s for s in shown)
    assert shown == expected or (len(expected) == 1 and expected[0] in shown)


def test_a_legend_fills_the_empty_grid_slot_instead_of_growing_the_figure():
    fig, axes = plot.panels(3, 2)
    height = fig.get_figheight()
    plot.depth_legend(fig, plot.depth_colors([1, 2]))
    assert fig.get_figheight() == height and not fig.legends
    assert len(fig.axes) == 4 and fig.axes[-1].get_legend() is not None and not fig.axes[-1].axison


def test_depth_colors_and_legend_below_grow_the_figure():
    colors = plot.depth_colors([4, 1, 2, 2])
    assert list(colors) == [1, 2, 4] and len(set(colors.values())) == 3
    fig, _ = plot.panels(2, 2)
    height = fig.get_figheight()
    plot.depth_legend(fig, colors, [plt.Line2D([], [], label="extra")])
    assert fig.get_figheight() > height and [t.get_text() for t in fig.legends[0].get_texts()][-1] == "extra"


# ----------------------------------------------------------------------------- chapter 1


def ledger_frame():
    curve = lambda top: [[10, 0.5], [20, top]]  # noqa: E731
    return pd.DataFrame([
        {"round": 1, "lr": 0.1, "outcome": "success", "steps": 20, "accuracy": curve(0.85), "loss": curve(0.3)},
        {"round": 2, "lr": 1.0, "outcome": "diverged", "steps": 5, "accuracy": [[5, 0.5]], "loss": [[5, float("inf")]]},
        {"round": 3, "lr": 0.3, "outcome": "budget", "steps": 20, "accuracy": curve(0.6), "loss": curve(0.7)},
        {"round": None, "lr": 0.5, "outcome": "success", "steps": 20, "accuracy": curve(0.9), "loss": curve(0.2),
         "above": True},
    ])  # fmt: skip


def test_bisection_ladder_shows_every_probe_and_the_probes_above():
    fig = plot_search.plot_bisection_ladder(ledger_frame(), eta_star=0.1, bracket=(0.1, 0.3), title="seed 0")
    (ax,) = fig.axes
    assert isinstance(fig, Figure) and column_width(fig)
    assert points(ax) == 4 and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "above η*"


def test_accuracy_curves_one_line_per_probe_with_a_finite_point():
    fig = plot_search.plot_accuracy_curves(ledger_frame(), threshold=0.8)
    accuracy, loss = fig.axes[:2]
    assert len(accuracy.get_lines()) == 4 + 1  # four probes and the threshold
    assert len(loss.get_lines()) == 3  # the diverged probe's only loss is infinite: nothing to draw
    assert column_width(fig)


# ----------------------------------------------------------------------------- chapters 2-4


def test_power_law_draws_censored_cells_and_both_fits():
    frame = censor(sweep_frame(depths=(1, 2, 4, 8), widths=(16, 64, 256)), 8, 16)
    fits = tables.fits_table(frame)
    fig = plot.plot_power_law(frame, fits)
    assert column_width(fig) and len(fig.axes) == 2
    gaussians = fig.axes[0]
    assert censored(gaussians) == pytest.approx([0.001])  # the censored cell, at its bound
    assert len(gaussians.get_lines()) == 2  # the fit over all cells and the fit in the regime
    assert gaussians.get_title() == "Gaussians (t = 0.8)"
    assert all("$" not in s for s in labels(gaussians.xaxis))


def test_power_law_draws_a_cell_where_no_learning_rate_reached_t_as_a_cross_outside_the_fit():
    frame = censor(sweep_frame(depths=(1, 2, 4, 8), widths=(16, 64, 256)), 8, 16)
    frame["fallback"] = (frame["depth"] == 8) & (frame["width"] == 16)  # the fallback found no LR that reaches t
    fits = tables.fits_table(frame)
    fig = plot.plot_power_law(frame, fits)
    gaussians = fig.axes[0]
    assert censored(gaussians, "unreached") == pytest.approx([0.001]) and len(censored(gaussians)) == 0
    assert (fits["censored cells"] == 0).all() and "no LR reached t" in " ".join(
        t.get_text() for legend in fig.legends for t in legend.get_texts())


def test_power_law_without_fits_or_any_converged_search_still_renders():
    frame = sweep_frame(datasets=("mnist",))
    for depth in (1, 2, 4):
        for width in (16, 64):
            frame = censor(frame, depth, width)
    fig = plot.plot_power_law(frame)
    (ax,) = fig.axes
    assert len(censored(ax)) == 6 and any("no search converged" in t.get_text() for t in ax.texts)


def test_residuals_mark_the_cutoff_and_the_censored_cells():
    frame = censor(sweep_frame(depths=(1, 4, 8), widths=(16, 128, 256)), 8, 16)
    resid = tables.residuals_table(frame)
    fig = plot.plot_residuals(resid)
    assert len(fig.axes) == 2 and len(censored(fig.axes[0])) == 1
    assert len(fig.axes[0].get_lines()) == 2  # the zero line and the cutoff
    empty = plot.plot_residuals(resid.iloc[0:0])
    assert isinstance(empty, Figure)


def test_alpha_vs_cutoff_rings_our_rule():
    table = tables.alpha_vs_cutoff(sweep_frame(depths=(1, 2, 4, 8), widths=(16, 64, 256)))
    fig = plot.plot_alpha_vs_cutoff(table)
    assert len(fig.axes) == 4 and column_width(fig)
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()][:2] == ["none", "1/4"]


def test_width_slopes_one_series_per_group_with_the_fit_reference():
    frame = sweep_frame(depths=(1, 2, 4, 8), widths=(16, 64, 256))
    fig = plot.plot_width_slopes(tables.width_slope_by_depth(frame), tables.fits_table(frame))
    (ax,) = fig.axes
    assert len(ax.containers) == 2  # one errorbar series per dataset
    assert len([line for line in ax.get_lines() if line.get_linestyle() == "--"]) == 2


def test_eta_vs_width_one_line_per_depth_and_the_slope_in_the_title():
    frame = sweep_frame(variants=("standard", "mup"))
    slopes = tables.width_exponents_table(frame)
    fig = plot.plot_eta_vs_width(frame, slopes=slopes)
    assert len(fig.axes) == 4 and all(len(ax.get_lines()) == 3 for ax in fig.axes)
    assert "slope" in fig.axes[0].get_title()
    assert isinstance(plot.plot_eta_vs_width(frame), Figure)  # without slopes


# ----------------------------------------------------------------------------- chapters 4-5


def test_ratio_vs_dw_and_variants():
    frame = sweep_frame(datasets=("gaussians",), variants=("t=0.80", "t=0.70", "100 steps"), depths=(2, 4))
    frame.loc[frame["variant"] == "t=0.70", "eta_star"] *= 2.0
    frame.loc[(frame["variant"] == "100 steps") & (frame["seed"] == 0), "eta_star"] = np.nan
    ratios = tables.variant_ratios(frame)
    fig = plot_variants.plot_ratio_vs_dw(ratios)
    assert len(fig.axes) == 2  # the two variants that are not the base
    assert any("without a ratio" in t.get_text() for t in fig.axes[1].texts)
    variants = plot_variants.plot_variants(ratios, rtol=0.05)
    (ax,) = variants.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t=0.70", "100 steps"]
    assert points(ax) == 8 + 4 and len(ax.get_lines()) == 1 + 2  # the line at 1 and one median per variant


def test_preprocessing_draws_eta_and_both_sharpnesses():
    eta = sweep_frame(datasets=("mnist",), variants=("global", "per_feature"), depths=(1, 2), widths=(64,))
    eta = censor(eta[eta["variant"] == "per_feature"], 2, 64).pipe(lambda p: pd.concat([eta[eta["variant"] == "global"], p]))
    sharp = eta.drop(columns=["eta_star", "status", "bracket"]).assign(lambda_1=30.0, lambda_1_eff=10.0)
    fig = plot_variants.plot_preprocessing(pd.concat([eta, sharp], ignore_index=True))
    eta_ax, lam_ax = fig.axes
    assert len(censored(eta_ax)) == 1
    assert points(lam_ax) == 2 * 2 * 2  # two variants x two depths, raw and effective
    only_eta = plot_variants.plot_preprocessing(eta)
    assert any("not in the store" in t.get_text() for t in only_eta.axes[1].texts)


# ----------------------------------------------------------------------------- chapter 12


def test_held_out_rings_the_misses():
    table = pd.DataFrame([
        {"dataset": "mnist", "depth": d, "width": w, "measured": m, "predicted": p, "low": lo, "high": hi, "covered": c}
        for d, w, m, p, lo, hi, c in [(1, 16, 1.0, 1.1, 0.8, 1.5, True), (2, 16, 0.5, 0.9, 0.7, 1.2, False),
                                      (4, 64, 0.2, 0.21, np.nan, np.nan, None)]
    ])  # fmt: skip
    fig = plot_variants.plot_held_out(table)
    (ax,) = fig.axes
    assert points(ax) == 3 + 1 and ax.get_title() == "MNIST: 1/2 inside"


def test_empty_frames_render_a_note_instead_of_failing():
    """A chapter on a store that holds none of an experiment's cells still gets a figure that says so."""
    empty = sweep_frame().iloc[0:0]
    power = plot.plot_power_law(empty)
    assert any("no cell in the store yet" in t.get_text() for t in power.axes[0].texts)
    ratios = tables.variant_ratios(sweep_frame(variants=("base",))).iloc[0:0]
    for fig in (plot_variants.plot_ratio_vs_dw(ratios), plot_variants.plot_variants(ratios)):
        assert any("no variant in the store yet" in t.get_text() for t in fig.axes[0].texts)
        assert not fig.axes[0].axison
