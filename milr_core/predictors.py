"""Cheap predictors of eta* at initialisation, measured per network: what the ``predictors`` kind stores.

- **The critical learning rate along the first update** (compare the "critical sharpness" of Kalra et al. 2026,
  arXiv 2601.16979, which is 2 / eta_c). On the batch the seed's first SGD step sees, g its gradient and P the
  per-tensor LR multipliers, f(eta) = L(theta_0 - eta P g) falls below L(theta_0) for small eta; eta_c is the
  largest eta at which the step still lowers that batch's loss, below the first rate at which it no longer does.
  On a quadratic with Hessian H it is 2 g'Pg / (g'P H P g): 2 / lambda exactly along an eigenvector of P^1/2 H P^1/2
  (tests). Found by forward passes only: a ladder of rates over ``critical_bounds`` in one batched forward pass (the
  rates as replicas), then bisection in log eta to a ratio 1 + ``critical_rtol`` (``config.PredictorConfig``).
- **The LR range test**'s suggestions (``lr_finder.py``).
- **The timing behind c / lambda_1.** lambda_1 (raw and effective) is read from the store's sharpness records, with
  the number of Hessian-vector products its Lanczos solve took; here the operator it was measured with is built on
  the same subset and a few of its products are timed, so that the predictor's wall time is measured on the device
  that runs this kind. The power law and c / lambda_1 themselves are evaluated from the store
  (``predictor_tables.py``).

**Costs** are counted in example passes (a forward or backward pass over B examples counts B): the critical LR one
forward and one backward pass for the gradient, then one forward pass per rate tried; the range test one forward
and one backward per step it uses; a Hessian-vector product two forward and two backward passes over its examples
(forward-over-reverse: the gradient's passes, each carrying a tangent). Wall times are measured where this runs.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from milr_core.config import PredictorConfig, RangeTestConfig, Run, SharpnessConfig, TrainConfig
from milr_core.curvature import OPERATORS, synchronize
from milr_core.lr_finder import lr_range_test
from milr_core.model import init_params, per_replica_loss
from milr_core.probe import Replicas, batch_order, replicas_of
from milr_core.runtime import torch_dtype
from milr_core.sharpness import training_subset

HVP_PASSES = 2  # forward passes (and as many backward) one Hessian-vector product counts


# ----------------------------------------------------------------------------------------------------------
# the critical learning rate along the first update


def first_update(model: Replicas, params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 loss: str) -> tuple[float, list[torch.Tensor]]:  # fmt: skip
    """The batch's loss at ``params`` (one replica) and the direction of one SGD step from them, -P g."""
    leaves = [p.detach().clone().requires_grad_() for p in params]
    value = per_replica_loss(model.forward(leaves, x), y, loss)[0]
    gradients = torch.autograd.grad(value, leaves)
    return value.item(), [-m * g for g, m in zip(gradients, model.lr_multipliers())]


@torch.no_grad()
def losses_along(model: Replicas, params: Sequence[torch.Tensor], direction: Sequence[torch.Tensor],
                 etas: Sequence[float], x: torch.Tensor, y: torch.Tensor, loss: str) -> list[float]:  # fmt: skip
    """The batch's loss after one step at each rate of ``etas``: one forward pass, the rates as replicas."""
    rates = torch.tensor(list(etas), dtype=params[0].dtype, device=params[0].device)
    stepped = [p + rates.view(-1, *[1] * (p.dim() - 1)) * d for p, d in zip(params, direction)]
    return per_replica_loss(model.forward(stepped, x), y, loss).tolist()


@dataclass
class CriticalSearch:
    """The critical LR of one network: eta_c (None when the ladder's ends do not bracket it), how it was found."""

    eta: float | None
    bracket: tuple[float, float]
    status: str  # "converged"; "below": the ladder's lowest rate already fails to lower the loss; "above": its highest still does
    loss: float  # the batch's loss at theta_0
    etas: list[float]  # every rate tried, in order
    losses: list[float]  # the batch's loss after one step at each
    batch_size: int
    wall_time_s: float

    def record(self) -> dict:
        return {"critical_lr": self.eta, "critical_status": self.status, "critical_bracket": list(self.bracket),
                "critical_loss": self.loss, "critical_evaluations": len(self.etas),
                "critical_forward_examples": (1 + len(self.etas)) * self.batch_size,
                "critical_backward_examples": self.batch_size, "critical_wall_time_s": self.wall_time_s}  # fmt: skip

    def curve(self) -> dict:
        return {"protocol": "critical_lr", "etas": self.etas, "losses": self.losses, "loss": self.loss}


