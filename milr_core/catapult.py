"""The catapult window under MSE: where eta* lies against 2 / lambda_1 and 4 / lambda_1 (beyond the paper).

Lewkowycz et al. (2020) found, for wide networks trained by gradient descent on the squared error, three
regimes of the learning rate eta against lambda_1, the sharpness at initialisation: below 2 / lambda_1
training is stable ("lazy"); between 2 / lambda_1 and about 4 / lambda_1 the loss first grows, then falls
while lambda_1 drops below 2 / eta (the "catapult"); above about 4 / lambda_1 training diverges.

- ``catapult_window``: per seed, lambda_1 and lambda_1_eff at init under MSE (``sharpness.py``) and eta* (the
  same search as everywhere, with ``TrainConfig(loss="mse")``), and their products, to read against 2 and
  4. With per-layer learning rates (the input layer at 0.1 x) the step sees lambda_1_eff, so the regime is
  read off eta* x lambda_1_eff. eta* is minibatch SGD reaching a validation accuracy, the window is a
  full-batch GD picture, so the comparison is ours and approximate.
- ``catapult_trajectory``: one network trained by full-batch gradient descent on the fixed subset lambda_1 is
  measured on, at eta = f / lambda_1_eff(init) for each f of ``TrajectoryConfig.eta_lambdas``, recording the
  loss at every step and lambda_1_eff every ``every`` steps, to show the spike of the loss and the drop of
  the sharpness inside the window. The training is ``train_replicas`` run in segments (``init=`` and
  ``first_step=``), so no training loop is copied here.

Every default (subset, tolerance, full batch, the factors) is our choice.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

from milr_core.config import CATAPULT_WINDOW, Run, SearchConfig, SharpnessConfig, TrainConfig, TrajectoryConfig
from milr_core.model import init_params
from milr_core.probe import train_replicas
from milr_core.runtime import torch_dtype
from milr_core.search import EtaStarResult, find_eta_star
from milr_core.sharpness import sharpness_at_init, sharpness_of, training_subset

STABLE, CATAPULT = CATAPULT_WINDOW  # eta lambda_1 below 2: stable; in [2, 4): catapult; 4 and above: divergence expected


def regime(eta_lambda: float | None) -> str | None:
    """"stable", "catapult" or "divergent", by eta lambda_1 against 2 and 4 (Lewkowycz et al. 2020)."""
    if eta_lambda is None or not math.isfinite(eta_lambda):
        return None
    return "stable" if eta_lambda < STABLE else "catapult" if eta_lambda < CATAPULT else "divergent"


@dataclass
class CatapultWindow:
    """eta* (MSE) and the sharpness at init (MSE) per seed, with their products and the regime."""

    eta_star: EtaStarResult
    sharpness: dict[int, dict]
    wall_time_s: float

    def seed_record(self, seed: int) -> dict:
        search = self.eta_star.seed_result(seed)
        sharp = {k: v for k, v in self.sharpness[seed].items() if k not in ("seed", "depth", "width", "wall_time_s")}
        eta = search.eta_star
        product = eta * sharp["lambda_1"] if eta is not None else None
        effective = eta * sharp["lambda_1_eff"] if eta is not None and "lambda_1_eff" in sharp else product
        return {**search.record(), **sharp, "eta_lambda": product, "eta_lambda_eff": effective, "regime": regime(effective)}

    def seed_ledger(self, seed: int) -> list[dict]:
        return self.eta_star.seed_result(seed).ledger_records()

    def records(self) -> list[tuple[dict, list[dict]]]:
        """(result, ledger) per seed, as a result store keeps them."""
        return [(self.seed_record(s.seed), self.seed_ledger(s.seed)) for s in self.eta_star.per_seed]


def catapult_window(
    run: Run,
    train: TrainConfig = TrainConfig(loss="mse"),
    search: SearchConfig = SearchConfig(),
    sharpness: SharpnessConfig = SharpnessConfig(loss="mse"),
) -> CatapultWindow:
    """eta* and lambda_1 at init of ``run.network`` under MSE, per seed.

    Args:
        run: the network, data, seeds, threshold and how to compute (``config.Run``).
        train, search: how eta* is found (``train.loss`` must be mse).
        sharpness: how lambda_1 is measured (``sharpness.loss`` must be mse).

    Returns:
        A ``CatapultWindow``: per seed eta*, lambda_1 (raw and effective), their products and the regime.
    """
    if (train.loss, sharpness.loss) != ("mse", "mse"):
        raise ValueError("the catapult window is an MSE picture: train.loss and sharpness.loss must be 'mse'")
    start = time.perf_counter()
    eta = find_eta_star(run, train, search)
    measured = {record["seed"]: record for record in sharpness_at_init(run, sharpness)}
    return CatapultWindow(eta, measured, time.perf_counter() - start)


@dataclass
class CatapultRun:
    """Full-batch MSE training at one LR: the loss at steps 0 .. steps - 1 and lambda_1_eff at 0, every, 2 every, ...

    ``loss[t]`` is the subset's mean loss at the parameters after t updates; ``lambda_1[i]`` and
    ``lambda_loss[i]`` are the effective sharpness and the loss after ``lambda_steps[i]`` updates. If the run
    diverged (a loss above ``max_loss`` or not finite), ``diverged_at`` is that step and the records stop there.
    """

    eta_lambda: float
    lr: float
    loss: list[float]
    lambda_steps: list[int]
    lambda_1: list[float]
    lambda_loss: list[float]
    diverged_at: int | None

    def to_dict(self) -> dict:
        return {**asdict(self), "regime": regime(self.eta_lambda)}


def catapult_trajectory(
    run: Run,
    sharpness: SharpnessConfig = SharpnessConfig(loss="mse"),
    trajectory: TrajectoryConfig = TrajectoryConfig(),
    *,
    max_loss: float = 1e3,
) -> list[dict]:
    """Per seed: train ``init_params(network, [seed])`` by full-batch GD on MSE over the sharpness subset, once per
    factor f, at eta = f / lambda_1_eff(init).

    Returns:
        One record per seed, holding "seed", "lambda_1_eff" (at init) and "runs" (``CatapultRun.to_dict()`` each).
    """
    if sharpness.loss != "mse":
        raise ValueError("a catapult trajectory is trained on MSE: sharpness.loss must be 'mse'")
    network, dataset, device, dtype = run.network, run.dataset, run.device, torch_dtype(run.dtype)
    curvature = replace(sharpness, effective=True, bounds=False, per_layer=False)
    x, y = training_subset(dataset.x_train, dataset.y_train, sharpness.subset_size, sharpness.subset_seed)
    subset = replace(dataset, x_train=x, y_train=y)  # every step's batch is the whole subset, in a new order
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    train = TrainConfig(batch_size=sharpness.subset_size, max_steps=trajectory.every, eval_every=1, loss="mse", max_loss=max_loss)
    records = []
    for seed in run.seeds:
        start = init_params(network, [seed], dtype, device)
        lambda_init = sharpness_of(network, start, x, y, curvature, seed)["lambda_1_eff"]
        runs = []
        for factor in trajectory.eta_lambdas:
            lr = factor / lambda_init
            path = CatapultRun(factor, lr, [], [], [], [], None)
            params, done = start, 0
            while True:
                measured = sharpness_of(network, params, x, y, curvature, seed)
                path.lambda_steps.append(done)
                path.lambda_1.append(measured["lambda_1_eff"])
                path.lambda_loss.append(measured["loss_value"])
                if done == trajectory.steps:
                    break
                segment = replace(train, max_steps=min(trajectory.every, trajectory.steps - done))
                (outcome,), params = train_replicas(
                    subset, network, segment, [lr], [seed], run.threshold, lanes=run.lanes, device=device, dtype=dtype,
                    init=params, first_step=done, stop_at_threshold=False, keep_params=True,
                )  # fmt: skip
                path.loss += [loss for _, loss in outcome.loss]
                if outcome.outcome == "diverged":
                    path.diverged_at = done + outcome.steps - 1
                    break
                done += segment.max_steps
            runs.append(path.to_dict())
        records.append({"seed": seed, "lambda_1_eff": lambda_init, "runs": runs})
    return records
