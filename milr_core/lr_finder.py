"""The learning-rate range test (Smith 2017, "Cyclical learning rates for training neural networks", section 3.3), as
fastai's ``Learner.lr_find`` and torch-lr-finder's ``LRFinder.range_test`` run it, trained by the engine.

The protocol (``config.RangeTestConfig``; its defaults are fastai's): from a fresh network, ``steps`` minibatch SGD
steps whose learning rate grows exponentially, step s (from 0) at lr_min (lr_max / lr_min)^(s / steps); the
training-batch loss of each step (taken before its update, as both packages record it) smoothed by a debiased EMA,
smoothed_i = a_i / (1 - beta^(i+1)), a_i = beta a_(i-1) + (1 - beta) loss_i (fastai's ``AvgSmoothLoss``); the test
stops at the first step whose smoothed loss exceeds ``diverge_factor`` x the smallest smoothed loss so far (that step
recorded, as fastai records it). The suggestions read the smoothed curve without its first ``skip_start`` and last
``skip_end`` recorded steps, cut at its first non-finite value (fastai cuts at its first NaN), by fastai's rules:

- ``steep``: the rate where the smoothed loss falls fastest per unit of log rate (fastai's ``steep``, the left
  point of the steepest finite difference; torch-lr-finder suggests the same point by ``np.gradient``);
- ``minimum``: the rate of the smallest smoothed loss, divided by 10 (fastai's ``minimum``);
- ``valley``: fastai's ``valley``: the longest run of decreasing losses, and a point 1/3 + 1/6 of the way along it
  (its loop reproduced literally, so that it suggests what fastai suggests).

**Trained through the engine.** Each seed is one ``probe.Probe`` with ``schedule`` (the ramp) in one ``LanePool``
with ``eval_every = 1``, so that its outcome records the training loss of every step. The engine ends a lane at its
own divergence bound (a non-finite loss, or one above ``train.max_loss``) or at the ramp's end; the EMA stop is
applied to the recorded curve, which up to that stop is the curve fastai records (its rule reads only the curve so
far). ``steps_used`` is where the protocol stops, ``steps_trained`` what the engine trained (>= steps_used): the
cost of the protocol counts the first, the wall time measures the second. A lane that reaches the ramp's end is
judged on the validation set once, as every probe is at the end of its budget; that pass is not the protocol's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from milr_core.config import RangeTestConfig, Run, TrainConfig
from milr_core.probe import LanePool, Probe, ProbeOutcome
from milr_core.runtime import torch_dtype

SUGGESTIONS = ("steep", "minimum", "valley")


def ramp(config: RangeTestConfig) -> Callable[[int], float]:
    """The schedule of a probe at lr = lr_min: step s trains at lr_min (lr_max / lr_min)^(s / steps)."""
    ratio, steps = config.lr_max / config.lr_min, config.steps
    return lambda step: ratio ** (step / steps)


def smooth(losses: Sequence[float], beta: float) -> list[float]:
    """fastai's debiased exponential moving average of ``losses`` (beta 0: the losses themselves)."""
    average, out = 0.0, []
    for count, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**count))
    return out


def stop_index(smoothed: Sequence[float], factor: float) -> int | None:
    """The first step whose smoothed loss exceeds ``factor`` x the smallest so far, or is NaN; None if none does."""
    best = math.inf
    for i, value in enumerate(smoothed):
        best = min(best, value)
        if math.isnan(value) or value > factor * best:
            return i
    return None


# ----------------------------------------------------------------------------------------------------------
# fastai's suggestion rules, on the trimmed smoothed curve


def steep(lrs: Sequence[float], losses: Sequence[float]) -> float:
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def minimum(lrs: Sequence[float], losses: Sequence[float]) -> float:
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's ``valley``, loop for loop (``max_start`` is set when a run first becomes the longest)."""
    n, max_start, max_end = len(losses), 0, 0
    runs = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and runs[i] < runs[j] + 1:
                runs[i] = runs[j] + 1
            if runs[max_end] < runs[i]:
                max_end, max_start = i, i - runs[i]
    sections = (max_end - max_start) / 3
    return lrs[max_start + int(sections) + int(sections / 2)]


RULES: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "steep": steep, "minimum": minimum, "valley": valley,
}  # fmt: skip


