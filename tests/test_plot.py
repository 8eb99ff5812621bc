"""The book's figure functions on small synthetic frames: headless (Agg), real counts of axes, lines and points."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from milr_core import plot  # noqa: E402


def sweep_frame(datasets=("gaussians", "mnist"), variants=("base",), depths=(1, 2, 4), widths=(16, 64), seeds=(0, 1)):
    """A tidy eta* frame following an exact power law eta* = 8 (d w)^-0.5, with a little seed noise."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset in datasets:
        for variant in variants:
            for depth in depths:
                for width in widths:
                    for seed in seeds:
                        rows.append({
                            "grid": f"g_{dataset}", "variant": variant, "dataset": dataset, "depth": depth,
                            "width": width, "seed": seed, "threshold": 0.8,
                            "eta_star": 8 * (depth * width) ** -0.5 * np.exp(rng.normal(0, 0.02)),
                            "data.format": "cifar10-jpeg" if dataset == "cifar10" else "generated",
                            "data.lossy": dataset == "cifar10", "profile": "smoke",
                        })  # fmt: skip
    return pd.DataFrame(rows)


def n_points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_fit_each_recovers_the_exponent_and_skips_impossible_groups():
    frame = sweep_frame()
    lone = frame[(frame["dataset"] == "mnist") & (frame["depth"] == 1) & (frame["width"] == 16)]
    fits, skipped = plot.fit_each(pd.concat([frame[frame["dataset"] == "gaussians"], lone]), n_bootstrap=50)
    assert list(fits) == ["gaussians"] and list(skipped) == ["mnist"]
    assert fits["gaussians"].alpha == pytest.approx(0.5, abs=0.05)
    table = plot.fits_table(fits, skipped)
    assert list(table.index) == ["gaussians", "mnist"]
    assert table.loc["mnist", "note"].startswith("no fit")


def test_fits_table_has_no_interval_with_one_seed():
    fits, _ = plot.fit_each(sweep_frame(seeds=(0,)), n_bootstrap=20)
    table = plot.fits_table(fits)
    assert table["alpha CI low"].isna().all() and (table["note"] == "one seed per cell: no interval").all()


def test_plot_power_law_one_panel_per_group_with_points_and_fit():
    frame = sweep_frame()
    frame.loc[0, "eta_star"] = np.nan  # one search that did not converge
    fits, _ = plot.fit_each(frame, n_bootstrap=20)
    fig = plot.plot_power_law(frame, fits)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    first, second = fig.axes
    # seeds (12, one missing) + cell medians (6) per panel
    assert n_points(first) == 11 + 6 and n_points(second) == 12 + 6
    assert len(first.get_lines()) == 1 and "alpha" in first.get_legend().get_texts()[0].get_text()
    assert any("did not converge" in t.get_text() for t in first.texts)
    assert first.get_xscale() == "log" and first.get_yscale() == "log"


def test_plot_power_law_by_two_columns_and_without_a_fit():
    frame = sweep_frame(datasets=("gaussians",), variants=("small_input_lr", "full_input_lr"))
    fits, _ = plot.fit_each(frame, ["dataset", "variant"], n_bootstrap=20)
    del fits[("gaussians", "full_input_lr")]
    fig = plot.plot_power_law(frame, fits, by=["dataset", "variant"], ncols=2)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "gaussians · small_input_lr (t = 0.8)"
    assert len(fig.axes[0].get_lines()) == 1 and len(fig.axes[1].get_lines()) == 0
    assert any("no power-law fit" in t.get_text() for t in fig.axes[1].texts)


def test_plot_residuals_one_point_per_cell_and_cutoff_line():
    frame = sweep_frame()
    fits, _ = plot.fit_each(frame, n_bootstrap=20)
    resid = plot.residuals_each(frame, fits)
    assert len(resid) == 12 and set(resid["dataset"]) == {"gaussians", "mnist"}
    assert resid["residual"].abs().max() < 0.1
    fig = plot.plot_residuals(resid, cutoff=1 / 16)
    assert len(fig.axes) == 2
    assert all(n_points(ax) == 6 for ax in fig.axes)
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)  # zero line and cutoff


