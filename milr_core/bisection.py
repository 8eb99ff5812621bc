"""Algorithm 1 of the paper (bisection for eta*) as a state machine over one seed's probes: it trains nothing.

**The estimand** (``method="bisection"``, the paper's Algorithm 1 with our bracket and end rules). For one
seed s, a *probe* at learning rate m trains a fresh network (seed s: the same initial weights and batch
order at every m) by constant-LR SGD and succeeds when its validation accuracy reaches t at a check
(``probe.py``; failure = divergence or the budget running out first).

1. The bracket [lo, hi] starts at ``lr_bounds``. Bisection: probe the geometric midpoint m = sqrt(lo hi);
   success sets lo = m, failure sets hi = m; repeat while hi / lo > 1 + rtol. eta* = lo.
2. Algorithm 1 never probes the ends of its bracket, but it presumes that lo trains. When bisection stops
   with lo still an unprobed end, lo is probed; when hi is still an unprobed end, hi is probed (in that
   order). A midpoint that runs out of budget (trains too slowly, or is wrecked without diverging) before
   any success has the low end probed at once, rather than bisecting down towards it: if lo trains,
   bisection goes on exactly as Algorithm 1 would; if it does not, step 4 applies.
3. Widening. If the top end succeeds, the bracket did not reach the edge: it becomes [hi, hi r]
   (r = the initial ratio hi / lo) and bisection resumes. If the bottom end diverges, the bracket becomes
   [lo / r, lo]. At most ``max_widenings`` times; then the status is ``no_failure`` (eta* >= hi: censored
   above) or ``no_success``.
4. Fallback. If no probe succeeded and the bottom end failed without diverging, the bracket's low end
   was too slow to train (or no learning rate trains): the precondition of Algorithm 1 fails. The search
   then looks for a success next to the probe with the best validation accuracy (``_zoom``: accuracy
   taken to rise, then fall, with log LR), and resumes bisection from [that success, the next failure
   above it]. If the neighbouring gaps shrink below rtol without a success, the status is ``no_success``.
   Records say ``fallback: true`` when this happened.

Success need not be monotone in the learning rate: a success above a failure is kept in the ledger and
reported (``non_monotone``); Algorithm 1 returns what its path finds, and ``probe_above`` optionally
probes fixed multiples of eta* to measure how far above it successes still occur.

**Speculation.** In the bisection phase the next k probes form a binary tree of 2^k - 1 midpoints whose
shape depends only on (lo, hi). A round probes the whole tree (``plan``), then replays serial bisection through
the outcomes (``replay``): the answer, the bracket and the ledger are exactly those of serial Algorithm 1, for
any k and any outcomes, monotone or not; k only trades compute (probes off the path, counted in
``speculative``) for sequential rounds. Other phases probe one learning rate per seed and round.
``search.py`` runs these rounds in lanes; whether the outcomes themselves are exact is the arithmetic's
question (``runtime.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from milr_core.config import SearchConfig
from milr_core.probe import ProbeOutcome

Prober = Callable[[Sequence[float], Sequence[int]], list[ProbeOutcome]]
STATUSES = ("running", "converged", "no_success", "no_failure")


def midpoint(lo: float, hi: float) -> float:
    """The geometric midpoint; one function, so that a speculative tree and its replay agree bit for bit."""
    return math.sqrt(lo * hi)


@dataclass
class SeedSearch:
    """The search for one seed: its state, eta*, the final bracket, and every probe on its path (with its round)."""

    seed: int
    lo: float
    hi: float
    status: str = "running"
    phase: str = "bisect"  # bisect | check_lo | check_hi | _zoom (the fallback) | done
    lo_probed: bool = False  # lo is a probed success (else an unprobed end of the bracket)
    hi_probed: bool = False  # hi is a probed failure
    widenings: int = 0
    fallback: bool = False
    ledger: list[tuple[int, ProbeOutcome]] = field(default_factory=list)
    speculative: list[ProbeOutcome] = field(default_factory=list)
    above: list[ProbeOutcome] = field(default_factory=list)

    @property
    def eta_star(self) -> float | None:
        return self.lo if self.status == "converged" else None

    def successes(self) -> list[float]:
        return sorted(o.lr for _, o in self.ledger if o.succeeded)

    def edge(self) -> float | None:
        """The first failure above the lowest success (failures below it trained too slowly, not too fast)."""
        successes = self.successes()
        if not successes:
            return None
        return min((o.lr for _, o in self.ledger if not o.succeeded and o.lr > successes[0]), default=None)

    @property
    def non_monotone(self) -> list[float]:
        """Learning rates on the path that succeeded although a smaller one, above the lowest success, failed."""
        edge = self.edge()
        return [lr for lr in self.successes() if edge is not None and lr > edge]

    @property
    def largest_success_above(self) -> float | None:
        """The largest of the ``probe_above`` learning rates that succeeded (None if none did or none ran)."""
        return max((o.lr for o in self.above if o.succeeded), default=None)

    def record(self) -> dict:
        """A json-serialisable summary (no ledger)."""
        return {
            "seed": self.seed,
            "status": self.status,
            "eta_star": self.eta_star,
            "bracket": [self.lo, self.hi],
            "n_probes": len(self.ledger),
            "n_rounds": len({r for r, _ in self.ledger}),
            "non_monotone": self.non_monotone,
            "fallback": self.fallback,
            "widenings": self.widenings,
            "largest_success_above": self.largest_success_above,
            "speculative_steps": sum(o.steps for o in self.speculative),
        }

    def ledger_records(self, curves: bool = False) -> list[dict]:
        """One dict per probe on the path (with its round), then the ``probe_above`` probes; curves if asked."""
        path = [{"round": r, **o.to_dict(curves)} for r, o in self.ledger]
        return path + [{"round": None, "above": True, **o.to_dict(curves)} for o in self.above]


# ----------------------------------------------------------------------------------------------------------
# Algorithm 1, serial: what to probe next and what an outcome does


def _next_lr(search: SeedSearch) -> float | None:
    """The learning rate serial Algorithm 1 probes next, None when the search is over."""
    return {"bisect": lambda: midpoint(search.lo, search.hi), "check_lo": lambda: search.lo,
            "check_hi": lambda: search.hi, "_zoom": lambda: midpoint(search.lo, search.hi),
            "done": lambda: None}[search.phase]()  # fmt: skip


def _observe(search: SeedSearch, outcome: ProbeOutcome, config: SearchConfig, round_: int) -> None:
    """Advance the search by one probe's outcome (the probe must be ``_next_lr(search)``)."""
    search.ledger.append((round_, outcome))
    success = outcome.succeeded
    if search.phase == "bisect":
        if success:
            search.lo, search.lo_probed = outcome.lr, True
        else:
            search.hi, search.hi_probed = outcome.lr, True
            if outcome.outcome == "budget" and not search.lo_probed:  # too slow, or wrecked: is lo trainable?
                search.phase = "check_lo"
                return
    elif search.phase == "check_lo":
        if success:
            search.lo_probed = True
        elif outcome.outcome == "diverged":
            widen(search, config, down=True)
        else:
            search.fallback = True
            _zoom(search, config)
            return
    elif search.phase == "check_hi":
        if success:
            widen(search, config, down=False)
        else:
            search.hi_probed = True
    elif search.phase == "_zoom":
        if success:  # a success at last: Algorithm 1 resumes from it and the next failure above it
            above = [o.lr for _, o in search.ledger if o.lr > outcome.lr]
            search.lo, search.lo_probed = outcome.lr, True
            search.hi, search.hi_probed = (min(above), True) if above else (outcome.lr * ratio_of(config), False)
            search.phase = "bisect"
        else:
            _zoom(search, config)
            return
    _settle(search, config)


