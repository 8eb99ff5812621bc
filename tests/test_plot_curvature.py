"""The curvature chapters' figures on small planted frames: headless (Agg), each a Figure of the column's width,
with what it should draw, and a "not yet computed" panel for what a partial store lacks."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from milr_core import plot_catapult  # noqa: E402
from milr_core import plot_curvature as pc  # noqa: E402
from milr_core.style import COLUMN_WIDTH_IN  # noqa: E402

DEPTHS, WIDTHS, SEEDS = (1, 2, 4), (16, 64), (0, 1)


def networks(datasets=("mnist", "gaussians")) -> pd.DataFrame:
    """One row per network: eta* = 8 (d w)^-0.5 and lambda_1 = 0.5 (d w)^0.8, with a little seed noise, and the
    fields of the sharpness, late-LR and bounds records that the figures read."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset in datasets:
        for depth in DEPTHS:
            for width in WIDTHS:
                for seed in SEEDS:
                    dw, noise = depth * width, np.exp(rng.normal(0, 0.05))
                    lam = 0.5 * dw**0.8 * noise
                    rows.append({
                        "dataset": dataset, "depth": depth, "width": width, "seed": seed, "profile": "smoke",
                        "eta_star": 8 * dw**-0.5 / noise, "lambda_1": lam, "lambda_1_eff": 0.6 * lam,
                        "lambda_1_ggn": 0.9 * lam, "lower_bound": 0.2 * lam, "ggn_upper_bound": 10 * lam,
                        "ntk_trace": 30 * lam, "expected_upper_bound": 14 * lam, "threshold": 0.8,
                        "lambda_1_residual": 1e-6 * noise, "lambda_1_dtype": "float32", "lambda_1_converged": True,
                        "lambda_1_eff_residual": 2e-5, "lambda_1_eff_dtype": "float64", "sharpness.tol": 1e-5,
                    })  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame.assign(eta_lambda=frame["eta_star"] * frame["lambda_1"],
                        eta_lambda_eff=frame["eta_star"] * frame["lambda_1_eff"])  # fmt: skip


def late_networks() -> pd.DataFrame:
    """``sharpness_tables.late_networks``'s columns: two pretraining lengths, the late product near 2."""
    parts = []
    for steps in (200, 600):
        frame = networks(("mnist",)).assign(pretrain_steps=steps, late_max_lr=lambda f: 1.2 * f["eta_star"],
                                            pretrain_accuracy=0.9)  # fmt: skip
        for field in ("lambda_1", "lambda_1_eff"):
            frame[f"init_{field}"] = frame["eta_star"] * frame[field]
            frame[f"late_{field}"] = 2.0 * np.exp(0.1 * np.sin(frame["depth"] * frame["width"]))
        parts.append(frame)
    late = pd.concat(parts, ignore_index=True)
    late.loc[0, "late_lambda_1_eff"] = np.nan  # a late search that did not converge
    late.loc[1, "pretrain_accuracy"] = 0.5  # a pretraining below t
    return late.assign(ratio=late["late_max_lr"] / late["eta_star"])


def trajectory() -> dict:
    steps = np.arange(30)
    return {"lambda_1_eff": 100.0, "runs": [
        {"eta_lambda": 1.0, "lr": 0.01, "loss": list(np.exp(-steps / 20)), "lambda_steps": [0, 10, 20, 30],
         "lambda_1": [100.0, 99.0, 98.0, 98.0], "lambda_loss": [1.0, 0.6, 0.4, 0.2], "diverged_at": None, "regime": "stable"},
        {"eta_lambda": 3.0, "lr": 0.03, "loss": [1.0, 5.0, 20.0, 3.0, 0.5], "lambda_steps": [0, 2, 4],
         "lambda_1": [100.0, 60.0, 40.0], "lambda_loss": [1.0, 20.0, 0.5], "diverged_at": 4, "regime": "catapult"},
    ]}  # fmt: skip


def n_points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


def says_not_computed(fig: Figure) -> bool:
    return any("Not yet computed" in t.get_text() for ax in fig.axes for t in ax.texts)


def column_wide(fig: Figure) -> bool:
    return isinstance(fig, Figure) and fig.get_figwidth() <= COLUMN_WIDTH_IN + 1e-9