def test_plot_exponents_one_errorbar_per_fit():
    fits, _ = plot.fit_each(sweep_frame(), n_bootstrap=20)
    fig = plot.plot_exponents(fits)
    (ax,) = fig.axes
    assert len(ax.containers) == 2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gaussians", "mnist"]


def test_variant_ratios_and_plot_variants():
    frame = sweep_frame(datasets=("gaussians",), variants=("t=0.80", "t=0.70", "100 steps"), depths=(2,))
    frame.loc[frame["variant"] == "t=0.70", "eta_star"] *= 2.0
    frame.loc[(frame["variant"] == "100 steps") & (frame["seed"] == 0), "eta_star"] = np.nan
    ratios = plot.variant_ratios(frame)
    assert (ratios["base_variant"] == "t=0.80").all()
    assert ratios.loc[ratios["variant"] == "t=0.80", "ratio"].eq(1.0).all()
    assert ratios.loc[ratios["variant"] == "t=0.70", "ratio"].to_numpy() == pytest.approx(2.0, rel=0.1)
    assert ratios["ratio"].isna().sum() == 2
    fig = plot.plot_variants(ratios)
    (ax,) = fig.axes
    assert n_points(ax) == 4 + 4 + 2
    assert len(ax.get_lines()) == 1 + 3  # the line at 1, one median bar per variant
    with pytest.raises(ValueError, match="no variant"):
        plot.variant_ratios(frame, base="missing")


def test_frame_provenance_flags_lossy_data_and_seeds_per_dataset():
    frame = pd.concat([sweep_frame(datasets=("gaussians",)), sweep_frame(datasets=("cifar10",), seeds=(0,))])
    text = plot.frame_provenance(frame)
    assert "`cifar10` (format `cifar10-jpeg`, **a lossy JPEG mirror" in text
    assert "Profile: `smoke`" in text and "Seeds: 0, 1 (gaussians); 0 (cifar10)." in text


def test_captions_name_partial_grids_and_the_devices():
    frame = sweep_frame(datasets=("mnist",)).assign(grid_cells=12, grid_stored=12)
    frame["provenance.device"], frame["provenance.torch"] = "cpu: x86_64", "2.13.0+cpu"
    assert plot.frame_provenance(frame).endswith("Seeds: 0, 1. Computed on: cpu: x86_64 (torch 2.13.0+cpu).")
    partial = frame[frame["width"] == 16].assign(grid_cells=24, grid_stored=6)
    partial.loc[partial.index[0], "provenance.device"] = "NVIDIA H100 80GB HBM3"
    text = plot.frame_provenance(partial)
    assert "**Partial grids, the missing cells not yet computed:** `g_mnist` 6 of 24 cells (widths 16, depths 1-4)." in text
    assert "Computed on: NVIDIA H100 80GB HBM3 (torch 2.13.0+cpu); cpu: x86_64 (torch 2.13.0+cpu)." in text


def test_show_figure_takes_a_meta_or_a_frame():
    meta = {"name": "cifar10", "source": "mirror", "lossy": True, "mirror": "cifar10-jpeg"}
    caption = plot.show_figure(plt.figure(), "Text.", meta, "smoke", [1, 0])
    assert caption.data == "**Figure.** Text. Data: `cifar10` (mirror, lossy mirror cifar10-jpeg). Profile: `smoke`. Seeds: 0, 1."
    caption = plot.show_figure(plt.figure(), "Text.", sweep_frame(datasets=("gaussians",)))
    assert caption.data.startswith("**Figure.** Text. Data: `gaussians` (format `generated`)")
    with pytest.raises(ValueError):
        plot.show_figure(plt.figure(), "Text.", meta)


# ----------------------------------------------------------------------------- chapters 6-8


