"""Algorithm 1 and the batched search against synthetic oracles whose edge is known exactly."""

import math

import pytest

from milr_core.probe import ProbeOutcome
from milr_core.search import SearchConfig, search_edges


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


@pytest.mark.parametrize("method", ["bisection", "batched"])
@pytest.mark.parametrize("edge", [0.0123, 0.37, 0.999])
def test_both_methods_find_the_exact_edge(method, edge):
    rtol = 0.01
    searches, _ = search_edges(oracle({0: edge}), [0], SearchConfig(lr_bounds=(1e-3, 1.0), rtol=rtol, method=method))
    s = searches[0]
    assert s.status == "converged"
    assert s.lo <= edge < s.hi
    assert s.hi / s.lo <= 1 + rtol
    assert s.eta_star == s.lo


def test_methods_agree_and_batched_needs_far_fewer_rounds():
    edges = {0: 0.21, 1: 0.34, 2: 0.05}
    rtol = 0.02
    bis, bis_rounds = search_edges(oracle(edges), [0, 1, 2], SearchConfig(lr_bounds=(1e-3, 10.0), rtol=rtol, method="bisection"))
    bat, bat_rounds = search_edges(oracle(edges), [0, 1, 2], SearchConfig(lr_bounds=(1e-3, 10.0), rtol=rtol, method="batched", lrs_per_round=16))
    for a, b in zip(bis, bat):
        assert abs(math.log(a.eta_star / b.eta_star)) <= math.log(1 + rtol)
    assert bat_rounds * 4 <= bis_rounds


@pytest.mark.parametrize("method", ["bisection", "batched"])
@pytest.mark.parametrize("edge", [50.0, 2e-6])
def test_bracket_is_widened_when_it_does_not_straddle_the_edge(method, edge):
    searches, _ = search_edges(oracle({0: edge}), [0], SearchConfig(lr_bounds=(1e-3, 1.0), rtol=0.05, method=method))
    s = searches[0]
    assert s.status == "converged"
    assert s.lo <= edge < s.hi


@pytest.mark.parametrize("method", ["bisection", "batched"])
def test_learning_rates_too_small_to_train_in_budget_do_not_count_as_the_edge(method):
    # Below 0.02 the network trains too slowly to reach t: those failures lie below eta*, not above it.
    searches, _ = search_edges(oracle({0: 0.4}, too_slow_below=0.02), [0], SearchConfig(lr_bounds=(1e-3, 1.0), rtol=0.02, method=method))
    s = searches[0]
    assert s.status == "converged" and s.lo <= 0.4 < s.hi


@pytest.mark.parametrize("method", ["bisection", "batched"])
@pytest.mark.parametrize("window", [(0.05, 0.17), (0.1, 0.12)])
def test_networks_wrecked_without_diverging_do_not_send_the_search_the_wrong_way(method, window):
    # Both ends of the bracket fail by budget: the low end trains too slowly, the high end kills the
    # network without a blow-up. The window of success lies between them, next to the better accuracy.
    slow, edge = window
    prober = oracle({0: edge}, too_slow_below=slow, dead_until=5.0)
    searches, _ = search_edges(prober, [0], SearchConfig(lr_bounds=(0.01, 3.0), rtol=0.02, method=method))
    s = searches[0]
    assert s.status == "converged" and s.lo <= edge < s.hi


def test_search_that_never_succeeds_says_so():
    searches, _ = search_edges(oracle({0: 0.0}, too_slow_below=1.0), [0], SearchConfig(lr_bounds=(1e-3, 1e-2), method="batched", max_widenings=2))
    assert searches[0].status == "no_success"
    assert searches[0].eta_star is None


def test_non_monotone_successes_are_kept_and_reported():
    searches, _ = search_edges(
        oracle({0: 0.1}, islands=(0.3,)), [0], SearchConfig(lr_bounds=(0.05, 0.5), rtol=0.01, lrs_per_round=32)
    )
    s = searches[0]
    assert s.lo <= 0.1 < s.hi
    assert s.non_monotone and all(abs(lr / 0.3 - 1) < 0.03 for lr in s.non_monotone)
    assert any(o.lr in s.non_monotone for _, o in s.ledger)


def test_bisection_probes_one_learning_rate_at_a_time_and_batched_many():
    bis = oracle({0: 0.2})
    search_edges(bis, [0], SearchConfig(lr_bounds=(1e-3, 1.0), method="bisection"))
    assert set(bis.calls) == {1}
    bat = oracle({0: 0.2, 1: 0.3})
    search_edges(bat, [0, 1], SearchConfig(lr_bounds=(1e-3, 1.0), method="batched", lrs_per_round=8))
    assert max(bat.calls) == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr_bounds": (1.0, 0.1)}, "inverted"),
        ({"lr_bounds": (0.0, 1.0)}, "positive"),
        ({"lr_bounds": (1e-3, float("inf"))}, "finite"),
        ({"lr_bounds": (1e-3,)}, "low, high"),
        ({"rtol": 0.0}, "rtol"),
        ({"method": "golden"}, "unknown search method"),
        ({"lrs_per_round": 1}, "lrs_per_round"),
        ({"max_widenings": -1}, "max_widenings"),
    ],
)
def test_bad_search_settings_are_refused_before_any_probe(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**kwargs)


def test_search_config_reads_yaml_lists_as_tuples():
    assert SearchConfig(lr_bounds=[0.01, 1]).lr_bounds == (0.01, 1.0)
