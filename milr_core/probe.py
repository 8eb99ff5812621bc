"""Training probes in lanes: many replicas trained at once, each stopping on its own, finished lanes refilled.

A *probe* answers, for one replica (lr, seed), the question Algorithm 1 asks of one learning rate: does a
fresh He-initialised network trained by constant-LR SGD reach validation accuracy >= t within its budget?
The lane pool trains many probes as one batched computation (a leading replica axis, ``model.py``): replica k's
loss depends only on replica k's parameters, so one backward pass of the summed losses yields every replica's
own gradient, and a probe in the pool reproduces the same probe run alone.

Replica seed s fixes both the initial weights and the order of the minibatches; replicas with the same seed
start from identical weights and see identical batches, differing only in learning rate.

Outcomes, checked every ``eval_every`` steps and at the end of a probe's budget:

- ``success``: validation accuracy >= threshold (the inner loop of Algorithm 1 breaks there);
- ``diverged``: some training-batch loss was non-finite or above ``max_loss``, or validation logits
  were non-finite;
- ``budget``: the step budget ran out first.

**Lanes** (``runtime.py``). With ``lanes=L`` every step runs exactly L replicas: a finished lane idles (zero
parameters, learning rate 0) until a new probe takes it at the next check boundary (a multiple of ``eval_every``
steps, so that every lane's checks fall on shared steps), and every kernel sees the same shapes whatever runs
beside it: a replica's bits depend on (device, dtype, threads, L), not on the speculation depth, the seeds or the
cells that share its pool. ``lanes=None`` is *elastic*: the batch holds exactly the running probes, shrinking when
one finishes and growing when one starts (the economy of a CPU, exact where the arithmetic is batch-independent).

Economy that cannot change an outcome: finished lanes are refilled with waiting probes, and a check stops
counting a lane's validation examples as soon as its verdict is certain (it already has t x N correct answers,
or cannot reach them with the examples left). Accuracy curves therefore hold only the checks counted in full
(the end of the budget, a success, or every check with ``full_validation=True``, which chapter 1 uses to plot
curves). Probes judged only at the end of their budget (``stop_at_threshold=False``: the late learning rate)
skip the intermediate validation checks; their training loss is still watched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from milr_core.config import TrainConfig, check_threshold
from milr_core.model import MLP, per_replica_loss
from milr_core.network import NetworkSpec

OUTCOMES = ("success", "diverged", "budget")
VALIDATION_CHUNK = 500  # examples per validation chunk: the resolution of the early verdict
FRESH_KEPT = 8  # fresh networks a pool keeps for their seeds' next probes


class Replicas(Protocol):
    """What the lane pool needs of a model: ``model.MLP`` for our networks, ``modules.ModuleReplicas`` for any module."""

    in_dim: int
    out_dim: int

    def shape(self) -> tuple: ...
    def init_params(self, seeds: Sequence[int], dtype: torch.dtype, device) -> list[torch.Tensor]: ...
    def lr_multipliers(self) -> list[float]: ...
    def forward_multipliers(self) -> list[float]: ...
    def forward(self, params: Sequence[torch.Tensor], x: torch.Tensor, multipliers=None) -> torch.Tensor: ...


def replicas_of(network: NetworkSpec | Replicas) -> Replicas:
    return MLP(network) if isinstance(network, NetworkSpec) else network


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


@dataclass
class Probe:
    """One replica's job: train ``network`` (fresh from ``seed``, or from ``init``) at ``lr`` for at most ``steps``.

    ``first_step``: where in the seed's batch order to start (to continue a run without repeating batches);
    ``stop_at_threshold``: False trains the whole budget, and success then means "not diverged and validation
    accuracy >= threshold at the end" (the late learning rate); ``keep_params``: hand the final parameters to the
    caller; ``schedule``: the learning rate of step s (from 0) is ``lr * schedule(s)`` (an LR range test; None:
    constant, as in the paper); ``tag``: the caller's, returned with the outcome.
    """

    lr: float
    seed: int
    network: NetworkSpec | Replicas
    steps: int
    threshold: float
    init: list[torch.Tensor] | None = None
    first_step: int = 0
    stop_at_threshold: bool = True
    keep_params: bool = False
    schedule: Callable[[int], float] | None = None
    tag: object = None


def _check_probe_inputs(lrs: Sequence[float], seeds: Sequence[int], threshold: float) -> None:
    """One clear error for bad probe input, before any data moves or any training starts."""
    if len(lrs) == 0:
        raise ValueError("a probe needs at least one learning rate")
    if len(lrs) != len(seeds):
        raise ValueError(f"got {len(lrs)} learning rates but {len(seeds)} seeds; pass one seed per learning rate")
    bad = [lr for lr in lrs if not (lr > 0 and math.isfinite(lr))]
    if bad:
        raise ValueError(f"learning rates must be positive and finite, got {bad[:5]}")
    check_threshold(threshold)


def batch_order(seed: int, n_train: int, batch_size: int, steps: int) -> torch.Tensor:
    """Example indices (steps, batch_size) of each SGD step: a fresh seeded permutation per epoch."""
    rng = np.random.default_rng([seed, 0x6D696C72])  # a stream of its own, apart from the weights
    per_epoch = n_train // batch_size
    epochs = math.ceil(steps / per_epoch)
    order = np.concatenate([rng.permutation(n_train)[: per_epoch * batch_size] for _ in range(epochs)])
    return torch.from_numpy(order[: steps * batch_size].reshape(steps, batch_size))


@dataclass
class Lane:
    """A probe while it trains: its outcome so far and how many steps it has taken."""

    probe: Probe
    outcome: ProbeOutcome
    order: torch.Tensor  # (steps, batch) example indices on the device
    done: int = 0


class LanePool:
    """Lanes training probes of one shape on one dataset; ``run(feed, finished)`` until no probe is left.

    Args:
        dataset: the data (``data.Dataset``): flattened inputs, labels, ``n_classes``.
        train: batch size, check interval, loss and divergence bound shared by every lane (budgets are per probe).
        lanes: L, the fixed number of replicas per step; None for elastic (see the module docstring).
        device, dtype: where and in what the lanes compute.
        full_validation: count every validation example at every check (for accuracy curves).
    """

    def __init__(self, dataset, train: TrainConfig, *, lanes: int | None = None, device="cpu",
                 dtype: torch.dtype = torch.float32, full_validation: bool = False) -> None:  # fmt: skip
        self.dataset, self.train, self.lanes = dataset, train, lanes
        self.device, self.dtype, self.full_validation = torch.device(device), dtype, full_validation
        self.x_train = dataset.x_train.to(device=device, dtype=dtype)
        self.y_train = dataset.y_train.to(device)
        self.x_val = dataset.x_val.to(device=device, dtype=dtype)
        self.y_val = dataset.y_val.to(device)
        self.n_train = dataset.x_train.shape[0]
        self.model: Replicas | None = None
        self.rows: list[Lane | None] = []
        self.params: list[torch.Tensor] = []
        self.idle_order = torch.zeros(train.batch_size, dtype=torch.long, device=self.device)
        self.fresh: dict[tuple, list[torch.Tensor]] = {}  # (network, seed) -> its initial parameters (``fresh_params``)
        self.replica_steps = 0  # lane-steps of real probes (idle lanes not counted)
        self.lane_steps = 0  # lane-steps computed, idle ones included

    # ------------------------------------------------------------------------------------------------------
    # lanes

    def admit(self, probe: Probe) -> Lane:
        model = replicas_of(probe.network)
        if self.model is None:
            if (model.in_dim, model.out_dim) != (self.dataset.in_dim, self.dataset.n_classes):
                raise ValueError(
                    f"network shape {model.in_dim}->{model.out_dim} does not fit dataset {self.dataset.name} "
                    f"({self.dataset.in_dim} inputs, {self.dataset.n_classes} classes)"
                )
            self.model = model
        elif model.shape() != self.model.shape():
            raise ValueError(f"a lane pool trains one shape: {model.shape()} beside {self.model.shape()}")
        _check_probe_inputs([probe.lr], [probe.seed], probe.threshold)
        order = batch_order(probe.seed, self.n_train, self.train.batch_size, probe.first_step + probe.steps)
        outcome = ProbeOutcome(lr=float(probe.lr), seed=int(probe.seed), outcome="budget", steps=probe.steps)
        return Lane(probe, outcome, order[probe.first_step:].to(self.device))

    def start(self, lane: Lane) -> None:
        """Put a lane's fresh (or given) parameters in a free row (fixed lanes) or a new one (elastic)."""
        probe = lane.probe
        model = replicas_of(probe.network)
        if probe.init is None:
            start = self.fresh_params(probe, model)
        else:
            start = [p.detach().to(self.device, self.dtype)[None] for p in probe.init]
        if self.lanes is None:
            self.params = [torch.cat([p.detach(), s]).requires_grad_() if self.rows else s.clone().requires_grad_()
                           for p, s in zip(self.params or start, start)]  # fmt: skip
            self.rows.append(lane)
            return
        if not self.rows:
            self.params = [torch.zeros((self.lanes, *s.shape[1:]), dtype=self.dtype, device=self.device).requires_grad_()
                           for s in start]  # fmt: skip
            self.rows = [None] * self.lanes
        slot = self.rows.index(None)
        with torch.no_grad():
            for p, s in zip(self.params, start):
                p[slot] = s[0]
        self.rows[slot] = lane

    def fresh_params(self, probe: Probe, model: Replicas) -> list[torch.Tensor]:
        """A seed's fresh network, drawn once and kept for its next probes (every probe of a seed starts from the same
        weights; drawing a wide network on the CPU costs as much as many training steps on a GPU). Never modified:
        ``start`` copies it into its lane."""
        key = (probe.network if isinstance(probe.network, Hashable) else id(probe.network), probe.seed)
        if key not in self.fresh:
            if len(self.fresh) >= FRESH_KEPT:
                self.fresh.pop(next(iter(self.fresh)))
            self.fresh[key] = model.init_params([probe.seed], self.dtype, self.device)
        return self.fresh[key]

    def stop(self, indices: list[int]) -> None:
        """Free the rows of finished lanes: removed (elastic) or zeroed and idle (fixed)."""
        if self.lanes is None:
            keep = [i for i in range(len(self.rows)) if i not in indices]
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.params = [p.detach()[index].requires_grad_() for p in self.params]
            self.rows = [self.rows[i] for i in keep]
            return
        with torch.no_grad():
            for p in self.params:
                p[indices] = 0
        for i in indices:
            self.rows[i] = None

    def columns(self) -> tuple[torch.Tensor, list, list]:
        """Per row: the learning rate (R, 1, 1), each tensor's LR multiplier and each layer's forward multiplier,
        as numbers where every running lane agrees, else as (R, 1, 1) tensors (idle rows take the first lane's)."""
        running = [lane for lane in self.rows if lane is not None]
        first = replicas_of(running[0].probe.network)
        models = [replicas_of(lane.probe.network) if lane else first for lane in self.rows]
        lr = torch.tensor([lane.probe.lr if lane else 0.0 for lane in self.rows], dtype=self.dtype, device=self.device)

        def per_row(values: list[list[float]]) -> list:
            return [column[0] if len(set(column)) == 1 else
                    torch.tensor(column, dtype=self.dtype, device=self.device).view(-1, 1, 1)
                    for column in zip(*values)]  # fmt: skip

        return lr.view(-1, 1, 1), per_row([m.lr_multipliers() for m in models]), per_row([m.forward_multipliers() for m in models])

    # ------------------------------------------------------------------------------------------------------
    # training

    def run(self, feed: Callable[[], Probe | None], finished: Callable[[Probe, ProbeOutcome, list | None], None]) -> None:
        """Train until ``feed`` has nothing left and every lane has finished.

        ``feed()`` gives the next waiting probe (None: none now); it is asked at check boundaries, so a probe that
        ``finished`` (called with each ending probe, its outcome and, if asked, its parameters) makes runnable
        starts at the next boundary. Every running lane's checks fall on the boundaries, and on its budget's end.
        """
        train, step = self.train, 0
        while True:
            if step % train.eval_every == 0 or not any(self.rows):
                step = step if any(self.rows) else 0  # all lanes idle: a start is a new boundary
                while (self.lanes is None or not self.rows or None in self.rows) and (probe := feed()) is not None:
                    self.start(self.admit(probe))
                if not any(self.rows):
                    return
                lr, multipliers, forward_multipliers = self.columns()
                blown_at = torch.full((len(self.rows),), -1, dtype=torch.long, device=self.device)  # all just checked
                done = torch.tensor([lane.done if lane else 0 for lane in self.rows], device=self.device)
                running = torch.tensor([lane is not None for lane in self.rows], device=self.device)
            if any(lane and lane.probe.schedule for lane in self.rows):  # a scheduled lane's rate changes every step
                lr = torch.tensor([lane.probe.lr * lane.probe.schedule(lane.done) if lane and lane.probe.schedule else
                                   lane.probe.lr if lane else 0.0 for lane in self.rows], dtype=self.dtype,
                                  device=self.device).view(-1, 1, 1)  # fmt: skip
            indices = torch.stack([lane.order[lane.done] if lane else self.idle_order for lane in self.rows])
            losses = per_replica_loss(self.model.forward(self.params, self.x_train[indices], forward_multipliers),
                                      self.y_train[indices], train.loss)  # fmt: skip
            grads = torch.autograd.grad(losses.sum(), self.params)
            with torch.no_grad():
                for p, g, m in zip(self.params, grads, multipliers):
                    if isinstance(m, torch.Tensor):  # per lane: (-1)(g m) lr has the bits of (-m) g lr
                        p.addcmul_(g * m, lr, value=-1.0)
                    else:
                        p.addcmul_(g, lr, value=-m)
            step += 1
            done += running
            blown = ~torch.isfinite(losses) | (losses > train.max_loss)
            blown_at = torch.where((blown_at < 0) & blown & running, done, blown_at)
            active = [i for i, lane in enumerate(self.rows) if lane is not None]
            for i in active:
                self.rows[i].done += 1
            self.lane_steps += len(self.rows)
            self.replica_steps += len(active)
            due = [i for i in active if self.rows[i].done % train.eval_every == 0 or self.rows[i].done == self.rows[i].probe.steps]
            if not due:
                continue
            ended = self.check(due, losses, blown_at, forward_multipliers)
            if not ended:
                continue
            results = [(self.rows[i], [p[i].detach().clone() for p in self.params] if self.rows[i].probe.keep_params
                        else None) for i in ended]  # fmt: skip
            kept = [i for i in range(len(self.rows)) if i not in ended]
            self.stop(ended)
            if self.lanes is None:
                blown_at, done = blown_at[kept], done[kept]
            else:
                blown_at[ended], done[ended] = -1, 0
            running = torch.tensor([lane is not None for lane in self.rows], dtype=torch.bool, device=self.device)
            if any(self.rows):
                lr, multipliers, forward_multipliers = self.columns()
            for lane, params in results:
                finished(lane.probe, lane.outcome, params)

    def check(self, due: list[int], losses: torch.Tensor, blown_at: torch.Tensor, forward_multipliers: list) -> list[int]:
        """The checks of the lanes in ``due``; returns the rows whose probes ended."""
        last_loss, blown_at = losses.detach().tolist(), blown_at.tolist()
        judged = [i for i in due if self.rows[i].probe.stop_at_threshold or self.full(self.rows[i])]
        accuracy, reached, finite = self.validation_check(judged, forward_multipliers)
        ended = []
        for i in due:
            lane = self.rows[i]
            record, probe = lane.outcome, lane.probe
            record.loss.append((lane.done, float(last_loss[i])))
            if blown_at[i] >= 0:
                record.outcome, record.steps = "diverged", blown_at[i]
            elif not finite.get(i, True):
                record.outcome, record.steps = "diverged", lane.done
            else:
                if accuracy.get(i) is not None:
                    record.accuracy.append((lane.done, float(accuracy[i])))
                if reached.get(i, False) and (probe.stop_at_threshold or lane.done == probe.steps):
                    record.outcome, record.steps = "success", lane.done
                elif lane.done < probe.steps:
                    continue
            ended.append(i)
        return ended

    def full(self, lane: Lane) -> bool:
        return self.full_validation or lane.done == lane.probe.steps

    @torch.no_grad()
    def validation_check(self, judged: list[int], forward_multipliers: list) -> tuple[dict, dict, dict]:
        """Per judged row: (accuracy or None if not counted in full, reached t, logits finite), chunk by chunk.

        A row stops being counted once its verdict is certain (ceil(t N) correct answers already, or out of reach
        with the examples left) unless it is checked in full; a row that reaches t is counted to the end, so that a
        success records its exact accuracy. Fixed lanes compute every row of each chunk (the same shapes always);
        elastic ones only the rows still counted.
        """
        if not judged:
            return {}, {}, {}
        n_val = self.x_val.shape[0]
        needed = {i: math.ceil(self.rows[i].probe.threshold * n_val - 1e-9) for i in judged}
        full = {i: self.full(self.rows[i]) for i in judged}
        correct = dict.fromkeys(judged, 0)
        counted = dict.fromkeys(judged, 0)
        finite = dict.fromkeys(judged, True)
        live = list(judged)
        for start in range(0, n_val, VALIDATION_CHUNK):
            stop = min(start + VALIDATION_CHUNK, n_val)
            rows = list(range(len(self.rows))) if self.lanes is not None else live
            index = torch.tensor(rows, device=self.device)
            multipliers = [m[index] if isinstance(m, torch.Tensor) else m for m in forward_multipliers]
            logits = self.model.forward([p[index] for p in self.params] if self.lanes is None else self.params,
                                        self.x_val[start:stop], multipliers)  # fmt: skip
            hits = (logits.argmax(dim=2) == self.y_val[start:stop]).sum(dim=1).tolist()
            fine = torch.isfinite(logits).flatten(1).all(dim=1).tolist()
            position = {row: k for k, row in enumerate(rows)}
            for i in live:
                correct[i] += hits[position[i]]
                counted[i] += stop - start
                finite[i] &= fine[position[i]]
            live = [i for i in live if full[i] or (finite[i] and correct[i] + (n_val - stop) >= needed[i])]
            if not live:
                break
        accuracy = {i: correct[i] / n_val if counted[i] == n_val else None for i in judged}
        return accuracy, {i: correct[i] >= needed[i] for i in judged}, finite