def late_sharp_frame(depths=(1, 2, 4), widths=(16, 64), seeds=(0, 1)):
    """Synthetic late-LR, sharpness and bounds columns with known exponents: eta* ~ (dw)^-0.5,
    late ~ (dw)^-0.2, lambda_1 ~ (dw)^+0.8; the bounds bracket lambda_1(G) by factors 0.5 and 4."""
    rng = np.random.default_rng(1)
    rows = []
    for dataset in ("gaussians", "cifar10"):
        for depth in depths:
            for width in widths:
                for seed in seeds:
                    dw, noise = depth * width, np.exp(rng.normal(0, 0.02))
                    eta, lam = 8 * dw**-0.5 * noise, 0.1 * dw**0.8 * noise
                    rows.append({
                        "dataset": dataset, "depth": depth, "width": width, "seed": seed, "threshold": 0.8,
                        "eta_star": eta, "late_max_lr": 4 * dw**-0.2 * noise, "ratio": 0.5 * dw**0.3,
                        "pretrain_accuracy": 0.75 if (depth, width, seed) == (1, 16, 0) else 0.85,
                        "lambda_1": lam, "lambda_1_ggn": 0.9 * lam, "lower_bound": 0.45 * lam,
                        "ggn_upper_bound": 3.6 * lam, "ntk_trace": 9.0 * lam, "expected_upper_bound": 4.4 * lam,
                        "converged": True, "residual": 1e-6, "n_hvps": 10, "ggn_converged": True,
                        "ggn_residual": 2e-6, "sharpness.tol": 1e-5, "data.format": "generated",
                        "data.lossy": dataset == "cifar10", "profile": "smoke",
                    })  # fmt: skip
    return pd.DataFrame(rows)


def test_exponents_table_signed_exponents_and_skipped_groups():
    frame = late_sharp_frame()
    table = plot.exponents_table(frame, ["eta_star", "late_max_lr", "lambda_1"])
    assert table.loc[("gaussians", "eta_star"), "exponent"] == pytest.approx(-0.5, abs=0.02)
    assert table.loc[("gaussians", "late_max_lr"), "exponent"] == pytest.approx(-0.2, abs=0.02)
    assert table.loc[("cifar10", "lambda_1"), "exponent"] == pytest.approx(0.8, abs=0.02)
    low, high = table.loc[("gaussians", "eta_star"), ["CI low", "CI high"]]
    assert low < -0.5 < high or low <= table.loc[("gaussians", "eta_star"), "exponent"] <= high
    one_cell = plot.exponents_table(late_sharp_frame(depths=(2,), widths=(16,)), ["eta_star"])
    assert one_cell["note"].str.startswith("no fit").all()
    one_seed = plot.exponents_table(late_sharp_frame(seeds=(0,)), ["eta_star"])
    assert one_seed["note"].str.contains("no bootstrap interval").all()


def test_plot_quantities_vs_dw_panels_points_and_fit_lines():
    frame = late_sharp_frame()
    frame.loc[0, "late_max_lr"] = np.nan
    fig = plot.plot_quantities_vs_dw(frame, ["eta_star", "late_max_lr"], ylabel="learning rate")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax = fig.axes[0]
    cells = 5  # distinct d w among (1, 2, 4) x (16, 64): 16, 32, 64 (twice), 128, 256
    assert n_points(ax) == 12 + 11 + cells + cells  # seeds of each quantity (one late value missing), cell medians
    assert len(ax.get_lines()) == 2 and ax.get_xscale() == ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("-0.50" in label for label in labels) and any("-0.20" in label for label in labels)
    assert any("not drawn" in t.get_text() for t in ax.texts)
    single = plot.plot_quantities_vs_dw(late_sharp_frame(depths=(1,), widths=(16,)), ["lambda_1"])
    assert not single.axes[0].get_lines() and "no fit" in single.axes[0].get_legend().get_texts()[0].get_text()


def test_plot_late_ratio_flags_pretraining_below_threshold():
    frame = late_sharp_frame()
    fig = plot.plot_late_ratio(frame)
    assert len(fig.axes) == 4  # two datasets, two panels each
    ratio_ax, acc_ax = fig.axes[0], fig.axes[1]
    crosses = [c for c in acc_ax.collections if isinstance(c, PathCollection) and len(c.get_offsets()) == 1
               and c.get_sizes()[0] == 110]  # fmt: skip
    assert len(crosses) == 1 and crosses[0].get_offsets()[0][1] == pytest.approx(0.75)
    assert "1 of 12 below t" in acc_ax.get_title()
    assert any(line.get_ydata()[0] == 1.0 for line in ratio_ax.get_lines())
    assert any(line.get_ydata()[0] == 0.8 for line in acc_ax.get_lines())
    table = plot.late_ratio_table(frame)
    assert table.loc["gaussians", "pretraining_below_t"] == 1 and table.loc["gaussians", "networks"] == 12