def critical_lr(model: Replicas, params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, loss: str,
                config: PredictorConfig = PredictorConfig()) -> CriticalSearch:  # fmt: skip
    """The largest eta at which one SGD step from ``params`` (one replica of ``model``) lowers the loss of (x, y).

    The ladder's first rate that does not lower the loss (a non-finite loss does not) and the rate before it
    bracket eta_c; bisection at geometric midpoints narrows the bracket, and eta_c is its low end.
    """
    began = time.perf_counter()
    start, direction = first_update(model, params, x, y, loss)
    lo, hi = config.critical_bounds
    n = config.critical_ladder
    etas = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    losses = losses_along(model, params, direction, etas, x, y, loss)
    first = next((i for i, value in enumerate(losses) if not value < start), None)
    if first is None or first == 0:
        status, bracket = ("above", (hi, math.inf)) if first is None else ("below", (0.0, lo))
    else:
        status, bracket = "converged", (etas[first - 1], etas[first])
        while bracket[1] / bracket[0] > 1 + config.critical_rtol:
            middle = math.sqrt(bracket[0] * bracket[1])
            (value,) = losses_along(model, params, direction, [middle], x, y, loss)
            etas.append(middle)
            losses.append(value)
            bracket = (middle, bracket[1]) if value < start else (bracket[0], middle)
    eta = bracket[0] if status == "converged" else None
    return CriticalSearch(eta, bracket, status, start, etas, losses, x.shape[0], time.perf_counter() - began)


def first_batch(dataset, seed: int, batch_size: int, device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The minibatch the first SGD step of ``seed`` sees (``probe.batch_order``)."""
    index = batch_order(seed, dataset.x_train.shape[0], batch_size, 1)[0]
    return dataset.x_train[index].to(device=device, dtype=dtype), dataset.y_train[index].to(device)


# ----------------------------------------------------------------------------------------------------------
# the wall time of the Hessian-vector products behind lambda_1


def _hvp_timing(run: Run, sharpness: SharpnessConfig, count: int) -> dict:
    """Seconds to build the sharpness protocol's operator for the first seed's network (``sharpness.py``: the
    loss, and for one chunk the gradient graph) and per product (the median of ``count``)."""
    device, dtype = torch.device(run.device), torch_dtype(run.dtype)
    x, y = training_subset(run.dataset.x_train, run.dataset.y_train, sharpness.subset_size, sharpness.subset_seed)
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    params = init_params(run.network, [run.seeds[0]], dtype, device)
    synchronize(device)
    began = time.perf_counter()
    operator = OPERATORS[sharpness.matrix](run.network, params, x, y, loss=sharpness.loss, chunk_size=sharpness.chunk_size)
    synchronize(device)
    setup = time.perf_counter() - began
    vector = torch.randn(operator.n_params, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        operator.matvec(vector)
        synchronize(device)
        seconds.append(time.perf_counter() - began)
    return {"hvp_setup_s": setup, "hvp_seconds": statistics.median(seconds), "hvp_examples": x.shape[0],
            "hvp_products_timed": count}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# the kind


def predictors_at_init(run: Run, train: TrainConfig, sharpness: SharpnessConfig, range_test: RangeTestConfig,
                       config: PredictorConfig) -> list[tuple[dict, list[dict]]]:  # fmt: skip
    """Every predictor the ``predictors`` kind measures, for each seed of ``run`` (``run.network`` a NetworkSpec).

    Args:
        run: the network, data, seeds and how to compute (``config.Run``).
        train: the training the predicted eta* belongs to: its batch size (the first update's batch, the range
            test's steps), loss and divergence bound.
        sharpness: the protocol the stored lambda_1 was measured with (its subset, loss, matrix): timed here.
        range_test, config: the range test's and the critical LR's settings.

    Returns:
        A (result, ledger) pair per seed, holding the critical LR, the range test's suggestions, each with its passes and wall
        time, and the HVP timing (shared by the seed group); the ledger holds the range test's curve and every
        rate the critical LR tried.
    """
    tests = lr_range_test(run, train, range_test)
    timing = _hvp_timing(run, sharpness, config.hvp_timings)
    model, device, dtype = replicas_of(run.network), torch.device(run.device), torch_dtype(run.dtype)
    records = []
    for seed, test in zip(run.seeds, tests):
        x, y = first_batch(run.dataset, seed, train.batch_size, device, dtype)
        search = critical_lr(model, model.init_params([seed], dtype, device), x, y, train.loss, config)
        records.append(({**search.record(), **test.record(), **timing}, [test.curve(), search.curve()]))
    return records
