"""The batched training probe against K separate single-LR runs, and eta* on the real two-Gaussian task."""

import math

import pytest
import torch

from milr_core.data import load_dataset
from milr_core.model import NetworkSpec
from milr_core.probe import TrainConfig, run_probe
from milr_core.search import SearchConfig, find_eta_star


@pytest.fixture(scope="module")
def gaussians():
    return load_dataset("gaussians", dim=8)


def spec_for(dataset, depth=2, width=16, **kwargs):
    return NetworkSpec(depth=depth, width=width, in_dim=dataset.in_dim, out_dim=dataset.n_classes, **kwargs)


def test_k_replica_probe_reproduces_k_single_runs_in_float64(gaussians):
    net = spec_for(gaussians, depth=3, width=12)
    # threshold 0.999 is never reached, so every replica trains for the whole budget (or diverges)
    train = TrainConfig(batch_size=32, max_steps=40, eval_every=1)
    lrs, seeds = [0.01, 0.05, 0.2, 0.05, 30.0], [0, 0, 0, 1, 1]
    batched = run_probe(gaussians, net, train, lrs, seeds, threshold=0.999, dtype=torch.float64)
    assert [o.outcome for o in batched].count("diverged") == 1  # the huge LR diverges and leaves the batch
    for lr, seed, together in zip(lrs, seeds, batched):
        alone = run_probe(gaussians, net, train, [lr], [seed], threshold=0.999, dtype=torch.float64)[0]
        assert (together.outcome, together.steps) == (alone.outcome, alone.steps)
        assert len(together.loss) == len(alone.loss) > 0
        for (s1, l1), (s2, l2) in zip(together.loss, alone.loss):
            assert s1 == s2 and abs(l1 - l2) <= 1e-10 * max(1.0, abs(l2))
        assert [step for step, _ in together.accuracy] == [step for step, _ in alone.accuracy]
        assert [acc for _, acc in together.accuracy] == pytest.approx([acc for _, acc in alone.accuracy], abs=1e-12)


def test_replica_stops_when_it_reaches_the_threshold(gaussians):
    net = spec_for(gaussians)
    train = TrainConfig(batch_size=64, max_steps=300, eval_every=5)
    slow, good = run_probe(gaussians, net, train, [1e-5, 0.1], [0, 0], threshold=0.8)
    assert good.outcome == "success" and good.final_accuracy >= 0.8 and good.steps < 300
    assert good.steps % 5 == 0
    assert slow.outcome == "budget" and slow.steps == 300
    record = slow.to_dict()  # what a store keeps: the ends of the curves, not the curves
    assert record["final_accuracy"] == slow.accuracy[-1][1] and record["final_loss"] == slow.loss[-1][1]
    assert record["best_accuracy"] == max(acc for _, acc in slow.accuracy) and "accuracy" not in record


def test_same_seed_gives_the_same_eta_star_and_seeds_are_independent_of_batching(gaussians):
    net = spec_for(gaussians)
    train = TrainConfig(batch_size=64, max_steps=150, eval_every=10)
    search = SearchConfig(lr_bounds=(0.01, 1.0), rtol=0.05, lrs_per_round=6)
    together = find_eta_star(gaussians, net, train, search, seeds=[0, 1])
    again = find_eta_star(gaussians, net, train, search, seeds=[0, 1])
    alone = find_eta_star(gaussians, net, train, search, seeds=[1])
    assert [s.eta_star for s in together.per_seed] == [s.eta_star for s in again.per_seed]
    assert together.seed_result(1).eta_star == alone.seed_result(1).eta_star


def test_eta_star_on_the_gaussian_task_separates_success_from_failure(gaussians):
    net = spec_for(gaussians)
    train = TrainConfig(batch_size=64, max_steps=150, eval_every=10)
    threshold = gaussians.meta["default_threshold"]
    result = find_eta_star(gaussians, net, train, SearchConfig(lr_bounds=(0.01, 1.0), rtol=0.05), seeds=[0])
    search = result.per_seed[0]
    assert search.status == "converged"
    assert search.hi / search.lo <= 1.05
    below, above = run_probe(gaussians, net, train, [search.lo, search.hi], [0, 0], threshold)
    assert below.succeeded and not above.succeeded
    bisection = find_eta_star(gaussians, net, train, SearchConfig("bisection", (0.01, 1.0), 0.05), seeds=[0])
    if not search.non_monotone:  # on a monotone ledger both methods bracket the same edge
        assert abs(math.log(bisection.median / result.median)) <= math.log(1.05) * 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ds: spec_for(ds, depth=0), "depth"),
        (lambda ds: spec_for(ds, width=0), "width"),
        (lambda ds: run_probe(ds, spec_for(ds), TrainConfig(), [0.1], [0], threshold=1.0), "threshold"),
        (lambda ds: run_probe(ds, spec_for(ds), TrainConfig(), [-0.1], [0], threshold=0.8), "positive"),
        (lambda ds: SearchConfig(lr_bounds=(1.0, 0.1)), "inverted"),
        (lambda ds: find_eta_star(ds, spec_for(ds), threshold=0.0), "threshold"),
        (lambda ds: TrainConfig(batch_size=0), "batch_size"),
        (lambda ds: TrainConfig(loss="hinge"), "unknown loss"),
    ],
)
def test_bad_input_gives_one_clear_error(gaussians, make, message):
    with pytest.raises(ValueError, match=message):
        make(gaussians)
