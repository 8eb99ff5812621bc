"""Sharpness at initialisation: lambda_1, the top eigenvalue of the training-loss Hessian (or its Gauss-Newton part).

The curvature is that of the *mean* loss over a fixed training subset (chosen by a seeded permutation), for
the K = 1 network that ``init_params`` returns for one seed, i.e. exactly the network the eta* engine trains.
Everything is matrix-free: an operator maps a flat parameter vector v (weights and biases of every layer
concatenated in ``init_params`` order) to H v, and the eigen-solvers only ever call ``matvec``, so they work
for any symmetric operator (tests use dense matrices).

Hessian products come in two modes. When the subset is one chunk the gradient is built once with
create_graph and every product is one more backward pass through that graph ("graph kept across
products", the fast path). Otherwise each product recomputes every chunk with forward-over-reverse
(torch.func.jvp of torch.func.grad), so memory is bounded by one chunk. The Gauss-Newton operator
G v = (1/N) sum_i J_i^T H_i J_i v (H_i the loss Hessian w.r.t. example i's logits) uses a jvp and a vjp per chunk.

Defaults are our choices, not the paper's: a subset of 2048 training examples, processed as one chunk,
Lanczos to a relative residual of 1e-6.
"""

from __future__ import annotations

import math
import time
from itertools import accumulate
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from milr_core.model import LOSSES, NetworkSpec, forward, init_params, per_replica_loss

DEFAULT_SUBSET_SIZE = 2048
DEFAULT_CHUNK_SIZE = 2048
DEFAULT_MAX_ITER = {"lanczos": 100, "power": 1000}
METHODS = tuple(DEFAULT_MAX_ITER)
MATRICES = ("hessian", "ggn")


class LinearOperator(Protocol):
    """A symmetric linear map on vectors of length n_params."""

    n_params: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------------------
# flat parameters and data