def train_replicas(
    dataset,
    network: NetworkSpec | Replicas,
    train: TrainConfig,
    lrs: Sequence[float],
    seeds: Sequence[int],
    threshold: float,
    *,
    lanes: int | None = None,
    device="cpu",
    dtype: torch.dtype = torch.float32,
    init: Sequence[torch.Tensor] | None = None,
    first_step: int = 0,
    stop_at_threshold: bool = True,
    keep_params: bool = False,
    full_validation: bool = False,
) -> tuple[list[ProbeOutcome], list[torch.Tensor] | None]:
    """Train replica k = (lrs[k], seeds[k]) until it succeeds, diverges or runs out of budget; one lane pool.

    Args:
        dataset, network, train: the data, the model (a ``NetworkSpec`` or any ``Replicas``), the training.
        lrs, seeds: one learning rate and one seed per replica.
        threshold: the validation accuracy t of a success.
        lanes: fixed lanes (None: elastic); device, dtype: where and in what.
        init: parameters to start from (K replicas, laid out as ``init_params`` returns them), else fresh ones.
        first_step: where in each seed's batch order to start.
        stop_at_threshold: False trains the whole budget and judges success at its end.
        keep_params: also return every replica's final parameters (diverged ones included).
        full_validation: count every validation example at every check (for accuracy curves).

    Returns:
        The outcomes in input order, and (``keep_params``) the final parameters stacked as ``init`` lays them out.
    """
    _check_probe_inputs(lrs, seeds, threshold)
    steps = train.budget_steps(dataset.x_train.shape[0])
    probes = [Probe(float(lr), int(seed), network, steps, threshold, None if init is None else [p[k] for p in init],
                    first_step, stop_at_threshold, keep_params, tag=k)
              for k, (lr, seed) in enumerate(zip(lrs, seeds))]  # fmt: skip
    outcomes: list[ProbeOutcome | None] = [None] * len(probes)
    final: list[list[torch.Tensor] | None] = [None] * len(probes)
    queue = iter(probes)

    def finished(probe: Probe, outcome: ProbeOutcome, params) -> None:
        outcomes[probe.tag], final[probe.tag] = outcome, params

    pool = LanePool(dataset, train, lanes=lanes, device=device, dtype=dtype, full_validation=full_validation)
    pool.run(lambda: next(queue, None), finished)
    if not keep_params:
        return outcomes, None
    return outcomes, [torch.stack([final[k][j] for k in range(len(probes))]) for j in range(len(final[0]))]
