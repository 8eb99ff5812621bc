"""Algorithm 1, its speculative execution and the k-section search against synthetic oracles with known answers."""

import math
import random

import pytest

from milr_core.config import SearchConfig
from milr_core.probe import ProbeOutcome
from milr_core.bisection import speculation_tree
from milr_core.search import search_edges


def oracle(edges: dict[int, float], too_slow_below: float = 0.0, islands: tuple[float, ...] = (), dead_until: float = 0.0):
    """A prober whose seed s succeeds for too_slow_below <= lr <= edges[s] (and at the islands).

    Below too_slow_below a run ends its budget with an accuracy that grows with the LR; above the edge
    and up to dead_until it ends its budget at chance (dead ReLUs); above that it diverges.
    """
    calls = []

    def prober(lrs, seeds):
        calls.append(len(lrs))
        outcomes = []
        for lr, seed in zip(lrs, seeds):
            if lr < too_slow_below:
                outcome, accuracy = "budget", 0.5 + 0.3 * lr / too_slow_below
            elif lr <= edges[seed] or any(abs(lr / i - 1) < 0.03 for i in islands):
                outcome, accuracy = "success", 0.95
            elif lr <= dead_until:
                outcome, accuracy = "budget", 0.1
            else:
                outcome, accuracy = "diverged", float("nan")
            outcomes.append(ProbeOutcome(lr=lr, seed=seed, outcome=outcome, steps=1, accuracy=[(1, accuracy)]))
        return outcomes

    prober.calls = calls
    return prober


def holey_oracle(rng: random.Random, seeds: list[int]):
    """A NON-monotone prober: per seed, success on a random union of log-LR windows with holes, too slow below
    the lowest window (accuracy rising with the LR), wrecked at chance or diverged above, at random."""
    windows = {}
    for seed in seeds:
        start = rng.uniform(-3.5, 0.5)
        pieces = []
        for _ in range(rng.randint(1, 4)):
            width = rng.uniform(0.02, 0.8)
            pieces.append((start, start + width))
            start += width + rng.uniform(0.01, 0.6)
        windows[seed] = pieces

    def prober(lrs, probe_seeds):
        out = []
        for lr, seed in zip(lrs, probe_seeds):
            x = math.log10(lr)
            pieces = windows[seed]
            if any(a <= x <= b for a, b in pieces):
                outcome, accuracy = "success", 0.95
            elif x < pieces[0][0]:
                outcome, accuracy = "budget", 0.5 + 0.4 * (x + 6) / (pieces[0][0] + 6)
            elif (int(lr * 1e6) + seed) % 3:
                outcome, accuracy = "budget", 0.1 + 0.05 * ((int(lr * 1e7) % 7) / 7)
            else:
                outcome, accuracy = "diverged", float("nan")
            out.append(ProbeOutcome(lr=lr, seed=seed, outcome=outcome, steps=1 + int(lr * 100) % 50, accuracy=[(1, accuracy)]))
        return out

    return prober


def summary(searches):
    return [
        (s.seed, s.status, s.eta_star, s.lo, s.hi, s.fallback, s.widenings,
         sorted((o.lr, o.outcome) for _, o in s.ledger))
        for s in searches
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(40))
def test_speculation_returns_exactly_serial_bisection_on_non_monotone_outcomes(case):
    rng = random.Random(case)
    seeds = [0, 1, 2]
    config = SearchConfig(lr_bounds=(1e-3, 10.0), rtol=rng.choice([0.01, 0.05, 0.2]), max_widenings=3)
    prober = holey_oracle(rng, seeds)
    serial, serial_rounds = search_edges(prober, seeds, config, speculation=1)
    assert all(not s.speculative for s in serial)
    for k in (2, 3):
        fast, rounds = search_edges(prober, seeds, config, speculation=k)
        assert summary(fast) == summary(serial)
        assert rounds <= serial_rounds
    assert all(s.status in ("converged", "no_success", "no_failure") for s in serial)


