"""Curvature operators and eigen-solvers, each checked against the library's dense float64 oracle over one case table."""

import pytest
import torch

from milr_core.curvature import (
    BlockOperator,
    DenseOperator,
    GaussNewtonOperator,
    HessianOperator,
    PreconditionedOperator,
    output_hessian_product,
    to_dense,
    top_hessian_eigenvalue,
)
from milr_core.model import flat_logits_fn, flat_lr_multipliers, forward, init_params, layer_blocks, per_replica_loss
from milr_core.network import NetworkSpec

F64 = torch.float64


def tiny_data(n: int = 20, in_dim: int = 4, n_classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, in_dim, generator=g, dtype=F64), torch.randint(0, n_classes, (n,), generator=g)


def autograd_hessian(spec, params, x, y, loss) -> torch.Tensor:
    """An independent oracle: torch.func.hessian of the mean loss."""
    theta, logits = flat_logits_fn(spec, params)
    return torch.func.hessian(lambda t: per_replica_loss(logits(t, x)[None], y, loss)[0])(theta)


def autograd_ggn(spec, params, x, loss) -> torch.Tensor:
    theta, logits = flat_logits_fn(spec, params)
    jacobian = torch.func.jacrev(lambda t: logits(t, x))(theta)  # (B, C, P)
    z = logits(theta, x)
    eye = torch.eye(z.shape[1], dtype=F64).expand(z.shape[0], -1, -1)
    out_hessian = torch.stack([output_hessian_product(z, eye[:, :, c], loss) for c in range(z.shape[1])], dim=2)
    return torch.einsum("bcp,bcd,bdq->pq", jacobian, out_hessian, jacobian) / x.shape[0]


# The shared case table: models (depth, width, seed, parameterisation, input-layer factor) x losses x chunking.
# Seeds keep pre-activations away from the ReLU kink, so that central differences are smooth.
MODELS = [(1, 3, 0, "standard", 0.1), (2, 5, 5, "standard", 1.0), (3, 6, 4, "mup", 0.1), (2, 4, 2, "ntk", 0.3)]
CASES = [(model, loss, chunk) for model in MODELS for loss in ("cross_entropy", "mse") for chunk in (20, 7)]


def build(model, loss, chunk, kind):
    depth, width, seed, parameterisation, factor = model
    spec = NetworkSpec(depth, width, 4, 3, input_lr_factor=factor, parameterisation=parameterisation)
    params = init_params(spec, [seed], F64)
    x, y = tiny_data()
    operator = {"hessian": HessianOperator, "ggn": GaussNewtonOperator}[kind](spec, params, x, y, loss=loss, chunk_size=chunk)
    return spec, params, x, y, operator


@pytest.mark.parametrize("model, loss, chunk", CASES)
def test_hessian_operator_matches_autograd_and_finite_differences(model, loss, chunk):
    spec, params, x, y, operator = build(model, loss, chunk, "hessian")
    assert operator.graph_kept == (chunk >= 20)
    dense = to_dense(operator)
    assert torch.allclose(dense, autograd_hessian(spec, params, x, y, loss), rtol=0, atol=1e-10)
    assert torch.allclose(dense, dense.T, rtol=0, atol=1e-10)
    v = torch.randn(spec.n_params(), generator=torch.Generator().manual_seed(1), dtype=F64)
    theta, logits = flat_logits_fn(spec, params)
    gradient = torch.func.grad(lambda t: per_replica_loss(logits(t, x)[None], y, loss)[0])
    central = (gradient(theta + 1e-6 * v) - gradient(theta - 1e-6 * v)) / 2e-6
    assert torch.allclose(operator.matvec(v), central, rtol=0, atol=1e-6 * v.norm().item())


@pytest.mark.parametrize("model, loss, chunk", CASES)
def test_gauss_newton_operator_matches_autograd_and_is_psd(model, loss, chunk):
    spec, params, x, y, operator = build(model, loss, chunk, "ggn")
    dense = to_dense(operator)
    assert torch.allclose(dense, autograd_ggn(spec, params, x, loss), rtol=0, atol=1e-10)
    assert torch.linalg.eigvalsh(dense)[0] > -1e-10


@pytest.mark.parametrize("model, loss, chunk", CASES[::3])
def test_effective_sharpness_operator_is_p_half_h_p_half(model, loss, chunk):
    spec, params, x, y, operator = build(model, loss, chunk, "hessian")
    p = flat_lr_multipliers(spec)
    assert p.shape == (spec.n_params(),) and p[0] == spec.layer_scalings()[0].lr_multiplier
    effective = PreconditionedOperator(operator, p)
    hessian = autograd_hessian(spec, params, x, y, loss)
    oracle = p.sqrt()[:, None] * hessian * p.sqrt()[None, :]
    assert torch.allclose(to_dense(effective), oracle, rtol=0, atol=1e-10)
    result = top_hessian_eigenvalue(effective, tol=1e-10)
    assert result.converged and result.eigenvalue == pytest.approx(torch.linalg.eigvalsh(oracle)[-1].item(), rel=1e-8)
    # its spectrum is that of P H, the matrix a preconditioned gradient step multiplies
    ph = torch.linalg.eigvals(p[:, None] * hessian).real.max().item()
    assert result.eigenvalue == pytest.approx(ph, rel=1e-8)


