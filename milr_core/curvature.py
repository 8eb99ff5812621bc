"""Curvature as linear operators, and the eigen-solvers that read them.

Everything is matrix-free: an operator maps a flat parameter vector v (weights and biases of every layer
concatenated in ``init_params`` order, ``model.flat_logits_fn``) to A v, and the solvers only ever call
``matvec``, so they work for any symmetric operator. ``DenseOperator`` and ``to_dense`` turn a matrix into
an operator and back: the tests check every operator against a dense float64 oracle.

- ``HessianOperator``: H v, H the Hessian of the mean loss over fixed examples. With one chunk the gradient
  is built once with create_graph and every product is one more backward pass ("graph kept"); otherwise
  each product recomputes every chunk forward-over-reverse (memory bounded by one chunk).
- ``GaussNewtonOperator``: G v = (1/N) sum_i J_i^T H_i J_i v (H_i the loss Hessian w.r.t. example i's
  logits), positive semi-definite: a jvp and a vjp per chunk.
- ``BlockOperator``: a diagonal block (one layer's weights and bias).
- ``PreconditionedOperator``: P^1/2 A P^1/2 for a diagonal P. With P the per-parameter learning-rate
  multipliers, SGD's step theta -= lr P g sees the curvature P^1/2 H P^1/2 (same spectrum as P H), so its
  lambda_1 is the *effective* sharpness that sets the largest stable learning rate of a quadratic.

Solvers. ``top_hessian_eigenvalue`` returns the largest *algebraic* eigenvalue by Lanczos (full
reorthogonalisation) or by power iteration (shifted when the dominant eigenvalue is negative). Both stop on
the *true* relative residual ``||A v - lambda v|| / |lambda|`` of the returned pair, not an estimate; where the
operator's float32 arithmetic cannot reach ``tol``, the solve continues in float64 from the float32 Ritz
vector (``EigenResult.dtype`` says which precision answered).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from milr_core.config import EIGEN_METHODS, LOSSES
from milr_core.model import flat_logits_fn, per_replica_loss
from milr_core.network import NetworkSpec

DEFAULT_MAX_ITER = {"lanczos": 120, "power": 2000}


class LinearOperator(Protocol):
    """A symmetric linear map on vectors of length n_params, that can make a copy of itself in another dtype."""

    n_params: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...

    def to(self, dtype: torch.dtype) -> LinearOperator: ...


# ----------------------------------------------------------------------------------------------------------
# operators


class DenseOperator:
    """A dense symmetric matrix as an operator (the oracle of the tests, and tiny problems)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix
        self.n_params = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.n_products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += 1
        return self.matrix @ v

    def to(self, dtype: torch.dtype) -> DenseOperator:
        return DenseOperator(self.matrix.to(dtype))


def to_dense(operator: LinearOperator) -> torch.Tensor:
    """The operator's matrix, one product per basis vector (small operators only)."""
    eye = torch.eye(operator.n_params, dtype=operator.dtype, device=operator.device)
    return torch.stack([operator.matvec(e) for e in eye], dim=1)


