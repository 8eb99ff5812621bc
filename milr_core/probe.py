"""A training probe: K learning rates (or seeds) trained at once, each replica stopping on its own.

One probe answers, for each replica k = (lr_k, seed_k), the question Algorithm 1 asks of one learning
rate: does a fresh He-initialised network trained by constant-LR SGD reach validation accuracy >= t
within the budget? The K replicas are one batched computation (batched matmuls over a leading
replica axis, see ``model.py``); replica k sees exactly the computation it would see alone, so a
K-replica probe reproduces K single-LR runs.

Replica seed s fixes both the initial weights and the order of the minibatches; replicas with the
same seed start from identical weights and see identical batches, differing only in learning rate.

Outcomes, checked every ``eval_every`` steps and at the end of the budget:

- ``success``: validation accuracy >= threshold (the inner loop of Algorithm 1 breaks there);
- ``diverged``: some training-batch loss was non-finite or above ``max_loss``, or validation logits
  were non-finite;
- ``budget``: the step budget ran out first.

Economy that cannot change an outcome: finished replicas leave the batch, and a check stops counting
a replica's validation examples as soon as its verdict at that check is certain (it already has
t x N correct answers, or cannot reach them with the examples left), so a network far from t costs a
fraction of a full pass. Accuracy curves therefore hold only the checks that were counted in full
(the end of the budget, a success, or every check with ``full_validation=True``, which chapter 1 uses
to plot curves). Runs judged only at the end of their budget (``stop_at_threshold=False``, the late
learning rate) skip the intermediate validation checks altogether; their training loss is still watched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from milr_core.config import TrainConfig, check_threshold
from milr_core.model import forward, init_params, per_replica_loss
from milr_core.network import NetworkSpec, parameter_lr_multipliers

OUTCOMES = ("success", "diverged", "budget")
VALIDATION_CHUNK = 500  # examples per validation chunk: the resolution of the early verdict


@dataclass
class ProbeOutcome:
    """What one replica did: its LR and seed, how it ended, after how many steps, and its curves."""

    lr: float
    seed: int
    outcome: str
    steps: int
    accuracy: list[tuple[int, float]] = field(default_factory=list)
    loss: list[tuple[int, float]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1][1] if self.accuracy else float("nan")

    def to_dict(self, curves: bool = False) -> dict:
        """The probe's record for ledgers and result stores: how it ended (and, if asked, its curves)."""
        record = {
            "lr": self.lr,
            "seed": self.seed,
            "outcome": self.outcome,
            "steps": self.steps,
            "final_accuracy": self.final_accuracy if self.accuracy else None,
            "final_loss": self.loss[-1][1] if self.loss else None,
        }
        return record | ({"accuracy": self.accuracy, "loss": self.loss} if curves else {})


def check_probe_inputs(lrs: Sequence[float], seeds: Sequence[int], threshold: float) -> None:
    """One clear error for bad probe input, before any data moves or any training starts."""
    if len(lrs) == 0:
        raise ValueError("a probe needs at least one learning rate")
    if len(lrs) != len(seeds):
        raise ValueError(f"got {len(lrs)} learning rates but {len(seeds)} seeds; pass one seed per learning rate")
    bad = [lr for lr in lrs if not (lr > 0 and math.isfinite(lr))]
    if bad:
        raise ValueError(f"learning rates must be positive and finite, got {bad}")
    check_threshold(threshold)


def batch_order(seed: int, n_train: int, batch_size: int, steps: int) -> torch.Tensor:
    """Example indices (steps, batch_size) of each SGD step: a fresh seeded permutation per epoch."""
    rng = np.random.default_rng([seed, 0x6D696C72])  # a stream of its own, apart from the weights
    per_epoch = n_train // batch_size
    epochs = math.ceil(steps / per_epoch)
    order = np.concatenate([rng.permutation(n_train)[: per_epoch * batch_size] for _ in range(epochs)])
    return torch.from_numpy(order[: steps * batch_size].reshape(steps, batch_size))


@torch.no_grad()
def validation_check(
    net: NetworkSpec,
    params: Sequence[torch.Tensor],
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    threshold: float,
    full: bool,
) -> tuple[list[float | None], list[bool], list[bool]]:
    """Per replica: (accuracy or None if not counted in full, reached t, logits finite), chunk by chunk.

    Unless ``full``, a replica stops being counted once its verdict is certain: either it has
    ceil(t N) correct answers already, or even all the examples left could not bring it there. A replica
    that reaches t is then counted to the end, so that a success records its exact accuracy.
    """
    n_val, n_replicas = x_val.shape[0], params[0].shape[0]
    needed = math.ceil(threshold * n_val - 1e-9)
    correct = torch.zeros(n_replicas, dtype=torch.long, device=x_val.device)
    finite = torch.ones(n_replicas, dtype=torch.bool, device=x_val.device)
    counted = torch.zeros(n_replicas, dtype=torch.long, device=x_val.device)
    rows = torch.arange(n_replicas, device=x_val.device)
    for start in range(0, n_val, VALIDATION_CHUNK):
        stop = min(start + VALIDATION_CHUNK, n_val)
        logits = forward(net, [p[rows] for p in params], x_val[start:stop])
        hits = (logits.argmax(dim=2) == y_val[start:stop]).sum(dim=1)
        correct[rows] += hits
        counted[rows] += stop - start
        finite[rows] &= torch.isfinite(logits).flatten(1).all(dim=1)
        if not full:
            hopeless = correct[rows] + (n_val - stop) < needed
            rows = rows[~hopeless & finite[rows]]
            if rows.numel() == 0:
                break
    accuracy = [c / n_val if k == n_val else None for c, k in zip(correct.tolist(), counted.tolist())]
    return accuracy, (correct >= needed).tolist(), finite.tolist()


