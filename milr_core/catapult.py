"""The catapult window under MSE: where eta* lies against 2 / lambda_1 and 4 / lambda_1 (beyond the paper).

Lewkowycz et al. (2020) found, for wide networks trained by gradient descent on the squared error, three
regimes of the learning rate eta against lambda_1, the sharpness at initialisation: below 2 / lambda_1
training is stable ("lazy"); between 2 / lambda_1 and about 4 / lambda_1 the loss first grows, then falls
while lambda_1 drops below 2 / eta (the "catapult"); above about 4 / lambda_1 training diverges.

- ``catapult_window``: per seed, lambda_1 at init (``sharpness_at_init`` with loss "mse") and eta* (the
  same search as everywhere, with ``TrainConfig(loss="mse")``), and their product eta* lambda_1, to read
  against 2 and 4. eta* is minibatch SGD reaching a validation accuracy, the window is a full-batch GD
  picture, so the comparison is ours and approximate.
- ``catapult_trajectory``: one network trained at one LR by full-batch gradient descent on the fixed
  subset lambda_1 is measured on, recording the loss at every step and lambda_1 every ``every`` steps,
  to show the spike of the loss and the drop of lambda_1 inside the window. The training is
  ``train_replicas`` run in segments (``init=`` and ``first_step=``), so no training loop is copied here.

Every default (subset, tolerance, full batch) is our choice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch

from milr_core.model import NetworkSpec, init_params
from milr_core.probe import TrainConfig, train_replicas
from milr_core.search import EtaStarResult, SearchConfig, find_eta_star
from milr_core.sharpness import (
    HessianOperator,
    SharpnessResult,
    check_solver_args,
    sharpness_at_init,
    top_hessian_eigenvalue,
    training_subset,
)

STABLE, CATAPULT = 2.0, 4.0  # eta lambda_1 below 2: stable; in [2, 4): catapult; 4 and above: divergence expected


def regime(eta_lambda: float | None) -> str | None:
    """"stable", "catapult" or "divergent", by eta lambda_1 against 2 and 4 (Lewkowycz et al. 2020)."""
    if eta_lambda is None or not math.isfinite(eta_lambda):
        return None
    return "stable" if eta_lambda < STABLE else "catapult" if eta_lambda < CATAPULT else "divergent"


def validate_catapult_inputs(train: TrainConfig, subset_size: int, tol: float) -> None:
    if train.loss != "mse":
        raise ValueError(f"the catapult window is an MSE picture: train.loss must be 'mse', got {train.loss!r}")
    if subset_size < 1:
        raise ValueError(f"subset_size must be >= 1, got {subset_size}")
    check_solver_args("lanczos", tol, None)


@dataclass
class CatapultWindow:
    """eta* (MSE) and lambda_1 at init (MSE) per seed, with their product and its regime."""

    eta_star: EtaStarResult
    sharpness: list[SharpnessResult]
    wall_time_s: float

    def seed_record(self, seed: int) -> dict:
        search = self.eta_star.seed_result(seed)
        sharp = next(s for s in self.sharpness if s.seed == seed)
        product = search.eta_star * sharp.lambda_1 if search.eta_star is not None else None
        return {
            **search.record(),
            "lambda_1": sharp.lambda_1,
            "lambda_residual": sharp.residual,
            "lambda_converged": sharp.converged,
            "subset_size": sharp.subset_size,
            "eta_lambda": product,
            "regime": regime(product),
        }

    def seed_ledger(self, seed: int) -> list[dict]:
        return self.eta_star.seed_result(seed).ledger_records()


def catapult_window(
    dataset,
    net: NetworkSpec,
    train: TrainConfig = TrainConfig(loss="mse"),
    search: SearchConfig = SearchConfig(),
    *,
    threshold: float | None = None,
    seeds: Sequence[int] = (0,),
    subset_size: int = 2048,
    subset_seed: int = 0,
    tol: float = 1e-6,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> CatapultWindow:
    """eta* and lambda_1 at init of ``net`` under MSE, per seed (lambda_1 by Lanczos on a fixed training subset)."""
    validate_catapult_inputs(train, subset_size, tol)
    start = time.perf_counter()
    eta = find_eta_star(
        dataset, net, train, search, threshold=threshold, seeds=seeds, device=device, dtype=dtype, progress=progress
    )
    sharpness = [
        sharpness_at_init(
            dataset, net, seed, subset_size=subset_size, subset_seed=subset_seed, tol=tol, loss="mse",
            device=device, dtype=dtype,
        )  # fmt: skip
        for seed in seeds
    ]
    return CatapultWindow(eta, sharpness, time.perf_counter() - start)


@dataclass
class CatapultTrajectory:
    """Full-batch MSE training at one LR: the loss at steps 0 .. steps - 1 and lambda_1 at 0, every, 2 every, ...

    ``loss[t]`` is the subset's mean loss at the parameters after t updates; ``lambda_1[i]`` and
    ``lambda_loss[i]`` are the sharpness and the loss after ``lambda_steps[i]`` updates. If the run
    diverged (a loss above ``max_loss`` or not finite), ``diverged_at`` is that step and the records stop there.
    """

    lr: float
    seed: int
    subset_size: int
    loss: list[float]
    lambda_steps: list[int]
    lambda_1: list[float]
    lambda_loss: list[float]
    diverged_at: int | None

    @property
    def eta_lambda(self) -> float:
        """The product of the LR and lambda_1 at init, which places the run against 2 and 4."""
        return self.lr * self.lambda_1[0]

    def to_dict(self) -> dict:
        return {**asdict(self), "eta_lambda": self.eta_lambda, "regime": regime(self.eta_lambda)}


def catapult_trajectory(
    dataset,
    spec: NetworkSpec,
    seed: int,
    lr: float,
    steps: int,
    every: int,
    *,
    subset_size: int = 2048,
    subset_seed: int = 0,
    tol: float = 1e-6,
    max_loss: float = 1e3,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> CatapultTrajectory:
    """Train ``init_params(spec, [seed])`` by full-batch GD at ``lr`` on MSE over the subset ``sharpness_at_init``
    uses (same ``subset_size`` and ``subset_seed``), recording the loss every step and lambda_1 every ``every``."""
    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be >= 1, got {steps}, {every}")
    train = TrainConfig(batch_size=subset_size, max_steps=every, eval_every=1, loss="mse", max_loss=max_loss)
    validate_catapult_inputs(train, subset_size, tol)
    x, y = training_subset(dataset.x_train, dataset.y_train, subset_size, subset_seed)
    subset = replace(dataset, x_train=x, y_train=y)  # every step's batch is the whole subset, in a new order
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    params = init_params(spec, [seed], dtype, device)
    trajectory = CatapultTrajectory(float(lr), seed, subset_size, [], [], [], [], None)
    done = 0
    while True:
        operator = HessianOperator(spec, params, x, y, loss="mse")
        trajectory.lambda_steps.append(done)
        trajectory.lambda_1.append(top_hessian_eigenvalue(operator, tol=tol, seed=seed).eigenvalue)
        trajectory.lambda_loss.append(operator.loss_value)
        if done == steps:
            break
        segment = replace(train, max_steps=min(every, steps - done))
        (outcome,), params = train_replicas(
            subset, spec, segment, [lr], [seed], dataset.meta["default_threshold"], device=device, dtype=dtype,
            init=params, first_step=done, stop_at_threshold=False, keep_params=True,
        )  # fmt: skip
        trajectory.loss += [loss for _, loss in outcome.loss]
        if outcome.outcome == "diverged":
            trajectory.diverged_at = done + outcome.steps - 1
            break
        done += segment.max_steps
    return trajectory