class CurvatureOperator:
    """Shared by the Hessian and Gauss-Newton operators: the flat parameters, the chunked data, a product count.

    The mean loss is checked once at construction; a non-finite loss raises before any product.
    """

    def __init__(
        self,
        network: NetworkSpec,
        params: Sequence[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        loss: str = "cross_entropy",
        chunk_size: int = 2048,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if x.shape[0] < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"need as many labels as examples, at least one: x {tuple(x.shape)}, y {tuple(y.shape)}")
        self.network, self.params, self.x, self.y = network, params, x, y
        self.theta, self.logits = flat_logits_fn(network, params)
        self.loss = loss
        self.chunk_size = chunk_size
        self.chunks = list(zip(x.split(chunk_size), y.split(chunk_size)))
        self.n_examples = x.shape[0]
        self.n_params = self.theta.numel()
        self.dtype = self.theta.dtype
        self.device = self.theta.device
        self.n_products = 0
        with torch.no_grad():
            self.loss_value = sum(self.chunk_loss(self.theta, xc, yc) for xc, yc in self.chunks).item()
        if not math.isfinite(self.loss_value):
            raise ValueError(f"the loss is not finite ({self.loss_value}); no curvature to compute")

    def chunk_loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This chunk's share of the mean loss over the examples (chunk mean x chunk size / N)."""
        mean = per_replica_loss(self.logits(theta, x)[None], y, self.loss)[0]
        return mean * (x.shape[0] / self.n_examples)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += 1
        return self.product(v)

    def product(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, dtype: torch.dtype) -> CurvatureOperator:
        params = [p.detach().to(dtype) for p in self.params]
        return type(self)(self.network, params, self.x.to(dtype), self.y, loss=self.loss, chunk_size=self.chunk_size)


class HessianOperator(CurvatureOperator):
    """v -> H v, H the Hessian of the mean loss; one chunk keeps the double-backward graph across products."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graph_kept = len(self.chunks) == 1
        if self.graph_kept:
            self.leaf = self.theta.clone().requires_grad_()
            loss = self.chunk_loss(self.leaf, *self.chunks[0])
            self.gradient = torch.autograd.grad(loss, self.leaf, create_graph=True)[0]

    def product(self, v: torch.Tensor) -> torch.Tensor:
        if self.graph_kept:
            return torch.autograd.grad(self.gradient, self.leaf, grad_outputs=v, retain_graph=True)[0]
        out = torch.zeros_like(v)
        for xc, yc in self.chunks:
            chunk_gradient = torch.func.grad(lambda theta: self.chunk_loss(theta, xc, yc))
            out += torch.func.jvp(chunk_gradient, (self.theta,), (v,))[1]
        return out


def output_hessian_product(logits: torch.Tensor, u: torch.Tensor, loss: str) -> torch.Tensor:
    """H_i u_i for each example i, H_i the Hessian of the per-example loss w.r.t. its logits (B, C)."""
    if loss == "mse":
        return u
    p = F.softmax(logits, dim=-1)
    pu = p * u
    return pu - p * pu.sum(dim=-1, keepdim=True)


class GaussNewtonOperator(CurvatureOperator):
    """v -> G v = (1/N) sum_i J_i^T H_i J_i v, the positive semi-definite Gauss-Newton part of the Hessian."""

    def product(self, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(v)
        for xc, _ in self.chunks:
            chunk_logits = lambda theta: self.logits(theta, xc)  # noqa: E731
            logits, jv = torch.func.jvp(chunk_logits, (self.theta,), (v,))
            _, vjp = torch.func.vjp(chunk_logits, self.theta)
            out += vjp(output_hessian_product(logits, jv, self.loss) / self.n_examples)[0]
        return out


OPERATORS: dict[str, type[CurvatureOperator]] = {"hessian": HessianOperator, "ggn": GaussNewtonOperator}


class BlockOperator:
    """The diagonal block A[block, block] of a symmetric operator A, acting on the block's own coordinates."""

    def __init__(self, operator: LinearOperator, block: slice) -> None:
        self.operator = operator
        self.block = block
        self.n_params = block.stop - block.start
        self.dtype = operator.dtype
        self.device = operator.device

    def matvec(self, u: torch.Tensor) -> torch.Tensor:
        v = u.new_zeros(self.operator.n_params)
        v[self.block] = u
        return self.operator.matvec(v)[self.block]

    def to(self, dtype: torch.dtype) -> BlockOperator:
        return BlockOperator(self.operator.to(dtype), self.block)


class PreconditionedOperator:
    """v -> P^1/2 A P^1/2 v for a positive diagonal P (``diagonal``): the curvature a preconditioned step sees."""

    def __init__(self, operator: LinearOperator, diagonal: torch.Tensor) -> None:
        if diagonal.shape != (operator.n_params,) or not bool((diagonal > 0).all()):
            raise ValueError(f"the preconditioner must be a positive vector of length {operator.n_params}")
        self.operator = operator
        self.diagonal = diagonal
        self.scale = diagonal.to(device=operator.device, dtype=operator.dtype).sqrt()
        self.n_params = operator.n_params
        self.dtype = operator.dtype
        self.device = operator.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * self.operator.matvec(self.scale * v)

    def to(self, dtype: torch.dtype) -> PreconditionedOperator:
        return PreconditionedOperator(self.operator.to(dtype), self.diagonal)


class ShiftedOperator:
    """v -> A v - shift v (power iteration's route to the largest algebraic eigenvalue)."""

    def __init__(self, operator: LinearOperator, shift: float) -> None:
        self.operator, self.shift = operator, shift
        self.n_params, self.dtype, self.device = operator.n_params, operator.dtype, operator.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.operator.matvec(v) - self.shift * v

    def to(self, dtype: torch.dtype) -> ShiftedOperator:
        return ShiftedOperator(self.operator.to(dtype), self.shift)


# ----------------------------------------------------------------------------------------------------------
# eigen-solvers


@dataclass
class EigenResult:
    """The top eigenpair; ``residual`` is the true ``||A v - lambda v|| / |lambda|`` of the returned unit v."""

    eigenvalue: float
    residual: float
    n_products: int
    wall_time_s: float
    converged: bool
    method: str
    dtype: str
    eigenvector: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "eigenvector"}


def _check_solver_args(method: str, tol: float, max_iter: int | None) -> None:
    if method not in EIGEN_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(EIGEN_METHODS)}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_iter is not None and max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _true_residual(operator: LinearOperator, vector: torch.Tensor, value: float) -> float:
    return (operator.matvec(vector) - value * vector).norm().item() / max(abs(value), 1e-300)