def train_replicas(
    dataset,
    net: NetworkSpec,
    train: TrainConfig,
    lrs: Sequence[float],
    seeds: Sequence[int],
    threshold: float,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    init: Sequence[torch.Tensor] | None = None,
    first_step: int = 0,
    stop_at_threshold: bool = True,
    keep_params: bool = False,
    full_validation: bool = False,
) -> tuple[list[ProbeOutcome], list[torch.Tensor] | None]:
    """Train replica k = (lrs[k], seeds[k]) until it succeeds, diverges or runs out of budget.

    init: parameters to start from (K replicas, as ``init_params`` lays them out) instead of fresh ones;
    first_step: where in each seed's batch order to start (to continue a run without repeating batches);
    stop_at_threshold: False trains every replica for the whole budget, and success then means "not
    diverged and validation accuracy >= threshold at the end" (used for the late-training LR);
    keep_params: also return every replica's final parameters (diverged ones included), in input order;
    full_validation: count every validation example at every check (for accuracy curves).
    """
    check_probe_inputs(lrs, seeds, threshold)
    if net.in_dim != dataset.in_dim or net.out_dim != dataset.n_classes:
        raise ValueError(
            f"network shape {net.in_dim}->{net.out_dim} does not fit dataset {dataset.name} "
            f"({dataset.in_dim} inputs, {dataset.n_classes} classes)"
        )
    n_train = dataset.x_train.shape[0]
    steps = train.budget_steps(n_train)
    x_train = dataset.x_train.to(device=device, dtype=dtype)
    y_train = dataset.y_train.to(device=device)
    x_val = dataset.x_val.to(device=device, dtype=dtype)
    y_val = dataset.y_val.to(device=device)

    orders = {s: batch_order(s, n_train, train.batch_size, first_step + steps)[first_step:] for s in set(seeds)}
    # Each replica gets its own (B, in) slice, even when seeds agree, so that a replica's arithmetic is the
    # same whichever replicas it shares the probe with (a seed's result is independent of batching).
    replica_orders = torch.stack([orders[s] for s in seeds]).to(device)  # (K, steps, B)
    start = init_params(net, seeds, dtype, device) if init is None else [p.detach().to(device, dtype).clone() for p in init]
    params = [p.requires_grad_() for p in start]
    multipliers = parameter_lr_multipliers(net)
    active = list(range(len(lrs)))  # original index of each row still training
    lr_column = torch.tensor(lrs, dtype=dtype, device=device).view(-1, 1, 1)
    outcomes = [ProbeOutcome(lr=float(lr), seed=int(s), outcome="budget", steps=steps) for lr, s in zip(lrs, seeds)]
    finished: dict[int, list[torch.Tensor]] = {}
    window_losses: list[torch.Tensor] = []

    for step in range(1, steps + 1):
        batch = replica_orders[:, step - 1]  # (K active, B)
        losses = per_replica_loss(forward(net, params, x_train[batch]), y_train[batch], train.loss)
        grads = torch.autograd.grad(losses.sum(), params)
        with torch.no_grad():
            for p, g, m in zip(params, grads, multipliers):
                p.addcmul_(g, lr_column, value=-m)
        window_losses.append(losses.detach())

        if step % train.eval_every and step != steps:
            continue
        # One host sync per window: divergence anywhere in the window, then the accuracy check.
        window = torch.stack(window_losses)  # (steps in window, K active)
        window_losses = []
        window_start = step - window.shape[0] + 1
        blown = ~torch.isfinite(window) | (window > train.max_loss)
        full = full_validation or step == steps
        if not stop_at_threshold and not full:  # only the end decides: a check looks at the training loss only
            accuracy, reached, finite = [None] * len(active), [False] * len(active), [True] * len(active)
        else:
            accuracy, reached, finite = validation_check(net, params, x_val, y_val, threshold, full)
        blown_any = blown.any(dim=0).tolist()
        blown_at = blown.int().argmax(dim=0).tolist()
        last_loss = window[-1].tolist()
        keep = []
        for row, index in enumerate(active):
            record = outcomes[index]
            record.loss.append((step, float(last_loss[row])))
            if blown_any[row]:
                record.outcome, record.steps = "diverged", window_start + blown_at[row]
                continue
            if not finite[row]:
                record.outcome, record.steps = "diverged", step
                continue
            if accuracy[row] is not None:
                record.accuracy.append((step, float(accuracy[row])))
            if reached[row] and (stop_at_threshold or step == steps):
                record.outcome, record.steps = "success", step
            elif step < steps:
                keep.append(row)
        if len(keep) < len(active):
            if keep_params:
                finished.update({active[row]: [p[row].detach() for p in params] for row in range(len(active)) if row not in keep})
            if not keep:
                break
            rows = torch.tensor(keep, device=device)
            params = [p.detach()[rows].requires_grad_() for p in params]
            lr_column = lr_column[rows]
            replica_orders = replica_orders[rows]
            active = [active[row] for row in keep]
    if not keep_params:
        return outcomes, None
    return outcomes, [torch.stack([finished[i][j] for i in range(len(lrs))]) for j in range(len(params))]