def _settle(search: SeedSearch, config: SearchConfig) -> None:
    """After an outcome: keep bisecting, check an unprobed end, or stop."""
    if search.status != "running":
        search.phase = "done"
    elif search.hi / search.lo > 1 + config.rtol:
        search.phase = "bisect"
    elif not search.lo_probed:
        search.phase = "check_lo"
    elif not search.hi_probed:
        search.phase = "check_hi"
    else:
        search.status, search.phase = "converged", "done"


def ratio_of(config: SearchConfig) -> float:
    return config.lr_bounds[1] / config.lr_bounds[0]


def widen(search: SeedSearch, config: SearchConfig, down: bool) -> None:
    """The bracket did not straddle the edge: move it by its initial ratio, or give up (censored)."""
    search.widenings += 1
    if search.widenings > config.max_widenings:
        search.status = "no_success" if down else "no_failure"
        return
    r = ratio_of(config)
    if down:
        search.lo, search.hi, search.lo_probed, search.hi_probed = search.lo / r, search.lo, False, True
    else:
        search.lo, search.hi, search.lo_probed, search.hi_probed = search.hi, search.hi * r, True, False


def zoom_target(search: SeedSearch, config: SearchConfig) -> tuple[str, float, float]:
    """Where to look for a success when none was found yet: ("gap" | "up" | "down" | "none", lo, hi).

    A failure that ran out of budget may have trained too slowly (a small LR) or been wrecked without
    diverging (a large LR: dead ReLUs, chance accuracy), so its outcome alone does not say on which side
    of the success window it lies. Accuracy does: taken to rise, then fall, with log LR, the window lies
    next to the best probe, in the wider gap to its neighbours ("gap"). If the best probe is the largest
    LR probed, the bracket moves up ("up"); if it is the smallest and its gap is already narrow, down
    ("down"); once both gaps around an interior best probe are narrower than rtol, no LR reaches the
    threshold at this resolution ("none").
    """
    probes = sorted((o.lr, o.final_accuracy if o.outcome == "budget" else -1.0) for _, o in search.ledger)
    scores = [-1.0 if math.isnan(score) else score for _, score in probes]
    best_index = max(range(len(probes)), key=lambda i: scores[i])
    best = probes[best_index][0]
    lower = probes[best_index - 1][0] if best_index > 0 else None
    upper = probes[best_index + 1][0] if best_index + 1 < len(probes) else None
    if upper is None:
        return "up", best, best * ratio_of(config)
    gaps = [(upper / best, best, upper)] + ([(best / lower, lower, best)] if lower is not None else [])
    widest, lo, hi = max(gaps)
    if widest > 1 + config.rtol:
        return "gap", lo, hi
    if lower is None:
        return "down", best / ratio_of(config), best
    return "none", lo, hi


