"""The batched training probe against K separate single-LR runs, and eta* on the real two-Gaussian task."""

import pytest
import torch

from milr_core.config import SearchConfig, TrainConfig
from milr_core.data import load_dataset
from milr_core.network import NetworkSpec
from milr_core.probe import train_replicas
from milr_core.search import find_eta_star


def run_probe(dataset, net, train, lrs, seeds, threshold, **options):
    return train_replicas(dataset, net, train, lrs, seeds, threshold, **options)[0]


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
    batched = run_probe(gaussians, net, train, lrs, seeds, threshold=0.999, dtype=torch.float64, full_validation=True)
    assert [o.outcome for o in batched].count("diverged") == 1  # the huge LR diverges and leaves the batch
    for lr, seed, together in zip(lrs, seeds, batched):
        alone = run_probe(gaussians, net, train, [lr], [seed], threshold=0.999, dtype=torch.float64, full_validation=True)[0]
        assert (together.outcome, together.steps) == (alone.outcome, alone.steps)
        assert len(together.loss) == len(alone.loss) > 0
        for (s1, l1), (s2, l2) in zip(together.loss, alone.loss):
            assert s1 == s2 and abs(l1 - l2) <= 1e-10 * max(1.0, abs(l2))
        assert [step for step, _ in together.accuracy] == [step for step, _ in alone.accuracy]
        assert [acc for _, acc in together.accuracy] == pytest.approx([acc for _, acc in alone.accuracy], abs=1e-12)


def test_in_float32_on_one_thread_a_replica_computes_the_same_bits_in_any_batch(gaussians):
    """What makes a float32 store reproducible on a CPU (every committed record ran on one thread): a replica's
    arithmetic does not depend on which replicas share its batch, so speculation depth and seed batching
    cannot change an outcome. (With several threads, or on a GPU, it can: see search.py.)"""
    assert torch.get_num_threads() == 1
    net = spec_for(gaussians, depth=3, width=64)
    train = TrainConfig(batch_size=32, max_steps=40, eval_every=5)
    lrs, seeds = [0.01, 0.3, 0.05, 2.0], [0, 0, 1, 1]
    batched = run_probe(gaussians, net, train, lrs, seeds, threshold=0.999, full_validation=True)
    for lr, seed, together in zip(lrs, seeds, batched):
        alone = run_probe(gaussians, net, train, [lr], [seed], threshold=0.999, full_validation=True)[0]
        assert (together.outcome, together.steps, together.loss, together.accuracy) == (
            alone.outcome, alone.steps, alone.loss, alone.accuracy)


def test_replica_stops_when_it_reaches_the_threshold(gaussians):
    net = spec_for(gaussians)
    train = TrainConfig(batch_size=64, max_steps=300, eval_every=5)
    slow, good = run_probe(gaussians, net, train, [1e-5, 0.1], [0, 0], threshold=0.8)
    assert good.outcome == "success" and good.final_accuracy >= 0.8 and good.steps < 300
    assert good.steps % 5 == 0
    assert slow.outcome == "budget" and slow.steps == 300
    assert slow.accuracy[-1][0] == 300  # the end of the budget is always counted in full
    record = slow.to_dict()  # what a store keeps: how the probe ended, not its curves
    assert record["final_accuracy"] == slow.accuracy[-1][1] and record["final_loss"] == slow.loss[-1][1]
    assert "accuracy" not in record


def test_early_verdicts_change_no_outcome(gaussians):
    """Counting a check's validation examples only until its verdict is certain gives the same outcomes,
    steps and final accuracies as counting them all, and counts fewer of them."""
    net = spec_for(gaussians, depth=3, width=24)
    train = TrainConfig(batch_size=64, max_steps=240, eval_every=5)
    lrs, seeds = [1e-4, 0.003, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], [0, 1] * 4
    quick = run_probe(gaussians, net, train, lrs, seeds, threshold=0.85)
    full = run_probe(gaussians, net, train, lrs, seeds, threshold=0.85, full_validation=True)
    def ends(outcomes):  # a diverged replica's last fully counted check is not part of its outcome
        return [(o.outcome, o.steps, None if o.outcome == "diverged" else o.final_accuracy) for o in outcomes]

    assert ends(quick) == ends(full) and {o.outcome for o in full} == {"success", "budget", "diverged"}
    assert sum(len(o.accuracy) for o in quick) < sum(len(o.accuracy) for o in full)


def test_same_seed_gives_the_same_eta_star_and_seeds_are_independent_of_batching(gaussians):
    net = spec_for(gaussians)
    train = TrainConfig(batch_size=64, max_steps=150, eval_every=10)
    search = SearchConfig(lr_bounds=(0.01, 1.0), rtol=0.05)
    together = find_eta_star(gaussians, net, train, search, seeds=[0, 1])
    again = find_eta_star(gaussians, net, train, search, seeds=[0, 1])
    alone = find_eta_star(gaussians, net, train, search, seeds=[1])
    speculative = find_eta_star(gaussians, net, train, search, seeds=[0, 1], speculation=3)
    assert [s.record() for s in together.per_seed] == [s.record() for s in again.per_seed]  # bit for bit
    assert together.seed_result(1).ledger_records() == alone.seed_result(1).ledger_records()
    for serial, fast in zip(together.per_seed, speculative.per_seed):  # k = 3: the same answer and path
        assert (fast.eta_star, fast.lo, fast.hi) == (serial.eta_star, serial.lo, serial.hi)
        assert sorted((o.lr, o.outcome, o.steps) for _, o in fast.ledger) == sorted((o.lr, o.outcome, o.steps) for _, o in serial.ledger)


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


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ds: spec_for(ds, depth=0), "depth"),
        (lambda ds: spec_for(ds, width=0), "width"),
        (lambda ds: run_probe(ds, spec_for(ds), TrainConfig(), [0.1], [0], threshold=1.0), "threshold"),
        (lambda ds: run_probe(ds, spec_for(ds), TrainConfig(), [-0.1], [0], threshold=0.8), "positive"),
        (lambda ds: SearchConfig(lr_bounds=(1.0, 0.1)), "inverted"),
        (lambda ds: find_eta_star(ds, spec_for(ds), threshold=0.0), "threshold"),
        (lambda ds: run_probe(ds, spec_for(ds), TrainConfig(batch_size=10**6), [0.1], [0], 0.8), "exceeds"),
        (lambda ds: TrainConfig(batch_size=0), "batch_size"),
        (lambda ds: TrainConfig(loss="hinge"), "train.loss must be one of"),
    ],
)
def test_bad_input_gives_one_clear_error(gaussians, make, message):
    with pytest.raises(ValueError, match=message):
        make(gaussians)
