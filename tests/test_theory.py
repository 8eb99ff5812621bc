"""Our sharpness bounds: the exact NTK-trace expectation against Monte Carlo, and the bounds against dense spectra."""

import pytest
import torch
from test_curvature import autograd_ggn, autograd_hessian

from milr_core.model import flat_logits_fn, forward, init_params, layer_blocks
from milr_core.network import NetworkSpec
from milr_core.theory import (
    expected_ggn_upper_bound,
    ggn_upper_bound,
    lower_bound,
    ntk_trace_expectation,
    ntk_traces,
    output_hessians,
)

F64 = torch.float64


def inputs(n: int = 6, in_dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, in_dim, generator=g, dtype=F64), torch.randint(0, 3, (n,), generator=g)


def replica_ntk_traces(spec: NetworkSpec, n_replicas: int, x: torch.Tensor) -> torch.Tensor:
    """Mean over examples of ||J_i||_F^2 for n_replicas seeds at once, shape (K,): one backward per logit."""
    params = [p.requires_grad_() for p in init_params(spec, range(n_replicas), F64)]
    logits = forward(spec, params, x)
    total = torch.zeros(n_replicas, dtype=F64)
    for i in range(x.shape[0]):
        for c in range(spec.out_dim):
            grads = torch.autograd.grad(logits[:, i, c].sum(), params, retain_graph=True)
            total += sum(g.pow(2).flatten(1).sum(1) for g in grads)
    return total / x.shape[0]


@pytest.mark.parametrize("depth,width,bias", [(1, 4, True), (3, 8, True), (2, 16, False), (4, 16, True)])
def test_ntk_trace_expectation_matches_monte_carlo(depth, width, bias):
    spec = NetworkSpec(depth, width, 5, 3, bias=bias)
    x, _ = inputs(2)
    samples = replica_ntk_traces(spec, 20_000, x)
    standard_error = samples.std().item() / samples.numel() ** 0.5
    expected = ntk_trace_expectation(depth, width, 5, x.pow(2).sum(1).mean().item(), 3, bias)
    assert standard_error < 0.008 * expected  # so that the 3% below is a sharp (> 3.7 sigma) test
    assert abs(samples.mean().item() - expected) < 0.03 * expected


def test_ntk_traces_match_dense_jacobian():
    spec = NetworkSpec(2, 6, 5, 3)
    params = init_params(spec, [1], F64)
    x, _ = inputs()
    theta, logits = flat_logits_fn(spec, params)
    jacobian = torch.func.jacrev(lambda t: logits(t, x))(theta)  # (N, C, P)
    assert torch.allclose(ntk_traces(spec, params, x, chunk_size=4), jacobian.pow(2).sum((1, 2)), atol=1e-10)
    assert torch.allclose(ntk_traces(spec, params, x).mean(), replica_ntk_traces(spec, 2, x)[1], atol=1e-10)


def test_output_hessian_norm_is_at_most_min_of_max_p_and_half():
    logits = 3 * torch.randn(500, 7, generator=torch.Generator().manual_seed(0), dtype=F64)
    top = torch.linalg.eigvalsh(output_hessians(logits))[:, -1]
    bound = torch.softmax(logits, dim=-1).max(dim=-1).values.clamp(max=0.5)
    assert (top <= bound + 1e-12).all()
    # Tight: two equally likely classes give exactly 1/2.
    two = torch.tensor([[0.0, 0.0, -torch.inf]], dtype=F64)
    assert abs(torch.linalg.eigvalsh(output_hessians(two))[0, -1].item() - 0.5) < 1e-12


@pytest.mark.parametrize("depth,width,seed", [(1, 4, 0), (2, 6, 1), (2, 6, 2), (3, 8, 0), (3, 8, 1)])
def test_bounds_sandwich_dense_lambda_1(depth, width, seed):
    spec = NetworkSpec(depth, width, 5, 3)
    params = init_params(spec, [seed], F64)
    x, y = inputs(12)
    ggn, hessian = autograd_ggn(spec, params, x, "cross_entropy"), autograd_hessian(spec, params, x, y, "cross_entropy")
    lambda_ggn = torch.linalg.eigvalsh(ggn)[-1].item()
    lambda_hessian = torch.linalg.eigvalsh(hessian)[-1].item()
    low, high = lower_bound(spec, params, x), ggn_upper_bound(spec, params, x)
    assert 0 < low <= lambda_ggn * (1 + 1e-10) and low <= lambda_hessian * (1 + 1e-10)
    assert lambda_ggn <= torch.trace(ggn).item() <= high * (1 + 1e-10)
    assert high <= 0.5 * ntk_traces(spec, params, x).mean().item() * (1 + 1e-10)


def test_residual_term_only_moves_spectrum_between_layers():
    spec = NetworkSpec(3, 5, 5, 3)
    params = init_params(spec, [0], F64)
    x, y = inputs(12)
    ggn, hessian = autograd_ggn(spec, params, x, "cross_entropy"), autograd_hessian(spec, params, x, y, "cross_entropy")
    residual = hessian - ggn
    assert residual.abs().max() > 1e-3  # the residual is not trivially zero ...
    for block in layer_blocks(spec):  # ... but vanishes on every layer's diagonal block
        assert residual[block, block].abs().max() < 1e-12
    assert abs(torch.trace(residual).item()) < 1e-12


def test_expected_upper_bound_grows_linearly_in_depth_times_width():
    bound = lambda d, w: expected_ggn_upper_bound(d, w, 784, 784.0, 10)  # noqa: E731  (m_2 / n_0 = 1)
    assert bound(1, 64) == pytest.approx(0.5 * 10 * (784 + 64 + 2), rel=1e-12)
    assert bound(8, 1024) - bound(4, 1024) == pytest.approx(0.5 * 10 * (4 * 1024 + 4), rel=1e-12)
    assert bound(4, 2048) - bound(4, 1024) == pytest.approx(0.5 * 10 * 4 * 1024, rel=1e-12)
    assert bound(3, 1) == pytest.approx(0.5 * 10 * (784 + 3 + 1 + 1 + 0.5 + 0.25), rel=1e-12)