def _zoom(search: SeedSearch, config: SearchConfig) -> None:
    """The fallback's next bracket (``zoom_target``); moving it up or down counts as a widening."""
    where, search.lo, search.hi = zoom_target(search, config)
    search.phase = "_zoom"
    if where in ("up", "down"):
        search.widenings += 1
    if where == "none" or search.widenings > config.max_widenings:
        search.status, search.phase = "no_success", "done"


# ----------------------------------------------------------------------------------------------------------
# Speculative execution of Algorithm 1


def speculation_tree(lo: float, hi: float, rtol: float, depth: int) -> list[float]:
    """The midpoints serial bisection could probe in its next ``depth`` steps from [lo, hi], whatever the outcomes."""
    if depth == 0 or hi / lo <= 1 + rtol:
        return []
    m = midpoint(lo, hi)
    return [m] + speculation_tree(m, hi, rtol, depth - 1) + speculation_tree(lo, m, rtol, depth - 1)


def plan(search: SeedSearch, config: SearchConfig, k: int) -> list[float]:
    """This round's learning rates for one seed: the speculation tree in the bisection phase, else the next probe."""
    if search.phase == "bisect":
        return speculation_tree(search.lo, search.hi, config.rtol, k)
    lr = _next_lr(search)
    return [] if lr is None else [lr]


def replay(search: SeedSearch, outcomes: dict[float, ProbeOutcome], config: SearchConfig, round_: int) -> None:
    """Serial Algorithm 1 through this round's outcomes; probes it does not reach are speculative."""
    used = set()
    while search.phase != "done" and (lr := _next_lr(search)) in outcomes and lr not in used:
        used.add(lr)
        _observe(search, outcomes[lr], config, round_)
        if search.phase != "bisect":
            break  # an end check or the fallback comes next: its probe is in a later round
    search.speculative += [o for lr, o in outcomes.items() if lr not in used]


def window_prober(windows: Sequence[tuple[float, float]]) -> Prober:
    """A synthetic prober that trains nothing: a probe succeeds inside any of ``windows`` (learning-rate
    intervals, holes allowed), runs out of budget below the first, and diverges elsewhere above it.

    It shows (chapter 1) and tests what the search does with non-monotone outcomes.
    """
    lowest = min(lo for lo, _ in windows)

    def prober(lrs: Sequence[float], seeds: Sequence[int]) -> list[ProbeOutcome]:
        outcomes = []
        for lr, seed in zip(lrs, seeds):
            inside = any(lo <= lr <= hi for lo, hi in windows)
            outcome = "success" if inside else "budget" if lr < lowest else "diverged"
            accuracy = [(1, 0.95 if inside else 0.5 * lr / lowest)] if outcome != "diverged" else []
            outcomes.append(ProbeOutcome(lr=float(lr), seed=int(seed), outcome=outcome, steps=1, accuracy=accuracy))
        return outcomes

    return prober
