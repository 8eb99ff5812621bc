r"""Bounds on the sharpness lambda_1 at initialisation. OUR derivation, not the paper's.

Setting: standard parameterisation, d hidden ReLU layers of width w, input dimension n_0, C classes, He
init W_l ~ N(0, 2 / fan_in) on every layer (output included), zero biases, cross-entropy, mean over N
examples. Write f_i = f(x_i) in R^C, J_i = df_i / dtheta (C x P), H_i = diag(p_i) - p_i p_i^T the Hessian
of the loss w.r.t. the logits. The loss Hessian splits as

    H = G + R,   G = (1/N) sum_i J_i^T H_i J_i  (Gauss-Newton, PSD),   R = (1/N) sum_{i,c} (p_i - y_i)_c d^2 f_{i,c}.

R's role. f is piecewise linear in each layer's (W_l, b_l) when the other layers are fixed, so d^2 f has
zero diagonal blocks almost everywhere: every layer's diagonal block of H equals that of G, tr H = tr G,
and R only moves spectrum between blocks (it is traceless, indefinite; lambda_1(H) <= lambda_1(G) +
lambda_1(R), and the negative eigenvalues of H come from R).

Upper bound (G only). For a unit u, u^T H_i u = Var_{c ~ p_i}(u_c) <= min(max_c p_ic, 1/2): the variance
is at most E_p[u_c^2] <= max_c p_ic, and by Popoviciu at most (max u - min u)^2 / 4 <= 1/2. Hence

    lambda_1(G) <= tr G <= (1/N) sum_i lambda_max(H_i) ||J_i||_F^2 <= (1/2) (1/N) sum_i ||J_i||_F^2.

NTK trace at He init (exact expectation). With h_0 = x, z_l = h_{l-1} W_l + b_l, h_l = relu(z_l),
delta_l^c = df_c / dz_l and k_l the number of active units of layer l,

    ||J||_F^2 = sum_c sum_{l=1}^{d+1} (||h_{l-1}||^2 + [bias]) ||delta_l^c||^2.

Forward: given h_{l-1}, the z_{l,j} are iid N(0, 2 ||h_{l-1}||^2 / n_{l-1}), so E||h_1||^2 = (w / n_0)||x||^2
and E[||h_l||^2 | h_{l-1}] = ||h_{l-1}||^2 for l >= 2 (and for the logits E[f_c^2 | h_l] = (2/w)||h_l||^2).
Backward: condition on the first l layers (F_l) and split W_{l+1} = u u^T W + (I - u u^T) W with
u = h_l / ||h_l||. The second part is independent of z_{l+1} = ||h_l|| u^T W and of all later layers, and
D_l u = u for the activation mask D_l. Positive homogeneity (zero biases) gives u^T W delta_{l+1}^c =
f_c / ||h_l||, so

    E[||delta_l^c||^2 | F_l] = E[f_c^2 | F_l] / ||h_l||^2 + (2/w)(k_l - 1) E[||delta_{l+1}^c||^2 | F_l] = 2 k_l / w

by induction from delta_{d+1}^c = e_c (the induction uses E[2 k_{l+1} / w | F_l] = 1 when h_l != 0).
Then E[||h_{l-1}||^2 ||delta_l^c||^2] = (2/w) E[||h_{l-1}||^2 k_l] = E||h_{l-1}||^2, and the bias terms
give E[2 k_l / w] = P(h_{l-1} != 0) = (1 - 2^-w)^(l-1). Summing over layers and classes, for x != 0:

    E||J(x)||_F^2 = C [ ||x||^2 (1 + d w / n_0) + [bias] (1 + sum_{j=0}^{d-1} (1 - 2^-w)^j) ],

exactly, at every width; so E of the upper bound is (C/2)[m_2 (1 + d w / n_0) + ...], m_2 = mean ||x_i||^2.
It grows like d * w, and is loose by the ratio tr G / lambda_1(G).

Lower bound (G and H alike). By Cauchy interlacing lambda_1 is at least the top eigenvalue of any diagonal
block, which is the same for G and H; the output-weight block is (1/N) sum_i h_i h_i^T (x) H_i (h_i the
last hidden features). Its Rayleigh quotient along a b^T with a = mean_i h_i, maximised over b, is

    lambda_1(H), lambda_1(G) >= lambda_max( (1/N) sum_i (h_i . a)^2 H_i ) / ||a||^2,

cheap (one forward-mode product) and, unlike the upper bound, of order w rather than d w.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from milr_core.network import NetworkSpec
from milr_core.model import flat_logits_fn, layer_blocks


def ntk_trace_expectation(
    depth: int, width: int, in_dim: int, mean_sq_norm: float, n_classes: int, bias: bool = True
) -> float:
    """E (1/N) sum_i ||J_i||_F^2 at He init, exact (see the module docstring); mean_sq_norm = mean ||x_i||^2."""
    bias_terms = 1.0 + sum((1.0 - 2.0**-width) ** j for j in range(depth)) if bias else 0.0
    return n_classes * (mean_sq_norm * (1.0 + depth * width / in_dim) + bias_terms)


def expected_ggn_upper_bound(
    depth: int, width: int, in_dim: int, mean_sq_norm: float, n_classes: int, bias: bool = True
) -> float:
    """E of the bound lambda_1(G) <= (1/2)(1/N) sum_i ||J_i||_F^2 at He init."""
    return 0.5 * ntk_trace_expectation(depth, width, in_dim, mean_sq_norm, n_classes, bias)


def ntk_traces(
    network: NetworkSpec, params: Sequence[torch.Tensor], x: torch.Tensor, chunk_size: int = 2048
) -> torch.Tensor:
    """||J_i||_F^2 of each example, shape (N,), exact, from the layer-wise factorisation of the Jacobian.

    The gradient of logit c w.r.t. layer l's weights is the outer product m_l h_{l-1} (delta_l^c)^T
    (m_l the layer's forward multiplier), and w.r.t. its bias delta_l^c, so

        ||J_i||_F^2 = sum_c sum_l (m_l^2 ||h_{l-1}||^2 + [bias]) ||delta_l^c||^2,

    with delta_l^c = df_c / dz_l from one backward pass per class over a whole chunk (examples do not
    interact). Cost: one forward and C backward passes per chunk of chunk_size examples, never a
    per-example Jacobian (which at d = 16, w = 2048 would hold 10 x 67M numbers per example).
    """
    if any(p.shape[0] != 1 for p in params):
        raise ValueError("ntk_traces is computed for one network: params must have replica axis K = 1")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    step = 2 if network.bias else 1
    scalings = network.layer_scalings()
    traces = []
    for chunk in x.split(chunk_size):
        with torch.enable_grad():
            h, inputs, pre = chunk, [], []
            for layer, scaling in enumerate(scalings):
                inputs.append(h.detach())
                z = (h @ params[step * layer][0].detach()) * scaling.multiplier
                if network.bias:
                    z = z + params[step * layer + 1][0].detach()
                if layer == 0:
                    z.requires_grad_()  # a leaf: the graph starts here, weights are constants
                pre.append(z)
                h = F.relu(z) if layer < network.n_layers - 1 else z
            factors = [
                scaling.multiplier**2 * a.pow(2).sum(1) + (1.0 if network.bias else 0.0)
                for a, scaling in zip(inputs, scalings)
            ]
            total = chunk.new_zeros(chunk.shape[0])
            for c in range(network.out_dim):
                deltas = torch.autograd.grad(h[:, c].sum(), pre, retain_graph=c + 1 < network.out_dim)
                total += sum(f * d.pow(2).sum(1) for f, d in zip(factors, deltas))
        traces.append(total)
    return torch.cat(traces)


def output_hessians(logits: torch.Tensor) -> torch.Tensor:
    """H_i = diag(p_i) - p_i p_i^T, each example's cross-entropy Hessian w.r.t. its logits, shape (N, C, C)."""
    p = F.softmax(logits, dim=-1)
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def ggn_upper_bound(network: NetworkSpec, params: Sequence[torch.Tensor], x: torch.Tensor) -> float:
    """(1/N) sum_i lambda_max(H_i) ||J_i||_F^2 >= tr G >= lambda_1(G), computed exactly on x."""
    theta, logits = flat_logits_fn(network, params)
    with torch.no_grad():
        curvature = torch.linalg.eigvalsh(output_hessians(logits(theta, x)))[:, -1]
    return (curvature * ntk_traces(network, params, x)).mean().item()


def lower_bound(network: NetworkSpec, params: Sequence[torch.Tensor], x: torch.Tensor) -> float:
    """Rayleigh quotient of the output-weight block along (mean last-hidden features) x (best class direction).

    A lower bound on lambda_1 of both the Hessian and the Gauss-Newton matrix (see the module docstring).
    """
    theta, logits = flat_logits_fn(network, params)
    output = layer_blocks(network)[-1]
    column = torch.arange(output.start, output.start + network.width * network.out_dim, network.out_dim)  # W_out[:, 0]
    leaf = theta.clone().requires_grad_()
    mean_features = torch.autograd.grad(logits(leaf, x)[:, 0].mean(), leaf)[0][column]  # a = mean_i h_i
    direction = torch.zeros_like(theta)
    direction[column] = mean_features
    z, jv = torch.func.jvp(lambda t: logits(t, x), (theta,), (direction,))
    projections = jv[:, 0]  # h_i . a
    block = (projections[:, None, None] ** 2 * output_hessians(z)).mean(dim=0)
    return (torch.linalg.eigvalsh(block)[-1] / mean_features.pow(2).sum()).item()


def sharpness_bounds(network: NetworkSpec, params: Sequence[torch.Tensor], x: torch.Tensor, chunk_size: int = 2048) -> dict:
    """Our bounds on lambda_1 for one network (K = 1) on the examples x (cross-entropy only).

    Returns lower_bound (output-block Rayleigh quotient, valid for H and G), ggn_upper_bound (the empirical
    (1/N) sum_i lambda_max(H_i) ||J_i||_F^2 >= lambda_1(G)), ntk_trace ((1/N) sum_i ||J_i||_F^2),
    mean_sq_norm (mean ||x_i||^2) and expected_upper_bound (the closed-form expectation at He init of
    (1/2) ntk_trace, evaluated at this subset's mean_sq_norm). Cost: two forward passes and C + 2
    backward passes over x, chunk_size examples at a time for the traces.
    """
    theta, logits = flat_logits_fn(network, params)
    with torch.no_grad():
        curvature = torch.linalg.eigvalsh(output_hessians(logits(theta, x)))[:, -1]
    traces = ntk_traces(network, params, x, chunk_size)
    mean_sq_norm = x.pow(2).sum(1).mean().item()
    expected = expected_ggn_upper_bound(network.depth, network.width, network.in_dim, mean_sq_norm, network.out_dim, network.bias)
    return {
        "lower_bound": lower_bound(network, params, x),
        "ggn_upper_bound": (curvature * traces).mean().item(),
        "expected_upper_bound": expected,
        "ntk_trace": traces.mean().item(),
        "mean_sq_norm": mean_sq_norm,
    }