def test_eta_star_against_sharpness_figures_and_summary():
    from milr_core.sharpness import eta_lambda_summary, join_eta_star, lanczos_summary

    frame = late_sharp_frame()
    sharp = frame.drop(columns=["eta_star"])
    eta = frame[["dataset", "depth", "width", "seed", "eta_star"]].copy()
    eta.loc[0, "eta_star"] = None  # a search that did not converge is dropped and counted
    joined = join_eta_star(sharp, eta)
    assert len(joined) == len(frame) - 1 and joined.attrs["dropped"] == 1
    assert np.allclose(joined["two_over_lambda"], 2 / joined["lambda_1"])
    summary = eta_lambda_summary(joined).set_index("dataset")
    assert summary.loc["gaussians", "slope"] == pytest.approx(-0.5 / 0.8, abs=0.05)  # eta* ~ lambda^(-5/8)
    assert summary.loc["gaussians", "spearman"] < -0.8 and summary.loc["gaussians", "max / min"] > 2
    assert lanczos_summary(sharp).set_index("dataset").loc["cifar10", "converged"] == 1.0
    fig = plot.plot_eta_vs_sharpness(joined)
    assert len(fig.axes) == 4
    left, right = fig.axes[0], fig.axes[1]
    assert n_points(left) == 11 and n_points(right) == 11
    x, y = right.get_lines()[0].get_data()
    assert np.allclose(x, y)  # the identity eta* = 2 / lambda_1
    x, y = left.get_lines()[0].get_data()
    assert np.allclose(x * y, 2.0)
    product = plot.plot_eta_lambda_product(joined)
    assert len(product.axes) == 2 and n_points(product.axes[0]) == 11
    assert any(np.allclose(line.get_ydata(), 2.0) for line in product.axes[0].get_lines())


def test_plot_bounds_ratios_to_the_ggn_eigenvalue():
    from milr_core.theory import bounds_check, bounds_summary

    table = bounds_check(late_sharp_frame())
    assert table["sandwich"].all() and table["hessian_below_upper"].all()
    assert np.allclose(table["upper_over_ggn"], 4.0) and np.allclose(table["ggn_over_lower"], 2.0)
    fig = plot.plot_bounds(table)
    assert len(fig.axes) == 4
    right = fig.axes[1]
    ratios = {round(float(y), 6) for c in right.collections for _, y in c.get_offsets()}
    assert ratios >= {0.5, 4.0, round(1 / 0.9, 6)} and "100%" in right.get_title()
    broken = late_sharp_frame()
    broken.loc[0, "ggn_upper_bound"] = 0.5 * broken.loc[0, "lambda_1_ggn"]
    summary = bounds_summary(broken).set_index("dataset")
    assert summary.loc["gaussians", "lower <= lambda_1(G) <= upper"] == pytest.approx(11 / 12)
    with pytest.raises(ValueError, match="bounds: true"):
        bounds_check(broken.drop(columns=["lower_bound"]))


