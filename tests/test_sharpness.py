"""Curvature operators and eigen-solvers against dense float64 Hessians of tiny networks."""

from types import SimpleNamespace

import pytest
import torch

from milr_core.model import NetworkSpec, forward, init_params, per_replica_loss
from milr_core.sharpness import (
    BlockOperator,
    GaussNewtonOperator,
    HessianOperator,
    flat_logits_fn,
    layer_blocks,
    output_hessian_product,
    sharpness_at_init,
    top_hessian_eigenvalue,
    training_subset,
)

F64 = torch.float64


class DenseOperator:
    """A dense symmetric matrix as an operator."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix
        self.n_params = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix @ v


def tiny_data(n: int = 20, in_dim: int = 4, n_classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, in_dim, generator=g, dtype=F64), torch.randint(0, n_classes, (n,), generator=g)


def dense_hessian(spec, params, x, y, loss="cross_entropy") -> torch.Tensor:
    theta, logits = flat_logits_fn(spec, params)
    return torch.func.hessian(lambda t: per_replica_loss(logits(t, x)[None], y, loss)[0])(theta)


def dense_ggn(spec, params, x, loss="cross_entropy") -> torch.Tensor:
    theta, logits = flat_logits_fn(spec, params)
    jacobian = torch.func.jacrev(lambda t: logits(t, x))(theta)  # (B, C, P)
    z = logits(theta, x)
    eye = torch.eye(z.shape[1], dtype=F64).expand(z.shape[0], -1, -1)
    out_hessian = torch.stack([output_hessian_product(z, eye[:, :, c], loss) for c in range(z.shape[1])], dim=2)
    return torch.einsum("bcp,bcd,bdq->pq", jacobian, out_hessian, jacobian) / x.shape[0]


# Seeds whose pre-activations all stay >= 0.01 away from the ReLU kink (a layer dead on one example feeds
# exactly 0 to the next), so that central differences are smooth.
@pytest.mark.parametrize("depth,width,seed,loss", [(1, 3, 0, "cross_entropy"), (2, 5, 5, "cross_entropy"),
                                                   (3, 6, 4, "mse")])
def test_hvp_matches_dense_hessian_and_finite_differences(depth, width, seed, loss):
    spec = NetworkSpec(depth, width, 4, 3)
    params = init_params(spec, [seed], F64)
    x, y = tiny_data()
    hessian = dense_hessian(spec, params, x, y, loss)
    v = torch.randn(spec.n_params(), generator=torch.Generator().manual_seed(1), dtype=F64)
    kept = HessianOperator(spec, params, x, y, loss=loss)
    chunked = HessianOperator(spec, params, x, y, loss=loss, chunk_size=7)
    assert kept.graph_kept and not chunked.graph_kept
    assert torch.allclose(kept.matvec(v), hessian @ v, rtol=0, atol=1e-10)
    assert torch.allclose(chunked.matvec(v), hessian @ v, rtol=0, atol=1e-10)
    assert torch.allclose(chunked.matvec(v), kept.matvec(v), rtol=0, atol=1e-12)
    assert kept.n_products == 2 and chunked.n_products == 2

    theta, logits = flat_logits_fn(spec, params)
    gradient = torch.func.grad(lambda t: per_replica_loss(logits(t, x)[None], y, loss)[0])
    eps = 1e-6
    central = (gradient(theta + eps * v) - gradient(theta - eps * v)) / (2 * eps)
    assert torch.allclose(kept.matvec(v), central, rtol=0, atol=1e-7 * v.norm().item())


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggn_matches_dense_and_is_psd(loss):
    spec = NetworkSpec(2, 5, 4, 3)
    params = init_params(spec, [3], F64)
    x, y = tiny_data()
    ggn = dense_ggn(spec, params, x, loss)
    v = torch.randn(spec.n_params(), generator=torch.Generator().manual_seed(2), dtype=F64)
    for chunk_size in (20, 6):
        assert torch.allclose(GaussNewtonOperator(spec, params, x, y, loss=loss, chunk_size=chunk_size).matvec(v),
                              ggn @ v, rtol=0, atol=1e-10)
    assert torch.linalg.eigvalsh(ggn)[0] > -1e-12


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("matrix", ["hessian", "ggn"])
def test_top_eigenvalue_matches_dense(method, matrix):
    spec = NetworkSpec(2, 5, 4, 3)
    params = init_params(spec, [0], F64)
    x, y = tiny_data()
    dense = dense_hessian(spec, params, x, y) if matrix == "hessian" else dense_ggn(spec, params, x)
    values = torch.linalg.eigvalsh(dense)
    assert values[-1] > -values[0]  # largest magnitude is largest algebraic, so power applies
    operator = (HessianOperator if matrix == "hessian" else GaussNewtonOperator)(spec, params, x, y)
    result = top_hessian_eigenvalue(operator, method, tol=1e-10, max_iter=2000)
    assert result.converged and result.residual <= 1e-10
    assert abs(result.eigenvalue - values[-1].item()) <= 1e-8 * values[-1].item()
    assert result.n_hvps == operator.n_products
    assert set(result.to_dict()) == {"eigenvalue", "residual", "n_hvps", "wall_time_s", "converged", "method"}


def test_negative_dominant_spectrum_separates_lanczos_from_power():
    # A 0.3x He network labelled with its own (unconfident) predictions: growing the weights lowers the
    # loss, so the radial direction has strong negative curvature, beating every positive eigenvalue.
    spec = NetworkSpec(3, 4, 4, 3, bias=False)
    params = [0.3 * p for p in init_params(spec, [4], F64)]
    x, _ = tiny_data()
    y = forward(spec, params, x)[0].argmax(dim=-1)
    values = torch.linalg.eigvalsh(dense_hessian(spec, params, x, y))
    assert -values[0] > 1.5 * values[-1] > 0
    operator = HessianOperator(spec, params, x, y)
    lanczos = top_hessian_eigenvalue(operator, "lanczos", tol=1e-10)
    power = top_hessian_eigenvalue(operator, "power", tol=1e-10, max_iter=5000)
    assert lanczos.converged and abs(lanczos.eigenvalue - values[-1].item()) <= 1e-8 * values[-1].item()
    assert power.converged and abs(power.eigenvalue - values[0].item()) <= 1e-8 * abs(values[0].item())


def test_solvers_on_dense_matrices():
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=F64))
    spectrum = torch.linspace(-1.0, 3.0, 60, dtype=F64)
    operator = DenseOperator(basis @ torch.diag(spectrum) @ basis.T)
    for method in ("lanczos", "power"):
        result = top_hessian_eigenvalue(operator, method, tol=1e-9, max_iter=3000, seed=5)
        assert result.converged and abs(result.eigenvalue - 3.0) < 1e-8
        assert abs(abs(torch.dot(result.eigenvector, basis[:, -1]).item()) - 1) < 1e-8
    # Lanczos on the full space stops at n steps with an exact answer, even with an unreachable tol.
    exact = top_hessian_eigenvalue(DenseOperator(torch.diag(spectrum[:5])), "lanczos", tol=1e-300)
    assert exact.n_hvps == 6 and abs(exact.eigenvalue - spectrum[4].item()) < 1e-12
    # An undersized budget is reported as not converged rather than silently accepted.
    short = top_hessian_eigenvalue(operator, "power", tol=1e-9, max_iter=3)
    assert not short.converged and short.n_hvps == 3


def test_layer_blocks_match_dense_diagonal_blocks():
    spec = NetworkSpec(2, 5, 4, 3)
    params = init_params(spec, [1], F64)
    x, y = tiny_data()
    hessian = dense_hessian(spec, params, x, y)
    operator = HessianOperator(spec, params, x, y)
    blocks = layer_blocks(spec)
    assert [b.stop - b.start for b in blocks] == [4 * 5 + 5, 5 * 5 + 5, 5 * 3 + 3]
    assert blocks[-1].stop == spec.n_params()
    for block in blocks:
        expected = torch.linalg.eigvalsh(hessian[block, block])[-1].item()
        result = top_hessian_eigenvalue(BlockOperator(operator, block), "lanczos", tol=1e-10)
        assert abs(result.eigenvalue - expected) <= 1e-8 * abs(expected)


def tiny_dataset(n: int = 40) -> SimpleNamespace:
    x, y = tiny_data(n)
    return SimpleNamespace(x_train=x.float(), y_train=y, x_val=x.float(), y_val=y, meta={}, in_dim=4, n_classes=3)


def test_sharpness_at_init_matches_dense_on_its_subset():
    dataset, spec = tiny_dataset(), NetworkSpec(2, 5, 4, 3)
    result = sharpness_at_init(dataset, spec, seed=3, subset_size=25, subset_seed=7, chunk_size=10,
                               dtype=F64, per_layer=True, tol=1e-9)
    x, y = training_subset(dataset.x_train, dataset.y_train, 25, 7)
    hessian = dense_hessian(spec, init_params(spec, [3], F64), x.double(), y)
    assert abs(result.lambda_1 - torch.linalg.eigvalsh(hessian)[-1].item()) < 1e-8
    record = result.to_dict()
    assert record["subset_size"] == 25 and record["depth"] == 2 and record["dtype"] == "float64"
    assert len(record["per_layer"]) == spec.n_layers and all(layer["converged"] for layer in record["per_layer"])
    ggn = sharpness_at_init(dataset, spec, seed=3, subset_size=25, subset_seed=7, matrix="ggn", dtype=F64)
    assert 0 < ggn.lambda_1 and ggn.converged


def test_float32_default_path_converges():
    result = sharpness_at_init(tiny_dataset(), NetworkSpec(2, 16, 4, 3), seed=0, subset_size=40, tol=1e-4)
    assert result.converged and result.residual <= 1e-4 and result.dtype == "float32"


@pytest.mark.parametrize(
    "overrides",
    [
        {"subset_size": 0},
        {"subset_size": 41},
        {"tol": 0.0},
        {"max_iter": 0},
        {"method": "arnoldi"},
        {"matrix": "fisher"},
        {"loss": "hinge"},
        {"chunk_size": 0},
    ],
)
def test_bad_inputs_raise_value_error(overrides):
    with pytest.raises(ValueError):
        sharpness_at_init(tiny_dataset(), NetworkSpec(1, 3, 4, 3), seed=0, **overrides)


def test_non_finite_loss_raises_before_any_product():
    spec = NetworkSpec(1, 3, 4, 3)
    x, y = tiny_data()
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        HessianOperator(spec, init_params(spec, [0], F64), x, y)


def test_mismatched_dataset_raises():
    with pytest.raises(ValueError, match="classes"):
        sharpness_at_init(tiny_dataset(), NetworkSpec(1, 3, 4, 10), seed=0)


def test_bounds_option_records_our_bounds_on_the_same_network_and_subset():
    from milr_core.theory import expected_ggn_upper_bound, ggn_upper_bound, lower_bound, ntk_traces

    dataset, spec = tiny_dataset(), NetworkSpec(2, 5, 4, 3)
    options = dict(seed=3, subset_size=25, subset_seed=7, chunk_size=10, dtype=F64, tol=1e-9)
    plain = sharpness_at_init(dataset, spec, **options)
    assert plain.lower_bound is None and plain.lambda_1_ggn is None and plain.to_dict()["ggn_upper_bound"] is None
    result = sharpness_at_init(dataset, spec, bounds=True, **options)
    assert result.lambda_1 == pytest.approx(plain.lambda_1, rel=1e-12)  # the option changes nothing else
    x, y = training_subset(dataset.x_train, dataset.y_train, 25, 7)
    x = x.double()
    params = init_params(spec, [3], F64)
    ggn, hessian = dense_ggn(spec, params, x), dense_hessian(spec, params, x, y)
    lambda_ggn = torch.linalg.eigvalsh(ggn)[-1].item()
    assert result.lambda_1_ggn == pytest.approx(lambda_ggn, rel=1e-8) and result.ggn_converged
    assert result.ggn_n_products > 0 and result.ggn_residual <= 1e-9
    assert result.lower_bound == pytest.approx(lower_bound(spec, params, x), rel=1e-12)
    assert result.ggn_upper_bound == pytest.approx(ggn_upper_bound(spec, params, x), rel=1e-12)
    assert result.ntk_trace == pytest.approx(ntk_traces(spec, params, x).mean().item(), rel=1e-12)
    assert result.mean_sq_norm == pytest.approx(x.pow(2).sum(1).mean().item(), rel=1e-12)
    assert result.expected_upper_bound == pytest.approx(expected_ggn_upper_bound(2, 5, 4, result.mean_sq_norm, 3))
    assert 0 < result.lower_bound <= result.lambda_1_ggn <= torch.trace(ggn).item() <= result.ggn_upper_bound
    assert result.lower_bound <= torch.linalg.eigvalsh(hessian)[-1].item()
    assert result.ggn_upper_bound <= 0.5 * result.ntk_trace * (1 + 1e-12)


def test_bounds_with_ggn_matrix_reuse_its_lambda_1():
    result = sharpness_at_init(tiny_dataset(), NetworkSpec(1, 8, 4, 3), seed=0, subset_size=30, matrix="ggn",
                               bounds=True, dtype=F64, tol=1e-8)
    assert result.lambda_1_ggn == result.lambda_1 and result.ggn_n_products == result.n_hvps
    assert result.lower_bound <= result.lambda_1 * (1 + 1e-8) <= result.ggn_upper_bound


def test_bounds_need_cross_entropy():
    with pytest.raises(ValueError, match="cross_entropy"):
        sharpness_at_init(tiny_dataset(), NetworkSpec(1, 3, 4, 3), seed=0, loss="mse", bounds=True)


def test_sweep_stores_the_bounds(tmp_path):
    from milr_core.sweep import SCHEMA, run_sweep

    assert SCHEMA["sharpness"]["bounds"] == (bool, False)
    grid = {
        "kind": "sharpness", "datasets": ["gaussians"], "depths": [1, 2], "widths": [8], "seeds": [0],
        "dataset_options": {"gaussians": {"dim": 4, "n_train_per_class": 64, "n_val_per_class": 16}},
        "sharpness": {"subset_size": 64, "tol": 1e-4, "bounds": True},
    }  # fmt: skip
    frame = run_sweep(grid, tmp_path, progress=False)
    assert frame["sharpness.bounds"].all()
    columns = ["lower_bound", "ggn_upper_bound", "expected_upper_bound", "ntk_trace", "mean_sq_norm", "lambda_1_ggn"]
    assert frame[columns].notna().all().all() and (frame[columns] > 0).all().all()
    assert (frame["lower_bound"] <= frame["lambda_1_ggn"] * 1.001).all()
    assert (frame["lambda_1_ggn"] <= frame["ggn_upper_bound"]).all()