def test_flat_multipliers_follow_the_parameterisation():
    spec = NetworkSpec(2, 5, 4, 3, input_lr_factor=0.1, parameterisation="mup")
    p = flat_lr_multipliers(spec)
    blocks = layer_blocks(spec)
    for block, scaling in zip(blocks, spec.layer_scalings()):
        assert torch.all(p[block] == scaling.lr_multiplier)
    assert torch.all(flat_lr_multipliers(NetworkSpec(2, 5, 4, 3, input_lr_factor=1.0)) == 1)


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_top_eigenvalue_matches_dense(method, kind):
    spec, params, x, y, operator = build(MODELS[1], "cross_entropy", 20, kind)
    values = torch.linalg.eigvalsh(to_dense(operator))
    result = top_hessian_eigenvalue(operator, method, tol=1e-10, max_iter=3000)
    assert result.converged and result.residual <= 1e-10 and result.dtype == "float64"
    assert result.eigenvalue == pytest.approx(values[-1].item(), rel=1e-8)
    assert set(result.to_dict()) == {"eigenvalue", "residual", "n_products", "wall_time_s", "converged", "method", "dtype"}


def test_power_iteration_finds_the_largest_algebraic_eigenvalue_on_a_negative_dominant_spectrum():
    # A 0.3x He network labelled with its own (unconfident) predictions: growing the weights lowers the
    # loss, so the radial direction has strong negative curvature, beating every positive eigenvalue.
    spec = NetworkSpec(3, 4, 4, 3, bias=False)
    params = [0.3 * p for p in init_params(spec, [4], F64)]
    x, _ = tiny_data()
    y = forward(spec, params, x)[0].argmax(dim=-1)
    operator = HessianOperator(spec, params, x, y)
    values = torch.linalg.eigvalsh(to_dense(operator))
    assert -values[0] > 1.5 * values[-1] > 0
    for method in ("lanczos", "power"):
        result = top_hessian_eigenvalue(operator, method, tol=1e-8, max_iter=20000)
        assert result.converged and result.eigenvalue == pytest.approx(values[-1].item(), rel=1e-6), method


def test_solvers_on_dense_matrices_and_honest_residuals():
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=F64))
    spectrum = torch.linspace(-1.0, 3.0, 60, dtype=F64)
    matrix = basis @ torch.diag(spectrum) @ basis.T
    for method in ("lanczos", "power"):
        result = top_hessian_eigenvalue(DenseOperator(matrix), method, tol=1e-9, max_iter=3000, seed=5)
        assert result.converged and abs(result.eigenvalue - 3.0) < 1e-8
        v = result.eigenvector
        assert (matrix @ v - result.eigenvalue * v).norm().item() / 3.0 == pytest.approx(result.residual, rel=1e-6, abs=1e-14)
    exact = top_hessian_eigenvalue(DenseOperator(torch.diag(spectrum[:5])), "lanczos", tol=1e-300)
    assert abs(exact.eigenvalue - spectrum[4].item()) < 1e-12  # the whole space: exact, whatever tol
    short = top_hessian_eigenvalue(DenseOperator(matrix), "power", tol=1e-9, max_iter=3)
    assert not short.converged  # an undersized budget is reported, not silently accepted


def test_float32_continues_in_float64_when_it_cannot_reach_the_tolerance():
    g = torch.Generator().manual_seed(1)
    basis, _ = torch.linalg.qr(torch.randn(400, 400, generator=g, dtype=F64))
    spectrum = torch.cat([torch.linspace(0.0, 1.0, 399, dtype=F64), torch.tensor([1.001], dtype=F64)])
    matrix = (basis @ torch.diag(spectrum) @ basis.T).float()
    result = top_hessian_eigenvalue(DenseOperator(matrix), tol=1e-9, max_iter=400)
    assert result.converged and result.dtype == "float64" and result.residual <= 1e-9
    assert result.eigenvalue == pytest.approx(1.001, rel=1e-6)
    loose = top_hessian_eigenvalue(DenseOperator(matrix), tol=1e-3)
    assert loose.converged and loose.dtype == "float32"


def test_layer_blocks_match_dense_diagonal_blocks():
    spec, params, x, y, operator = build(MODELS[1], "cross_entropy", 20, "hessian")
    dense = to_dense(operator)
    blocks = layer_blocks(spec)
    assert [b.stop - b.start for b in blocks] == [4 * 5 + 5, 5 * 5 + 5, 5 * 3 + 3] and blocks[-1].stop == spec.n_params()
    for block in blocks:
        assert torch.allclose(to_dense(BlockOperator(operator, block)), dense[block, block], rtol=0, atol=1e-12)


def test_non_finite_loss_raises_before_any_product():
    spec = NetworkSpec(1, 3, 4, 3)
    x, y = tiny_data()
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        HessianOperator(spec, init_params(spec, [0], F64), x, y)