def top_hessian_eigenvalue(
    operator: LinearOperator,
    method: str = "lanczos",
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    seed: int = 0,
    float64_fallback: bool = True,
) -> EigenResult:
    """The largest algebraic eigenvalue of any symmetric operator (Hessian, Gauss-Newton, a block, a matrix).

    max_iter caps the products per precision (default 120 for Lanczos, 2000 for power); the start vector
    is drawn from ``seed``. If the true residual stays above ``tol`` in the operator's float32 arithmetic,
    the solve continues in float64 (``float64_fallback``), starting from the float32 answer.
    """
    _check_solver_args(method, tol, max_iter)
    steps = DEFAULT_MAX_ITER[method] if max_iter is None else max_iter
    start = torch.randn(operator.n_params, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    solve = lanczos if method == "lanczos" else _top_by_power_iteration
    synchronize(operator.device)
    began = time.perf_counter()
    value, residual, products, vector = solve(operator, start.to(operator.device, operator.dtype), tol, steps)
    used = operator
    if residual > tol and float64_fallback and operator.dtype != torch.float64:
        used = operator.to(torch.float64)
        value, residual, more, vector = solve(used, vector.to(torch.float64), tol, steps)
        products += more
    synchronize(operator.device)
    return EigenResult(
        value, residual, products, time.perf_counter() - began, residual <= tol, method,
        str(used.dtype).removeprefix("torch."), vector,
    )  # fmt: skip


def power_iteration(
    operator: LinearOperator, v: torch.Tensor, tol: float, max_iter: int, offset: float = 0.0
) -> tuple[float, float, int, torch.Tensor]:
    """The largest-*magnitude* eigenpair; its Rayleigh quotient and true residual come from the same product.

    ``offset``: the operator is A - offset I, and the residual is judged relative to A's eigenvalue.
    """
    v = v / v.norm()
    for step in range(1, max_iter + 1):
        w = operator.matvec(v)
        value = torch.dot(v, w)
        residual = ((w - value * v).norm() / (value + offset).abs().clamp_min(1e-300)).item()
        if residual <= tol or step == max_iter:
            break
        v = w / w.norm()
    return value.item(), residual, step, v


def _top_by_power_iteration(operator: LinearOperator, v: torch.Tensor, tol: float, max_iter: int) -> tuple[float, float, int, torch.Tensor]:
    """Power iteration for the largest *algebraic* eigenvalue: if the dominant one is negative (lambda_min beats
    lambda_max in magnitude), iterate again on A - lambda_min I, whose dominant eigenvalue is lambda_max - lambda_min."""
    value, residual, products, vector = power_iteration(operator, v, tol, max_iter)
    if value >= 0:
        return value, residual, products, vector
    shifted_value, residual, more, vector = power_iteration(ShiftedOperator(operator, value), v, tol, max_iter, value)
    return shifted_value + value, residual, products + more, vector


def lanczos(operator: LinearOperator, q: torch.Tensor, tol: float, max_iter: int) -> tuple[float, float, int, torch.Tensor]:
    """Lanczos with full reorthogonalisation; vectors stay on the operator's device.

    When the residual estimate ``|beta_m s_m| / |theta|`` of the top Ritz pair drops below tol, one more product
    gives the true residual of the Ritz vector; the solver stops only when that is below tol too (or at
    max_iter, or when the true residual stops improving: the precision's floor). Returns (eigenvalue, true
    residual, products, unit eigenvector).
    """
    n_steps = min(max_iter, operator.n_params)
    basis = q.new_empty(min(n_steps, 32), operator.n_params)  # grown by doubling
    basis[0] = q / q.norm()
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    products, best = 0, (math.inf, 0.0, None)
    next_check = 0
    for m in range(n_steps):
        w = operator.matvec(basis[m])
        products += 1
        alphas.append(torch.dot(basis[m], w))
        w = w - alphas[-1] * basis[m] - (betas[-1] * basis[m - 1] if m else 0)
        for _ in range(2):  # "twice is enough" for a vector orthogonal to the basis to working precision
            w = w - basis[: m + 1].T @ (basis[: m + 1] @ w)
        betas.append(w.norm())
        theta, s = _top_ritz_pair(alphas, betas)
        estimate = abs(betas[-1].item() * s[-1].item()) / max(abs(theta), 1e-300)
        last = m + 1 == n_steps or betas[-1].item() == 0.0
        if (estimate <= tol and m >= next_check) or last:
            vector = basis[: m + 1].T @ s.to(device=q.device, dtype=q.dtype)
            vector = vector / vector.norm()
            residual = _true_residual(operator, vector, theta)
            products += 1
            if residual <= tol or last or residual >= 0.5 * best[0]:  # converged, out of steps, or at the floor
                if residual < best[0]:
                    best = (residual, theta, vector)
                break
            best = (residual, theta, vector)
            next_check = m + 1 + max(2, m // 4)
        if m + 1 == basis.shape[0]:
            basis = torch.cat([basis, torch.empty_like(basis)[: n_steps - basis.shape[0]]])
        basis[m + 1] = w / betas[-1]
    residual, theta, vector = best
    return theta, residual, products, vector


def _top_ritz_pair(alphas: list[torch.Tensor], betas: list[torch.Tensor]) -> tuple[float, torch.Tensor]:
    """Largest eigenvalue and its eigenvector of the Lanczos tridiagonal matrix (tiny, solved on the CPU)."""
    diagonal = torch.stack(alphas).to("cpu", torch.float64)
    off = torch.stack(betas[:-1]).to("cpu", torch.float64) if len(betas) > 1 else diagonal[:0]
    tridiagonal = torch.diag(diagonal) + torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(tridiagonal)
    return values[-1].item(), vectors[:, -1]