def test_width_exponents_table_and_eta_against_width():
    frame = sweep_frame(datasets=("gaussians",), variants=("standard", "mup"), widths=(16, 32, 64))
    flat = frame["variant"] == "mup"  # muP-like: eta* depends on depth only
    frame.loc[flat, "eta_star"] = 8 / frame.loc[flat, "depth"] * np.exp(0.01 * frame.loc[flat, "seed"])
    table = plot.width_exponents_table(frame)
    assert list(table.index) == ["gaussians · standard", "gaussians · mup"]
    assert table.loc["gaussians · standard", "width slope"] == pytest.approx(-0.5, abs=0.05)
    assert table.loc["gaussians · mup", "width slope"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["gaussians · mup", "CI low"] <= 0 <= table.loc["gaussians · mup", "CI high"]
    fig = plot.plot_eta_vs_width(frame)
    assert len(fig.axes) == 2
    standard, mup = fig.axes
    assert len(standard.get_lines()) == 3 and n_points(standard) == 18  # a line per depth, a point per seed
    assert "-0.50" in standard.get_title() and "0.00" in mup.get_title()
    assert [int(t) for t in standard.get_xticks()] == [16, 32, 64]
    one = plot.width_exponents_table(frame[frame["width"] == 16])
    assert one["note"].str.startswith("no fit").all()


def test_eta_lambda_product_with_the_catapult_window():
    frame = sweep_frame(datasets=("gaussians",), seeds=(0,))
    frame["eta_lambda"] = np.linspace(1.0, 6.0, len(frame))
    fig = plot.plot_eta_lambda_product(frame, window=(2.0, 4.0))
    ax = fig.axes[0]
    levels = {round(float(line.get_ydata()[0]), 6) for line in ax.get_lines()}
    assert {2.0, 4.0} <= levels and n_points(ax) == len(frame)
    assert any(patch.get_y() == pytest.approx(2.0) and patch.get_height() == pytest.approx(2.0) for patch in ax.patches)
    plain = plot.plot_eta_lambda_product(frame).axes[0]
    assert not plain.patches and 4.0 not in {round(float(line.get_ydata()[0]), 6) for line in plain.get_lines()}


def test_plot_catapult_trajectories_two_panels_with_two_over_lr():
    from milr_core.catapult import CatapultTrajectory

    lazy = CatapultTrajectory(0.01, 0, 64, [1.0, 0.8, 0.6, 0.5], [0, 2, 4], [100.0, 99.0, 98.0], [1.0, 0.6, 0.5], None)
    spike = CatapultTrajectory(0.03, 0, 64, [1.0, 5.0, 0.4, 0.3], [0, 2, 4], [100.0, 40.0, 39.0], [1.0, 0.4, 0.3], None)
    fig = plot.plot_catapult_trajectories([lazy, spike])
    loss, sharp = fig.axes
    assert loss.get_yscale() == "log" and [list(line.get_ydata()) for line in loss.get_lines()] == [lazy.loss, spike.loss]
    curves = [line for line in sharp.get_lines() if len(line.get_xdata()) == 3]
    assert [list(line.get_ydata()) for line in curves] == [lazy.lambda_1, spike.lambda_1]
    edges = sorted(round(float(line.get_ydata()[0]), 6) for line in sharp.get_lines() if len(line.get_xdata()) == 2)
    assert edges == pytest.approx([2 / 0.03, 2 / 0.01])
    assert [t.get_text() for t in loss.get_legend().get_texts()] == [r"$\eta\lambda_1$ = 1", r"$\eta\lambda_1$ = 3"]


def test_plot_held_out_bars_rings_and_coverage_in_the_title():
    table = pd.DataFrame({
        "dataset": ["toy"] * 3 + ["other"] * 2, "depth": [1, 2, 4, 1, 2], "width": [16] * 5,
        "measured": [1.0, 2.0, 4.0, 1.0, 1.0], "predicted": [1.1, 1.5, 9.0, 1.0, 1.2],
        "low": [0.5, 1.0, 5.0, np.nan, np.nan], "high": [2.0, 3.0, 20.0, np.nan, np.nan],
        "covered": [True, True, False, None, None],
    })  # fmt: skip
    fig = plot.plot_held_out(table)
    toy, other = fig.axes[:2]
    assert toy.get_title() == "toy: 2/3 inside" and other.get_title() == "other: no intervals"
    bars = [line for line in toy.get_lines() if len(line.get_xdata()) == 2]
    assert len(bars) == 3 and n_points(other) == 2
    rings = [c for c in toy.collections if isinstance(c, PathCollection) and len(c.get_offsets()) == 1
             and np.allclose(c.get_edgecolor()[0][:3], (1, 0, 0))]  # fmt: skip
    assert len(rings) == 1 and np.allclose(rings[0].get_offsets()[0], (4.0, 9.0))
