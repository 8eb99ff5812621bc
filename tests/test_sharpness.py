"""The sharpness protocol: lambda_1, lambda_1_eff, Gauss-Newton and our bounds of the network the engine trains."""

from types import SimpleNamespace

import pytest
import torch

from milr_core.config import Run, SharpnessConfig
from milr_core.curvature import GaussNewtonOperator, HessianOperator, PreconditionedOperator, to_dense
from milr_core.model import flat_lr_multipliers, init_params
from milr_core.network import NetworkSpec
from milr_core.sharpness import sharpness_at_init, training_subset

F64 = torch.float64


def tiny_dataset(n: int = 40) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g, dtype=F64), torch.randint(0, 3, (n,), generator=g)
    return SimpleNamespace(x_train=x.float(), y_train=y, x_val=x.float(), y_val=y, meta={}, in_dim=4, n_classes=3,
                           default_threshold=0.5)


def measured(dataset, spec, seed, config=SharpnessConfig(), dtype="float32"):
    """sharpness_at_init of one seed's network."""
    return sharpness_at_init(Run(dataset, spec, (seed,), dtype=dtype), config)[0]


def dense_on_subset(spec, seed, config, matrix=HessianOperator):
    dataset = tiny_dataset()
    x, y = training_subset(dataset.x_train, dataset.y_train, config.subset_size, config.subset_seed)
    params = init_params(spec, [seed], F64)
    return to_dense(matrix(spec, params, x.double(), y, loss=config.loss)), params, x.double()


def test_sharpness_at_init_measures_the_engines_network_on_its_subset():
    spec = NetworkSpec(2, 5, 4, 3)  # input layer at 0.1x: raw and effective sharpness differ
    config = SharpnessConfig(subset_size=25, subset_seed=7, chunk_size=10, tol=1e-9, per_layer=True)
    record = measured(tiny_dataset(), spec, 3, config, dtype="float64")
    hessian, _, _ = dense_on_subset(spec, 3, config)
    p = flat_lr_multipliers(spec)
    assert record["lambda_1"] == pytest.approx(torch.linalg.eigvalsh(hessian)[-1].item(), rel=1e-8)
    effective = torch.linalg.eigvalsh(p.sqrt()[:, None] * hessian * p.sqrt()[None, :])[-1].item()
    assert record["lambda_1_eff"] == pytest.approx(effective, rel=1e-8) and record["lambda_1_eff"] < record["lambda_1"]
    assert record["lambda_1_converged"] and record["lambda_1_eff_converged"] and record["lambda_1_dtype"] == "float64"
    assert len(record["per_layer"]) == spec.n_layers and all(layer["lambda_1_converged"] for layer in record["per_layer"])
    assert record["depth"] == 2 and record["seed"] == 3 and record["loss_value"] > 0


def test_effective_sharpness_equals_the_raw_one_when_every_layer_trains_at_one_rate():
    spec = NetworkSpec(2, 5, 4, 3, input_lr_factor=1.0)
    record = measured(tiny_dataset(), spec, 1, SharpnessConfig(subset_size=30, tol=1e-10), dtype="float64")
    assert record["lambda_1_eff"] == pytest.approx(record["lambda_1"], rel=1e-8)


def test_float32_default_path_converges_to_its_true_residual():
    record = measured(tiny_dataset(), NetworkSpec(2, 16, 4, 3), 0, SharpnessConfig(subset_size=40, tol=1e-4))
    assert record["lambda_1_converged"] and record["lambda_1_residual"] <= 1e-4 and record["lambda_1_dtype"] == "float32"


def test_bounds_record_our_bounds_and_the_gauss_newton_lambda_on_the_same_network_and_subset():
    from milr_core.theory import expected_ggn_upper_bound, ggn_upper_bound, lower_bound, ntk_traces

    spec = NetworkSpec(2, 5, 4, 3)
    base = SharpnessConfig(subset_size=25, subset_seed=7, chunk_size=10, tol=1e-9)
    plain = measured(tiny_dataset(), spec, 3, base, dtype="float64")
    assert "lower_bound" not in plain and "lambda_1_ggn" not in plain
    config = SharpnessConfig(subset_size=25, subset_seed=7, chunk_size=10, tol=1e-9, bounds=True)
    result = measured(tiny_dataset(), spec, 3, config, dtype="float64")
    assert result["lambda_1"] == pytest.approx(plain["lambda_1"], rel=1e-12)  # the option changes nothing else
    ggn, params, x = dense_on_subset(spec, 3, config, GaussNewtonOperator)
    assert result["lambda_1_ggn"] == pytest.approx(torch.linalg.eigvalsh(ggn)[-1].item(), rel=1e-8)
    assert result["lambda_1_ggn_converged"] and result["lambda_1_ggn_residual"] <= 1e-9
    assert result["lower_bound"] == pytest.approx(lower_bound(spec, params, x), rel=1e-12)
    assert result["ggn_upper_bound"] == pytest.approx(ggn_upper_bound(spec, params, x), rel=1e-12)
    assert result["ntk_trace"] == pytest.approx(ntk_traces(spec, params, x).mean().item(), rel=1e-12)
    assert result["expected_upper_bound"] == pytest.approx(expected_ggn_upper_bound(2, 5, 4, result["mean_sq_norm"], 3))
    assert 0 < result["lower_bound"] <= result["lambda_1_ggn"] <= torch.trace(ggn).item() <= result["ggn_upper_bound"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"subset_size": 0}, "subset_size"),
        ({"tol": 0.0}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"method": "arnoldi"}, "method"),
        ({"matrix": "fisher"}, "matrix"),
        ({"loss": "hinge"}, "loss"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"loss": "mse", "bounds": True}, "cross_entropy"),
    ],
)
def test_bad_settings_raise_one_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        SharpnessConfig(**overrides)


def test_a_subset_larger_than_the_data_and_a_mismatched_network_are_refused():
    with pytest.raises(ValueError, match="subset_size must be in"):
        measured(tiny_dataset(), NetworkSpec(1, 3, 4, 3), 0, SharpnessConfig(subset_size=41))
    with pytest.raises(ValueError, match="classes"):
        measured(tiny_dataset(), NetworkSpec(1, 3, 4, 10), 0)


def test_preconditioner_must_be_positive():
    spec = NetworkSpec(1, 3, 4, 3)
    dataset = tiny_dataset()
    operator = HessianOperator(spec, init_params(spec, [0], F64), dataset.x_train.double(), dataset.y_train)
    with pytest.raises(ValueError, match="positive vector"):
        PreconditionedOperator(operator, torch.zeros(spec.n_params(), dtype=F64))
