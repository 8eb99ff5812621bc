"""The maximum stable learning rate later in training, set against eta* (the paper's claim (b)).

The paper says eta* "behaves differently from the maximum learning rate later in training" without
a protocol we can read, so this one is ours. For each seed:

1. eta* of the fresh network (batched search, as everywhere else);
2. pretraining: the fresh network trains at ``base_fraction * eta*`` for ``pretrain_steps`` steps
   (the whole budget, not stopping at the threshold), giving a trained state theta_T;
3. the late maximum LR: the same search as for eta*, but each probe continues from theta_T (with
   the batches that follow the pretraining ones) for ``late_steps`` steps, and succeeds when it has
   not diverged and still has validation accuracy >= t at the end.

Both numbers use the same threshold, tolerance and search, so their ratio isolates what training
did to the largest usable learning rate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from milr_core.model import NetworkSpec
from milr_core.probe import ProbeOutcome, TrainConfig, train_replicas
from milr_core.search import EtaStarResult, SearchConfig, SeedSearch, find_eta_star, search_edges


@dataclass
class LateResult:
    """eta* and the late maximum LR per seed, with the pretraining state's accuracy and both ledgers."""

    eta_star: EtaStarResult
    late: list[SeedSearch]
    base_lrs: dict[int, float]
    pretrain_accuracy: dict[int, float]
    wall_time_s: float

    def seed_ledger(self, seed: int) -> list[dict]:
        """Both searches' probes of one seed, each tagged with its phase ("initial" or "late")."""
        late = [s for s in self.late if s.seed == seed]
        initial = [{"phase": "initial", **r} for r in self.eta_star.seed_result(seed).ledger_records()]
        return initial + [{"phase": "late", **r} for s in late for r in s.ledger_records()]

    def seed_record(self, seed: int) -> dict:
        eta = self.eta_star.seed_result(seed).eta_star
        late = next((s for s in self.late if s.seed == seed), None)
        late_lr = late.eta_star if late else None
        return {
            "seed": seed,
            "eta_star": eta,
            "base_lr": self.base_lrs.get(seed),
            "pretrain_accuracy": self.pretrain_accuracy.get(seed),
            "late_max_lr": late_lr,
            "late_status": late.status if late else "no_eta_star",
            "late_bracket": [late.lo, late.hi] if late else None,
            "ratio": late_lr / eta if late_lr and eta else None,
        }


def validate_late_inputs(base_fraction: float, pretrain_steps: int, late_steps: int) -> None:
    if not 0 < base_fraction <= 1:
        raise ValueError(f"base_fraction must lie in (0, 1], got {base_fraction}")
    if pretrain_steps < 1 or late_steps < 1:
        raise ValueError(f"pretrain_steps and late_steps must be >= 1, got {pretrain_steps}, {late_steps}")


def find_late_max_lr(
    dataset,
    net: NetworkSpec,
    train: TrainConfig = TrainConfig(),
    search: SearchConfig = SearchConfig(),
    *,
    threshold: float | None = None,
    seeds: Sequence[int] = (0,),
    base_fraction: float = 0.5,
    pretrain_steps: int = 1000,
    late_steps: int = 200,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> LateResult:
    """eta* and the largest LR that a network pretrained at ``base_fraction * eta*`` survives, per seed."""
    validate_late_inputs(base_fraction, pretrain_steps, late_steps)
    start = time.perf_counter()
    common = dict(threshold=threshold, seeds=seeds, device=device, dtype=dtype, progress=progress)
    eta = find_eta_star(dataset, net, train, search, **common)
    threshold = eta.threshold
    trained = [s for s in eta.per_seed if s.eta_star is not None]
    base_lrs = {s.seed: base_fraction * s.eta_star for s in trained}
    states: dict[int, list[torch.Tensor]] = {}
    pretrain_accuracy: dict[int, float] = {}
    if trained:
        outcomes, params = train_replicas(
            dataset,
            net,
            replace(train, max_steps=pretrain_steps),
            [base_lrs[s.seed] for s in trained],
            [s.seed for s in trained],
            threshold,
            device=device,
            dtype=dtype,
            stop_at_threshold=False,
            keep_params=True,
        )
        for row, (seed_search, outcome) in enumerate(zip(trained, outcomes)):
            states[seed_search.seed] = [p[row] for p in params]
            pretrain_accuracy[seed_search.seed] = outcome.final_accuracy

    late_train = replace(train, max_steps=late_steps)

    def prober(lrs: Sequence[float], probe_seeds: Sequence[int]) -> list[ProbeOutcome]:
        init = [torch.stack(tensors) for tensors in zip(*(states[s] for s in probe_seeds))]
        return train_replicas(
            dataset,
            net,
            late_train,
            lrs,
            probe_seeds,
            threshold,
            device=device,
            dtype=dtype,
            init=init,
            first_step=pretrain_steps,
            stop_at_threshold=False,
        )[0]

    late, _ = search_edges(prober, list(states), search, progress=progress) if states else ([], 0)
    return LateResult(eta, late, base_lrs, pretrain_accuracy, time.perf_counter() - start)