def test_the_holey_oracle_succeeds_above_the_eta_star_bisection_returns():
    seen = 0
    for case in range(40):
        rng = random.Random(case)
        config = SearchConfig(rtol=0.01, probe_above=(1.5, 2.0, 3.0, 5.0))
        searches, _ = search_edges(holey_oracle(rng, [0, 1, 2]), [0, 1, 2], config)
        seen += sum(s.largest_success_above is not None for s in searches)
    assert seen > 0


def test_speculation_halves_the_rounds_at_depth_two():
    edges = {0: 0.21, 1: 0.34, 2: 0.05}
    config = SearchConfig(lr_bounds=(1e-3, 10.0), rtol=0.01)
    serial, serial_rounds = search_edges(oracle(edges), [0, 1, 2], config, speculation=1)
    fast, fast_rounds = search_edges(oracle(edges), [0, 1, 2], config, speculation=3)
    assert [s.eta_star for s in fast] == [s.eta_star for s in serial]
    assert fast_rounds * 2 < serial_rounds
    assert sum(len(s.speculative) for s in fast) > 0


def test_speculation_tree_holds_every_midpoint_of_the_next_k_steps():
    tree = speculation_tree(1.0, 16.0, 0.01, 3)
    assert len(tree) == 7 and tree[0] == 4.0 and {8.0, 2.0} <= set(tree)


@pytest.mark.parametrize("method", ["bisection", "ksection"])
@pytest.mark.parametrize("edge", [0.0123, 0.37, 0.999])
def test_both_methods_find_the_exact_edge(method, edge):
    rtol = 0.01
    searches, _ = search_edges(oracle({0: edge}), [0], SearchConfig(lr_bounds=(1e-3, 1.0), rtol=rtol, method=method))
    s = searches[0]
    assert s.status == "converged"
    assert s.lo <= edge < s.hi
    assert s.hi / s.lo <= 1 + rtol
    assert s.eta_star == s.lo


def test_bisection_is_algorithm_1_one_midpoint_per_probe_and_never_probes_the_ends_it_does_not_need():
    prober = oracle({0: 0.2})
    searches, rounds = search_edges(prober, [0], SearchConfig(lr_bounds=(1e-3, 10.0), rtol=0.05))
    probed = [o.lr for _, o in searches[0].ledger]
    assert set(prober.calls) == {1} and rounds == len(probed)
    assert 1e-3 not in probed and 10.0 not in probed  # both ends were passed by midpoints
    assert probed[0] == pytest.approx(0.1)  # the first midpoint of [1e-3, 10]


@pytest.mark.parametrize("method", ["bisection", "ksection"])
@pytest.mark.parametrize("edge", [50.0, 2e-6])
def test_bracket_is_widened_when_it_does_not_straddle_the_edge(method, edge):
    searches, _ = search_edges(oracle({0: edge}), [0], SearchConfig(lr_bounds=(1e-3, 1.0), rtol=0.05, method=method))
    s = searches[0]
    assert s.status == "converged"
    assert s.lo <= edge < s.hi
    assert s.widenings >= 1


@pytest.mark.parametrize("method", ["bisection", "ksection"])
def test_learning_rates_too_small_to_train_in_budget_do_not_count_as_the_edge(method):
    # Below 0.02 the network trains too slowly to reach t: those failures lie below eta*, not above it.
    searches, _ = search_edges(oracle({0: 0.4}, too_slow_below=0.02), [0], SearchConfig(lr_bounds=(1e-3, 1.0), rtol=0.02, method=method))
    s = searches[0]
    assert s.status == "converged" and s.lo <= 0.4 < s.hi


@pytest.mark.parametrize("method", ["bisection", "ksection"])
@pytest.mark.parametrize("window", [(0.05, 0.17), (0.1, 0.12)])
def test_networks_wrecked_without_diverging_do_not_send_the_search_the_wrong_way(method, window):
    # Both ends of the bracket fail by budget: the low end trains too slowly, the high end kills the
    # network without a blow-up. The window of success lies between them, next to the better accuracy.
    slow, edge = window
    prober = oracle({0: edge}, too_slow_below=slow, dead_until=5.0)
    searches, _ = search_edges(prober, [0], SearchConfig(lr_bounds=(0.01, 3.0), rtol=0.02, method=method))
    s = searches[0]
    assert s.status == "converged" and s.lo <= edge < s.hi
    if method == "bisection":
        assert s.fallback  # Algorithm 1's low end never trained: the fallback found the window


