"""The maximum learning rate later in training, set against eta* (the paper's claim (b)), with the sharpness at both.

The paper says eta* "behaves differently from the maximum learning rate later in training" without a
protocol we can read, so this one is ours (``config.LateConfig``). For each seed:

1. eta* of the fresh network (Algorithm 1, as everywhere else);
2. pretraining: the fresh network trains at ``base_fraction * eta*`` for ``pretrain_steps`` steps (the whole
   budget, not stopping at the threshold), giving a trained state theta_T;
3. the late maximum LR: the same search as for eta*, but each probe continues from theta_T (with the
   batches that follow the pretraining ones) for ``late_steps`` steps, and succeeds when it has not
   diverged and still has validation accuracy >= t at the end;
4. with ``sharpness``: lambda_1 and lambda_1_eff (``sharpness.py``) at theta_0 and at theta_T, on the
   sharpness section's subset, so that eta* x lambda_1(theta_0) can be set against late x lambda_1(theta_T):
   prior work ties the largest stable learning rate later in training to 2 / lambda_1 there (the edge of
   stability), and the paper finds eta* and lambda_1 at initialisation "not inversely related".

Both learning rates use the same threshold, tolerance and search, so their ratio isolates what training
did to the largest usable learning rate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from milr_core.config import LateConfig, SearchConfig, SharpnessConfig, TrainConfig
from milr_core.model import init_params
from milr_core.network import NetworkSpec
from milr_core.probe import ProbeOutcome, train_replicas
from milr_core.search import EtaStarResult, SeedSearch, find_eta_star, search_edges
from milr_core.sharpness import sharpness_of, training_subset

@dataclass
class LateResult:
    """eta* and the late maximum LR per seed, with the pretraining state's accuracy, sharpness and both ledgers."""

    eta_star: EtaStarResult
    late: list[SeedSearch]
    base_lrs: dict[int, float]
    pretrain_accuracy: dict[int, float]
    sharpness: dict[int, dict] = field(default_factory=dict)  # seed -> {"<field>_init": ..., "<field>_T": ...}
    wall_time_s: float = 0.0

    def seed_ledger(self, seed: int) -> list[dict]:
        """Both searches' probes of one seed, each tagged with its phase ("initial" or "late")."""
        late = [s for s in self.late if s.seed == seed]
        initial = [{"phase": "initial", **r} for r in self.eta_star.seed_result(seed).ledger_records()]
        return initial + [{"phase": "late", **r} for s in late for r in s.ledger_records()]

    def seed_record(self, seed: int) -> dict:
        search = self.eta_star.seed_result(seed)
        late = next((s for s in self.late if s.seed == seed), None)
        late_lr = late.eta_star if late else None
        return {
            "seed": seed,
            "eta_star": search.eta_star,
            "status": search.status,
            "base_lr": self.base_lrs.get(seed),
            "pretrain_accuracy": self.pretrain_accuracy.get(seed),
            "late_max_lr": late_lr,
            "late_status": late.status if late else "no_eta_star",
            "late_bracket": [late.lo, late.hi] if late else None,
            "ratio": late_lr / search.eta_star if late_lr and search.eta_star else None,
            **self.sharpness.get(seed, {}),
        }


def suffixed(record: dict, suffix: str) -> dict:
    return {f"{key}_{suffix}": value for key, value in record.items() if key != "per_layer"}


def find_late_max_lr(
    dataset,
    net: NetworkSpec,
    train: TrainConfig = TrainConfig(),
    search: SearchConfig = SearchConfig(),
    late: LateConfig = LateConfig(),
    sharpness: SharpnessConfig = SharpnessConfig(),
    *,
    threshold: float | None = None,
    seeds: Sequence[int] = (0,),
    speculation: int = 1,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> LateResult:
    """eta* and the largest LR that a network pretrained at ``base_fraction * eta*`` survives, per seed."""
    start = time.perf_counter()
    eta = find_eta_star(dataset, net, train, search, threshold=threshold, seeds=seeds, speculation=speculation,
                        device=device, dtype=dtype, progress=progress)  # fmt: skip
    threshold = eta.threshold
    trained = [s for s in eta.per_seed if s.eta_star is not None]
    base_lrs = {s.seed: late.base_fraction * s.eta_star for s in trained}
    states: dict[int, list[torch.Tensor]] = {}
    pretrain_accuracy: dict[int, float] = {}
    if trained:
        outcomes, params = train_replicas(
            dataset, net, replace(train, max_steps=late.pretrain_steps), [base_lrs[s.seed] for s in trained],
            [s.seed for s in trained], threshold, device=device, dtype=dtype, stop_at_threshold=False, keep_params=True,
        )  # fmt: skip
        for row, (seed_search, outcome) in enumerate(zip(trained, outcomes)):
            if outcome.outcome != "diverged":
                states[seed_search.seed] = [p[row] for p in params]
                pretrain_accuracy[seed_search.seed] = outcome.final_accuracy

    measured: dict[int, dict] = {}
    if late.sharpness:
        x, y = training_subset(dataset.x_train, dataset.y_train, sharpness.subset_size, sharpness.subset_seed)
        x, y = x.to(device=device, dtype=dtype), y.to(device)
        for seed in seeds:
            at_init = sharpness_of(net, init_params(net, [seed], dtype, device), x, y, sharpness, seed)
            measured[seed] = suffixed(at_init, "init")
            if seed in states:
                at_t = sharpness_of(net, [p[None] for p in states[seed]], x, y, sharpness, seed)
                measured[seed] |= suffixed(at_t, "T")

    late_train = replace(train, max_steps=late.late_steps)

    def prober(lrs: Sequence[float], probe_seeds: Sequence[int]) -> list[ProbeOutcome]:
        init = [torch.stack(tensors) for tensors in zip(*(states[s] for s in probe_seeds))]
        return train_replicas(
            dataset, net, late_train, lrs, probe_seeds, threshold, device=device, dtype=dtype, init=init,
            first_step=late.pretrain_steps, stop_at_threshold=False,
        )[0]  # fmt: skip

    searches = search_edges(prober, list(states), search, speculation=speculation, progress=progress)[0] if states else []
    return LateResult(eta, searches, base_lrs, pretrain_accuracy, measured, time.perf_counter() - start)