def suggest(lrs: Sequence[float], smoothed: Sequence[float], config: RangeTestConfig) -> dict[str, float | None]:
    """Each rule's suggestion on the curve trimmed as fastai trims it; None where fewer than 2 points remain."""
    kept = slice(config.skip_start, len(lrs) - config.skip_end)
    lrs, losses = list(lrs[kept]), list(smoothed[kept])
    finite = next((i for i, value in enumerate(losses) if not math.isfinite(value)), len(losses))
    lrs, losses = lrs[:finite], losses[:finite]
    return {name: rule(lrs, losses) if len(losses) >= 2 else None for name, rule in RULES.items()}


# ----------------------------------------------------------------------------------------------------------
# one seed's test, read off its probe


@dataclass
class RangeTest:
    """One seed's range test: the recorded curve up to the protocol's stop, why it stopped, the suggestions."""

    seed: int
    lrs: list[float]  # the learning rate of each recorded step
    losses: list[float]  # its training-batch loss, before its update
    smoothed: list[float]
    stop: str  # "diverged" (the EMA rule), "engine" (the engine's divergence bound first) or "end" (the ramp's)
    steps_trained: int
    suggestions: dict[str, float | None]
    batch_size: int
    wall_time_s: float  # the lane pool's, shared equally by the seeds it trained

    @property
    def steps_used(self) -> int:
        return len(self.lrs)

    def record(self) -> dict:
        """The summary a result store keeps (prefixed ``range_``): suggestions, stop, steps, passes, wall time."""
        examples = self.steps_used * self.batch_size
        return {**{f"range_{name}": value for name, value in self.suggestions.items()}, "range_stop": self.stop,
                "range_steps_used": self.steps_used, "range_steps_trained": self.steps_trained,
                "range_forward_examples": examples, "range_backward_examples": examples,
                "range_wall_time_s": self.wall_time_s}  # fmt: skip

    def curve(self) -> dict:
        """The curve, as a ledger entry."""
        return {"protocol": "range_test", "seed": self.seed, "lrs": self.lrs, "losses": self.losses,
                "smoothed": self.smoothed, "stop": self.stop}  # fmt: skip


def _read_test(outcome: ProbeOutcome, config: RangeTestConfig, batch_size: int, wall_time_s: float) -> RangeTest:
    """The protocol's view of one probe's outcome: its curve cut at the EMA stop, and the suggestions."""
    schedule = ramp(config)
    lrs = [config.lr_min * schedule(step - 1) for step, _ in outcome.loss]
    losses = [loss for _, loss in outcome.loss]
    smoothed = smooth(losses, config.smoothing)
    stop = stop_index(smoothed, config.diverge_factor)
    if stop is not None:
        lrs, losses, smoothed, why = lrs[: stop + 1], losses[: stop + 1], smoothed[: stop + 1], "diverged"
    else:
        why = "engine" if outcome.outcome == "diverged" else "end"
    return RangeTest(outcome.seed, lrs, losses, smoothed, why, outcome.steps, suggest(lrs, smoothed, config),
                     batch_size, wall_time_s)  # fmt: skip


def lr_range_test(run: Run, train: TrainConfig, config: RangeTestConfig = RangeTestConfig()) -> list[RangeTest]:
    """The LR range test of ``run.network`` (any ``probe.Replicas``) on ``run.dataset``, one per seed of ``run``.

    Args:
        run: the network, data, seeds and how to compute (``config.Run``; the threshold only judges the one
            validation check a lane that reaches the ramp's end gets, which the test does not read).
        train: batch size, loss and the engine's divergence bound (the check interval is set to 1 here).
        config: the ramp, smoothing, stop and trimming (``config.RangeTestConfig``).

    Returns:
        One ``RangeTest`` per seed, in the order of ``run.seeds``.
    """
    every_step = dataclasses.replace(train, eval_every=1)
    probes = [Probe(config.lr_min, seed, run.network, config.steps, run.threshold, stop_at_threshold=False,
                    schedule=ramp(config), tag=seed) for seed in run.seeds]  # fmt: skip
    outcomes: dict[int, ProbeOutcome] = {}
    queue = iter(probes)
    pool = LanePool(run.dataset, every_step, lanes=run.lanes, device=run.device, dtype=torch_dtype(run.dtype))
    began = time.perf_counter()
    pool.run(lambda: next(queue, None), lambda probe, outcome, _: outcomes.__setitem__(probe.tag, outcome))
    share = (time.perf_counter() - began) / len(probes)
    return [_read_test(outcomes[seed], config, train.batch_size, share) for seed in run.seeds]
