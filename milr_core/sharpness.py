"""The sharpness protocol: lambda_1 of a network's training loss, at initialisation or at any trained state.

lambda_1 is the top eigenvalue of the Hessian (or its Gauss-Newton part, ``matrix="ggn"``) of the *mean*
loss over a fixed training subset (a seeded permutation, ``subset_seed``; the same examples for every
network), for the K = 1 network ``init_params(network, [seed])``: exactly the network the eta* engine trains.

Measured per network (``config.SharpnessConfig`` says which, and with what solver and tolerance):

- ``lambda_1``: of the raw matrix. The learning rate multiplies it in gradient descent's stability
  condition eta < 2 / lambda_1 only when every parameter trains at the same rate.
- ``lambda_1_eff`` (``effective``): of P^1/2 H P^1/2, P the per-parameter learning-rate multipliers (the
  input layer at 0.1 x, or muP's per-layer rates): the curvature SGD's step actually sees, so the
  quadratic-model threshold reads eta < 2 / lambda_1_eff. Equal to lambda_1 when P = I.
- ``lambda_1_ggn`` and our bounds of chapter 8 (``bounds``, ``theory.py``), and each layer's diagonal block
  (``per_layer``).

Every eigenvalue carries its true relative residual, the number of operator products, whether it reached
the tolerance, and the precision that answered (float32, or float64 where float32 could not).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from milr_core.config import Run, SharpnessConfig
from milr_core.curvature import (
    OPERATORS,
    BlockOperator,
    GaussNewtonOperator,
    LinearOperator,
    PreconditionedOperator,
    synchronize,
    top_hessian_eigenvalue,
)
from milr_core.model import flat_lr_multipliers, init_params, layer_blocks
from milr_core.network import NetworkSpec
from milr_core.runtime import torch_dtype


def training_subset(x: torch.Tensor, y: torch.Tensor, subset_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first subset_size examples of a seeded permutation of the training set."""
    n = x.shape[0]
    if not 1 <= subset_size <= n:
        raise ValueError(f"sharpness.subset_size must be in [1, {n}] (the training-set size), got {subset_size}")
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:subset_size]
    return x[index], y[index]


def _eigen_fields(prefix: str, operator: LinearOperator, config: SharpnessConfig, seed: int) -> dict[str, Any]:
    """``<prefix>lambda`` and how it was found, as record fields."""
    top = top_hessian_eigenvalue(operator, config.method, tol=config.tol, max_iter=config.max_iter, seed=seed)
    return {f"{prefix}": top.eigenvalue, f"{prefix}_residual": top.residual, f"{prefix}_n_products": top.n_products,
            f"{prefix}_converged": top.converged, f"{prefix}_dtype": top.dtype}  # fmt: skip


def sharpness_of(
    network: NetworkSpec, params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, config: SharpnessConfig, seed: int
) -> dict[str, Any]:
    """Every measurement ``config`` asks for, of the network ``params`` (K = 1) on the examples (x, y)."""
    operator = OPERATORS[config.matrix](network, params, x, y, loss=config.loss, chunk_size=config.chunk_size)
    record: dict[str, Any] = {"loss_value": operator.loss_value}
    record |= _eigen_fields("lambda_1", operator, config, seed)
    if config.effective:
        multipliers = flat_lr_multipliers(network, dtype=operator.dtype, device=operator.device)
        record |= _eigen_fields("lambda_1_eff", PreconditionedOperator(operator, multipliers), config, seed)
    if config.per_layer:
        record["per_layer"] = [
            {"layer": layer, **_eigen_fields("lambda_1", BlockOperator(operator, block), config, seed)}
            for layer, block in enumerate(layer_blocks(network))
        ]
    if config.bounds:
        from milr_core.theory import sharpness_bounds

        record |= sharpness_bounds(network, params, x, config.chunk_size)
        ggn = operator if config.matrix == "ggn" else GaussNewtonOperator(network, params, x, y, loss=config.loss, chunk_size=config.chunk_size)
        record |= _eigen_fields("lambda_1_ggn", ggn, config, seed)
    return record


def sharpness_at_init(run: Run, config: SharpnessConfig = SharpnessConfig()) -> list[dict[str, Any]]:
    """lambda_1 (and what ``config`` adds) of each network ``init_params(run.network, [seed])`` on the training subset.

    Args:
        run: the network, data, seeds and how to compute (``config.Run``; threshold and lanes are not used).
        config: the subset, solver, tolerance and which quantities (``config.SharpnessConfig``).

    Returns:
        One record per seed, with seed, depth, width, every measured quantity with its residual, and the wall time.
    """
    network, dataset = run.network, run.dataset
    if (network.in_dim, network.out_dim) != (dataset.in_dim, dataset.n_classes):
        raise ValueError(
            f"the network maps {network.in_dim} -> {network.out_dim} but the dataset has {dataset.in_dim} inputs, "
            f"{dataset.n_classes} classes"
        )
    device, dtype = torch.device(run.device), torch_dtype(run.dtype)
    x, y = training_subset(dataset.x_train, dataset.y_train, config.subset_size, config.subset_seed)
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    records = []
    for seed in run.seeds:
        synchronize(device)
        began = time.perf_counter()
        record = sharpness_of(network, init_params(network, [seed], dtype, device), x, y, config, seed)
        synchronize(device)
        records.append({"seed": seed, "depth": network.depth, "width": network.width, **record,
                        "wall_time_s": time.perf_counter() - began})  # fmt: skip
    return records
