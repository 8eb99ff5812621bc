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
from dataclasses import dataclass, field, replace

import torch

from milr_core.bisection import SeedSearch
from milr_core.config import LateConfig, Run, SearchConfig, SharpnessConfig, TrainConfig
from milr_core.model import init_params
from milr_core.probe import LanePool, Probe, train_replicas
from milr_core.runtime import torch_dtype
from milr_core.search import Driven, EtaStarResult, drive, find_eta_star
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

    def records(self) -> list[tuple[dict, list[dict]]]:
        """(result, ledger) per seed, as a result store keeps them."""
        return [(self.seed_record(s.seed), self.seed_ledger(s.seed)) for s in self.eta_star.per_seed]

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


def _suffixed(record: dict, suffix: str) -> dict:
    return {f"{key}_{suffix}": value for key, value in record.items() if key != "per_layer"}


def find_late_max_lr(
    run: Run,
    train: TrainConfig = TrainConfig(),
    search: SearchConfig = SearchConfig(),
    late: LateConfig = LateConfig(),
    sharpness: SharpnessConfig = SharpnessConfig(),
) -> LateResult:
    """eta* and the largest LR that a network pretrained at ``base_fraction * eta*`` survives, per seed.

    Args:
        run: the network, data, seeds, threshold and how to compute (``config.Run``); the threshold is shared.
        train, search: how probes train and how both learning rates are searched (the same for both).
        late: the pretraining and the late probes (``config.LateConfig``).
        sharpness: how lambda_1 is measured at theta_0 and theta_T (with ``late.sharpness``).

    Returns:
        A ``LateResult``: eta*, the late searches, the pretraining LR and accuracy, the sharpness at both ends.
    """
    start = time.perf_counter()
    eta = find_eta_star(run, train, search)
    network, dataset, dtype = run.network, run.dataset, torch_dtype(run.dtype)
    trained = [s for s in eta.per_seed if s.eta_star is not None]
    base_lrs = {s.seed: late.base_fraction * s.eta_star for s in trained}
    states: dict[int, list[torch.Tensor]] = {}
    pretrain_accuracy: dict[int, float] = {}
    if trained:
        outcomes, params = train_replicas(
            dataset, network, replace(train, max_steps=late.pretrain_steps), [base_lrs[s.seed] for s in trained],
            [s.seed for s in trained], run.threshold, lanes=run.lanes, device=run.device, dtype=dtype,
            stop_at_threshold=False, keep_params=True,
        )  # fmt: skip
        for row, (seed_search, outcome) in enumerate(zip(trained, outcomes)):
            if outcome.outcome != "diverged":
                states[seed_search.seed] = [p[row] for p in params]
                pretrain_accuracy[seed_search.seed] = outcome.final_accuracy

    measured: dict[int, dict] = {}
    if late.sharpness:
        x, y = training_subset(dataset.x_train, dataset.y_train, sharpness.subset_size, sharpness.subset_seed)
        x, y = x.to(device=run.device, dtype=dtype), y.to(run.device)
        for seed in run.seeds:
            at_init = sharpness_of(network, init_params(network, [seed], dtype, run.device), x, y, sharpness, seed)
            measured[seed] = _suffixed(at_init, "init")
            if seed in states:
                at_t = sharpness_of(network, [p[None] for p in states[seed]], x, y, sharpness, seed)
                measured[seed] |= _suffixed(at_t, "T")

    def probe(lr: float, seed: int) -> Probe:
        return Probe(lr, seed, network, late.late_steps, run.threshold, init=states[seed], first_step=late.pretrain_steps,
                     stop_at_threshold=False)  # fmt: skip

    searches = [Driven(SeedSearch(seed, *search.lr_bounds), search, probe) for seed in states]
    if searches:
        pool = LanePool(dataset, replace(train, max_steps=late.late_steps), lanes=run.lanes, device=run.device, dtype=dtype)
        drive(pool, searches, run.speculation, progress=run.progress)
    return LateResult(eta, [d.search for d in searches], base_lrs, pretrain_accuracy, measured, time.perf_counter() - start)