def smallest_text(fig: Figure) -> float:
    texts = [t for ax in fig.axes for t in (*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    texts += [t for legend in fig.legends for t in legend.get_texts()]
    return min(t.get_fontsize() for t in texts)


def test_quantities_vs_dw_one_panel_per_dataset_with_fitted_lines():
    frame = networks()
    exponents = pd.DataFrame([{"dataset": d, "quantity": q, "exponent": 0.8, "c": 0.5}
                              for d in ("mnist", "gaussians") for q in ("lambda_1", "lambda_1_eff")])  # fmt: skip
    fig = pc.plot_quantities_vs_dw(frame, ["lambda_1", "lambda_1_eff", "absent"], exponents=exponents, ylabel="λ₁")
    assert column_wide(fig) and len(fig.axes) == 2
    first = fig.axes[0]
    assert n_points(first) == 2 * (12 + 6)  # two quantities: 12 networks and 6 cells each
    assert len(first.get_lines()) == 2 and first.get_xscale() == "log"
    assert smallest_text(fig) >= 9


def test_late_contrast_panels_per_length_and_missing_products_counted():
    fig = pc.plot_late_contrast(late_networks(), band=(1, 4))
    assert column_wide(fig) and [ax.get_title() for ax in fig.axes] == [
        "MNIST · 200 steps pretraining", "MNIST · 600 steps pretraining"]
    assert any("1 products missing" in t.get_text() for t in fig.axes[0].texts)
    raw = pc.plot_late_contrast(late_networks(), sharpness="raw")
    assert not any(t.get_text() for t in raw.axes[0].texts)  # every raw product is there


def test_late_ratio_and_trajectory():
    assert column_wide(pc.plot_late_ratio(late_networks()))
    fig = plot_catapult.plot_trajectory(pd.DataFrame([trajectory()]))
    loss, sharpness = fig.axes
    assert loss.get_yscale() == "log" and len(loss.get_lines()) == 3  # two runs and the divergence mark
    assert len(sharpness.get_lines()) == 4  # two runs and their 2/eta
    assert sharpness.get_lines()[1].get_ydata()[0] == pytest.approx(200.0)


def test_eta_vs_sharpness_a_row_per_dataset_and_a_column_per_sharpness():
    fig = pc.plot_eta_vs_sharpness(networks())
    assert column_wide(fig) and len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes][:2] == ["MNIST · raw", "MNIST · effective"]
    assert all(n_points(ax) == 12 for ax in fig.axes)
    only_raw = pc.plot_eta_vs_sharpness(networks().drop(columns="lambda_1_eff"))
    assert len(only_raw.axes) == 2


def test_products_with_both_sharpnesses_and_with_the_catapult_window():
    both = pc.plot_products(networks())
    assert column_wide(both) and len(both.axes) == 2 and n_points(both.axes[0]) == 24
    window = pc.plot_products(networks(("gaussians",)), sharpness=("effective",), window=(2, 4))
    assert len(window.axes) == 1 and n_points(window.axes[0]) == 12
    assert len(window.axes[0].patches) == 1  # the shaded window


def test_bounds_and_lanczos_residuals():
    from milr_core.sharpness_tables import bounds_check

    fig = pc.plot_bounds(bounds_check(networks()))
    assert column_wide(fig) and len(fig.axes) == 4 and "100%" in fig.axes[1].get_title()
    lanczos = pc.plot_lanczos_residuals(networks().assign(experiment="sharpness"), by=["experiment", "dataset"])
    assert column_wide(lanczos) and len(lanczos.axes) == 2
    assert n_points(lanczos.axes[0]) == 24  # lambda_1 and lambda_1_eff of 12 networks
    assert any("24 eigenvalues, 12 above tolerance" in t.get_text() for t in lanczos.axes[0].texts)


@pytest.mark.parametrize("draw", [
    lambda: pc.plot_quantities_vs_dw(None, ["lambda_1"]),
    lambda: pc.plot_quantities_vs_dw(networks(), ["absent"]),
    lambda: pc.plot_late_contrast(pd.DataFrame()),
    lambda: pc.plot_late_contrast(networks()),  # an eta* frame, not a late-LR one
    lambda: pc.plot_late_ratio(None),
    lambda: pc.plot_eta_vs_sharpness(None),
    lambda: pc.plot_products(networks().drop(columns=["eta_lambda", "eta_lambda_eff"])),
    lambda: pc.plot_bounds(networks().drop(columns="lower_bound")),
    lambda: pc.plot_lanczos_residuals(pd.DataFrame()),
    lambda: plot_catapult.plot_trajectory(pd.DataFrame()),
    lambda: plot_catapult.plot_trajectory({"runs": []}),
])  # fmt: skip
def test_what_is_not_stored_yet_gets_a_panel_that_says_so(draw):
    fig = draw()
    assert column_wide(fig) and says_not_computed(fig)