@pytest.mark.parametrize("method", ["bisection", "ksection"])
def test_search_that_never_succeeds_says_so(method):
    config = SearchConfig(lr_bounds=(1e-3, 1e-2), method=method, max_widenings=2)
    searches, _ = search_edges(oracle({0: 0.0}, too_slow_below=1.0), [0], config)
    assert searches[0].status == "no_success"
    assert searches[0].eta_star is None


def test_search_that_never_fails_is_censored_above():
    searches, _ = search_edges(oracle({0: 1e9}), [0], SearchConfig(lr_bounds=(0.1, 1.0), max_widenings=2))
    assert searches[0].status == "no_failure" and searches[0].eta_star is None


def test_non_monotone_successes_are_kept_and_reported():
    searches, _ = search_edges(
        oracle({0: 0.1}, islands=(0.3,)), [0], SearchConfig(lr_bounds=(0.05, 0.5), rtol=0.01, method="ksection", lrs_per_round=32)
    )
    s = searches[0]
    assert s.lo <= 0.1 < s.hi
    assert s.non_monotone and all(abs(lr / 0.3 - 1) < 0.03 for lr in s.non_monotone)


def test_probes_above_eta_star_measure_the_non_monotone_band():
    config = SearchConfig(lr_bounds=(0.01, 1.0), rtol=0.01, probe_above=(1.5, 2.9, 4.0))
    searches, _ = search_edges(oracle({0: 0.1}, islands=(0.29,)), [0], config)
    s = searches[0]
    assert s.lo <= 0.1 < s.hi
    assert [o.lr / s.eta_star for o in s.above] == pytest.approx([1.5, 2.9, 4.0])
    assert s.largest_success_above == pytest.approx(2.9 * s.eta_star)
    assert s.record()["largest_success_above"] == s.largest_success_above


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr_bounds": (1.0, 0.1)}, "inverted"),
        ({"lr_bounds": (0.0, 1.0)}, r"two numbers in \[1e-10, 1e6\]"),
        ({"lr_bounds": (1e-3, float("inf"))}, r"two numbers in \[1e-10, 1e6\]"),
        ({"lr_bounds": (1e-3,)}, "low then high"),
        ({"rtol": 0.0}, "rtol"),
        ({"method": "golden"}, "method"),
        ({"lrs_per_round": 1}, "lrs_per_round"),
        ({"max_widenings": -1}, "max_widenings"),
        ({"probe_above": (0.5,)}, "probe_above"),
    ],
)
def test_bad_search_settings_are_refused_before_any_probe(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**kwargs)


def test_search_identity_names_the_estimand_not_how_it_ran():
    assert SearchConfig(lr_bounds=[0.01, 1]).lr_bounds == (0.01, 1.0)
    assert "lrs_per_round" not in SearchConfig().identity()
    assert "lrs_per_round" in SearchConfig(method="ksection").identity()


def test_a_too_slow_midpoint_before_any_success_checks_the_low_end_at_once():
    # Below 0.5 the network trains too slowly for the budget; the window is [0.5, 2]. The first midpoint (0.1)
    # runs out of budget, so the low end (1e-3) is probed next instead of bisecting down through [1e-3, 0.1].
    prober = oracle({0: 2.0}, too_slow_below=0.5)
    searches, _ = search_edges(prober, [0], SearchConfig(lr_bounds=(1e-3, 10.0), rtol=0.05))
    s = searches[0]
    probed = [o.lr for _, o in s.ledger]
    assert probed[:2] == [pytest.approx(0.1), 1e-3] and s.fallback
    assert s.status == "converged" and s.lo <= 2.0 < s.hi
    assert not [lr for lr in probed if 1e-3 < lr < 0.1]  # no wasted probes below the first midpoint