def flat_logits_fn(
    spec: NetworkSpec, params: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """One network (K = 1) as a flat parameter vector theta and the map (theta, x) -> logits (B, C)."""
    if any(p.shape[0] != 1 for p in params):
        raise ValueError("curvature is computed for one network: params must have replica axis K = 1")
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def logits(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tensors = [t.view(shape) for t, shape in zip(theta.split(sizes), shapes)]
        return forward(spec, tensors, x)[0]

    return theta, logits


def layer_blocks(spec: NetworkSpec) -> list[slice]:
    """The slice of the flat parameter vector holding each layer's weights and bias, input layer first."""
    sizes = [fi * fo + (fo if spec.bias else 0) for fi, fo in spec.layer_shapes()]
    return [slice(end - size, end) for size, end in zip(sizes, accumulate(sizes))]


def training_subset(
    x: torch.Tensor, y: torch.Tensor, subset_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first subset_size examples of a seeded permutation of the training set."""
    n = x.shape[0]
    if not 1 <= subset_size <= n:
        raise ValueError(f"subset_size must be in [1, {n}] (the training-set size), got {subset_size}")
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:subset_size]
    return x[index], y[index]


# ----------------------------------------------------------------------------------------------------------
# curvature operators


def check_operator_args(loss: str, chunk_size: int) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


class CurvatureOperator:
    """Shared by the Hessian and Gauss-Newton operators: the flat parameters, the chunked data, a product count.

    The mean loss is checked once at construction; a non-finite loss raises before any product.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        params: Sequence[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        loss: str = "cross_entropy",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        check_operator_args(loss, chunk_size)
        if x.shape[0] < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"need as many labels as examples, at least one: x {tuple(x.shape)}, y {tuple(y.shape)}")
        self.theta, self.logits = flat_logits_fn(spec, params)
        self.loss = loss
        self.chunks = list(zip(x.split(chunk_size), y.split(chunk_size)))
        self.n_examples = x.shape[0]
        self.n_params = self.theta.numel()
        self.dtype = self.theta.dtype
        self.device = self.theta.device
        self.n_products = 0
        with torch.no_grad():
            self.loss_value = sum(self.chunk_loss(self.theta, xc, yc) for xc, yc in self.chunks).item()
        if not math.isfinite(self.loss_value):
            raise ValueError(f"the loss at initialisation is not finite ({self.loss_value}); no curvature to compute")

    def chunk_loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This chunk's share of the mean loss over the subset (chunk mean x chunk size / subset size)."""
        mean = per_replica_loss(self.logits(theta, x)[None], y, self.loss)[0]
        return mean * (x.shape[0] / self.n_examples)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += 1
        return self.product(v)

    def product(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


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


# ----------------------------------------------------------------------------------------------------------
# eigen-solvers


@dataclass
class EigenResult:
    """One eigenpair estimate; residual is the relative residual ``||A v - lambda v|| / |lambda|`` of a unit v."""

    eigenvalue: float
    residual: float
    n_hvps: int
    wall_time_s: float
    converged: bool
    method: str
    eigenvector: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "eigenvector"}


def check_solver_args(method: str, tol: float, max_iter: int | None) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_iter is not None and max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def top_hessian_eigenvalue(
    operator: LinearOperator,
    method: str = "lanczos",
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    seed: int = 0,
) -> EigenResult:
    """Top eigenvalue of any symmetric operator (Hessian, Gauss-Newton, a block, a dense matrix).

    "lanczos" returns the largest *algebraic* eigenvalue; "power" converges to the largest-*magnitude*
    one, which differs when the most negative eigenvalue dominates. max_iter caps the products
    (default 100 for Lanczos, 1000 for power); the start vector is drawn from `seed`.
    """
    check_solver_args(method, tol, max_iter)
    steps = DEFAULT_MAX_ITER[method] if max_iter is None else max_iter
    start = torch.randn(operator.n_params, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    start = start.to(device=operator.device, dtype=operator.dtype)
    synchronize(operator.device)
    began = time.perf_counter()
    solve = lanczos if method == "lanczos" else power_iteration
    eigenvalue, residual, n_hvps, vector = solve(operator, start, tol, steps)
    synchronize(operator.device)
    return EigenResult(
        eigenvalue, residual, n_hvps, time.perf_counter() - began, residual <= tol, method, vector
    )


def power_iteration(
    operator: LinearOperator, v: torch.Tensor, tol: float, max_iter: int
) -> tuple[float, float, int, torch.Tensor]:
    """Power iteration; the Rayleigh quotient and its residual come from the same product."""
    v = v / v.norm()
    for step in range(1, max_iter + 1):
        w = operator.matvec(v)
        eigenvalue = torch.dot(v, w)
        residual = ((w - eigenvalue * v).norm() / eigenvalue.abs()).item()
        if residual < tol or step == max_iter:
            break
        v = w / w.norm()
    return eigenvalue.item(), residual, step, v


def lanczos(
    operator: LinearOperator, q: torch.Tensor, tol: float, max_iter: int
) -> tuple[float, float, int, torch.Tensor]:
    """Lanczos with full reorthogonalisation; vectors stay on the operator's device.

    Stops when the residual estimate ``|beta_m s_m| / |theta|`` of the top Ritz pair drops below tol, then
    spends one more product on the true residual of the Ritz vector, which is what is reported.
    """
    n_steps = min(max_iter, operator.n_params)
    # Grown by doubling: a few dozen vectors usually suffice, and max_iter x n_params can exceed the device.
    basis = q.new_empty(min(n_steps, 32), operator.n_params)
    basis[0] = q / q.norm()
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    for m in range(n_steps):
        w = operator.matvec(basis[m])
        alphas.append(torch.dot(basis[m], w))
        w = w - alphas[-1] * basis[m] - (betas[-1] * basis[m - 1] if m else 0)
        for _ in range(2):  # "twice is enough" for a vector orthogonal to the basis to working precision
            w = w - basis[: m + 1].T @ (basis[: m + 1] @ w)
        betas.append(w.norm())
        theta, s = top_ritz_pair(alphas, betas)
        if abs(betas[-1].item() * s[-1].item()) <= tol * abs(theta) or m + 1 == n_steps:
            break
        if m + 1 == basis.shape[0]:
            basis = torch.cat([basis, torch.empty_like(basis)[: n_steps - basis.shape[0]]])
        basis[m + 1] = w / betas[-1]
    vector = basis[: m + 1].T @ s.to(device=q.device, dtype=q.dtype)
    vector = vector / vector.norm()
    residual = (operator.matvec(vector) - theta * vector).norm().item() / abs(theta)
    return theta, residual, m + 2, vector


def top_ritz_pair(alphas: list[torch.Tensor], betas: list[torch.Tensor]) -> tuple[float, torch.Tensor]:
    """Largest eigenvalue and its eigenvector of the Lanczos tridiagonal matrix (tiny, solved on the CPU)."""
    diagonal = torch.stack(alphas).to("cpu", torch.float64)
    off = torch.stack(betas[:-1]).to("cpu", torch.float64) if len(betas) > 1 else diagonal[:0]
    tridiagonal = torch.diag(diagonal) + torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(tridiagonal)
    return values[-1].item(), vectors[:, -1]


# ----------------------------------------------------------------------------------------------------------
# entry point


@dataclass
class SharpnessResult:
    """lambda_1 at initialisation and how it was computed; wall_time_s covers the whole call."""

    lambda_1: float
    residual: float
    n_hvps: int
    wall_time_s: float
    converged: bool
    method: str
    matrix: str
    loss: str
    subset_size: int
    subset_seed: int
    seed: int
    depth: int
    width: int
    device: str
    dtype: str
    per_layer: list[dict[str, Any]] | None = None
    # Our bounds (milr_core.theory), filled when sharpness_at_init(..., bounds=True); None otherwise.
    lower_bound: float | None = None
    ggn_upper_bound: float | None = None
    expected_upper_bound: float | None = None
    ntk_trace: float | None = None
    mean_sq_norm: float | None = None
    lambda_1_ggn: float | None = None
    ggn_residual: float | None = None
    ggn_converged: bool | None = None
    ggn_n_products: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sharpness_at_init(
    dataset: Any,
    spec: NetworkSpec,
    seed: int,
    *,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    subset_seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    method: str = "lanczos",
    tol: float = 1e-6,
    max_iter: int | None = None,
    loss: str = "cross_entropy",
    matrix: str = "hessian",
    per_layer: bool = False,
    bounds: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SharpnessResult:
    """lambda_1 of the network init_params(spec, [seed]) on a subset of dataset's training set.

    The subset depends on subset_seed only, so networks of different seeds see the same examples.
    matrix="ggn" gives the Gauss-Newton part instead of the Hessian. per_layer adds the top eigenvalue
    of each layer's diagonal block (weights and bias of layer l), input layer first.

    bounds=True (cross-entropy only) also records, on the same network and subset, our bounds of
    ``milr_core.theory.sharpness_bounds`` (lower, empirical upper, closed-form expected upper, the mean
    NTK trace and mean ||x||^2) and the Gauss-Newton matrix's own lambda_1 (lambda_1_ggn, with its
    residual, convergence and product count; the same solver settings; when matrix="ggn" it is lambda_1).
    The bounds cost C + 2 backward passes over the subset (no per-example Jacobian), so they are computed
    on the whole subset; the Gauss-Newton Lanczos roughly doubles the cost of the call.
    """
    check_solver_args(method, tol, max_iter)
    if matrix not in MATRICES:
        raise ValueError(f"unknown matrix {matrix!r}; known: {', '.join(MATRICES)}")
    check_operator_args(loss, chunk_size)
    if bounds and loss != "cross_entropy":
        raise ValueError(f"bounds=True needs loss='cross_entropy' (the bounds are derived for it), got {loss!r}")
    if (spec.in_dim, spec.out_dim) != (dataset.in_dim, dataset.n_classes):
        raise ValueError(
            f"spec maps {spec.in_dim} -> {spec.out_dim} but the dataset has {dataset.in_dim} inputs, "
            f"{dataset.n_classes} classes"
        )
    device = torch.device(device)
    synchronize(device)
    began = time.perf_counter()
    x, y = training_subset(dataset.x_train, dataset.y_train, subset_size, subset_seed)
    params = init_params(spec, [seed], dtype, device)
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    operator = OPERATORS[matrix](spec, params, x, y, loss=loss, chunk_size=chunk_size)
    top = top_hessian_eigenvalue(operator, method, tol=tol, max_iter=max_iter, seed=seed)
    layers = None
    if per_layer:
        layers = [
            {"layer": layer, **top_hessian_eigenvalue(BlockOperator(operator, block), method, tol=tol,
                                                      max_iter=max_iter, seed=seed).to_dict()}
            for layer, block in enumerate(layer_blocks(spec))
        ]
    extra: dict[str, Any] = {}
    if bounds:
        from milr_core.theory import sharpness_bounds  # theory imports this module

        extra = sharpness_bounds(spec, params, x, chunk_size)
        ggn = top if matrix == "ggn" else top_hessian_eigenvalue(
            GaussNewtonOperator(spec, params, x, y, loss=loss, chunk_size=chunk_size),
            method, tol=tol, max_iter=max_iter, seed=seed,
        )  # fmt: skip
        extra |= {"lambda_1_ggn": ggn.eigenvalue, "ggn_residual": ggn.residual, "ggn_converged": ggn.converged,
                  "ggn_n_products": ggn.n_hvps}  # fmt: skip
    synchronize(device)
    return SharpnessResult(
        lambda_1=top.eigenvalue,
        residual=top.residual,
        n_hvps=top.n_hvps,
        wall_time_s=time.perf_counter() - began,
        converged=top.converged,
        method=method,
        matrix=matrix,
        loss=loss,
        subset_size=subset_size,
        subset_seed=subset_seed,
        seed=seed,
        depth=spec.depth,
        width=spec.width,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        per_layer=layers,
        **extra,
    )


# ----------------------------------------------------------------------------------------------------------
# tidy frames of the sharpness experiment

CELL_KEYS = ["dataset", "depth", "width", "seed"]


def join_eta_star(sharpness: pd.DataFrame, eta_star: pd.DataFrame) -> pd.DataFrame:
    """lambda_1 and eta* of the same networks (same dataset, depth, width and seed: the same init).

    Keeps the sharpness frame's columns, adds eta_star, two_over_lambda (2 / lambda_1) and eta_lambda
    (eta* lambda_1), and drops networks without a positive eta* or lambda_1 (counted in attrs["dropped"]).
    """
    joined = sharpness.merge(eta_star[CELL_KEYS + ["eta_star"]], on=CELL_KEYS, how="inner")
    eta, lam = pd.to_numeric(joined["eta_star"], errors="coerce"), pd.to_numeric(joined["lambda_1"], errors="coerce")
    usable = (eta > 0) & (lam > 0)
    joined = joined[usable].assign(eta_star=eta[usable], lambda_1=lam[usable]).reset_index(drop=True)
    joined["two_over_lambda"] = 2.0 / joined["lambda_1"]
    joined["eta_lambda"] = joined["eta_star"] * joined["lambda_1"]
    joined.attrs["dropped"] = int((~usable).sum())
    return joined


def eta_lambda_summary(joined: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: how eta* and lambda_1 relate over the networks of ``join_eta_star``.

    slope is the least-squares slope of log eta* on log lambda_1 (-1 if eta* were c / lambda_1);
    spearman the rank correlation; the product eta* lambda_1 by its median, range and max / min
    (1 if inversely related; 2 is the stability threshold of GD on a quadratic).
    """
    rows = []
    for name, group in joined.groupby("dataset", sort=False):
        log_eta, log_lam = np.log(group["eta_star"].to_numpy(float)), np.log(group["lambda_1"].to_numpy(float))
        varied = len(group) >= 3 and np.ptp(log_lam) > 0
        product = group["eta_lambda"]
        rows.append({
            "dataset": name,
            "networks": len(group),
            "spearman": float(pd.Series(log_eta).corr(pd.Series(log_lam), method="spearman")) if varied else np.nan,
            "slope": float(np.polyfit(log_lam, log_eta, 1)[0]) if varied else np.nan,
            "eta_lambda median": float(product.median()),
            "eta_lambda min": float(product.min()),
            "eta_lambda max": float(product.max()),
            "max / min": float(product.max() / product.min()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def lanczos_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: networks, fraction converged to the grid's tolerance, residuals and products (H, and G if stored)."""
    rows = []
    for name, group in frame.groupby("dataset", sort=False):
        row = {
            "dataset": name,
            "networks": len(group),
            "tol": float(group["sharpness.tol"].max()) if "sharpness.tol" in group else np.nan,
            "converged": float(group["converged"].astype(bool).mean()),
            "residual median": float(group["residual"].median()),
            "residual max": float(group["residual"].max()),
            "products median": float(group["n_hvps"].median()),
        }
        if "ggn_converged" in group and group["ggn_converged"].notna().any():
            row["GGN converged"] = float(group["ggn_converged"].dropna().astype(bool).mean())
            row["GGN residual max"] = float(group["ggn_residual"].max())
        rows.append(row)
    return pd.DataFrame(rows)
