"""The batched training probe against K separate single-LR runs, and eta* on the real two-Gaussian task."""

from types import SimpleNamespace

import pytest
import torch

from milr_core.config import Run, SearchConfig, TrainConfig
from milr_core.network import NetworkSpec
from milr_core.probe import LanePool, Probe, train_replicas
from milr_core.search import find_eta_star, search_cells

from helpers import network_for


def run_probe(dataset, net, train, lrs, seeds, threshold, **options):
    return train_replicas(dataset, net, train, lrs, seeds, threshold, **options)[0]


def test_k_replica_probe_reproduces_k_single_runs_in_float64(gaussians):
    net = network_for(gaussians, depth=3, width=12)
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
    net = network_for(gaussians, depth=3, width=64)
    train = TrainConfig(batch_size=32, max_steps=40, eval_every=5)
    lrs, seeds = [0.01, 0.3, 0.05, 2.0], [0, 0, 1, 1]
    batched = run_probe(gaussians, net, train, lrs, seeds, threshold=0.999, full_validation=True)
    for lr, seed, together in zip(lrs, seeds, batched):
        alone = run_probe(gaussians, net, train, [lr], [seed], threshold=0.999, full_validation=True)[0]
        assert (together.outcome, together.steps, together.loss, together.accuracy) == (
            alone.outcome, alone.steps, alone.loss, alone.accuracy)


def test_replica_stops_when_it_reaches_the_threshold(gaussians):
    net = network_for(gaussians)
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
    net = network_for(gaussians, depth=3, width=24)
    train = TrainConfig(batch_size=64, max_steps=240, eval_every=5)
    lrs, seeds = [1e-4, 0.003, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], [0, 1] * 4
    quick = run_probe(gaussians, net, train, lrs, seeds, threshold=0.85)
    full = run_probe(gaussians, net, train, lrs, seeds, threshold=0.85, full_validation=True)
    def ends(outcomes):  # a diverged replica's last fully counted check is not part of its outcome
        return [(o.outcome, o.steps, None if o.outcome == "diverged" else o.final_accuracy) for o in outcomes]

    assert ends(quick) == ends(full) and {o.outcome for o in full} == {"success", "budget", "diverged"}
    assert sum(len(o.accuracy) for o in quick) < sum(len(o.accuracy) for o in full)


def test_same_seed_gives_the_same_eta_star_and_seeds_are_independent_of_batching(gaussians):
    net = network_for(gaussians)
    train = TrainConfig(batch_size=64, max_steps=150, eval_every=10)
    search = SearchConfig(lr_bounds=(0.01, 1.0), rtol=0.05)
    together = find_eta_star(Run(gaussians, net, (0, 1)), train, search)
    again = find_eta_star(Run(gaussians, net, (0, 1)), train, search)
    alone = find_eta_star(Run(gaussians, net, (1,)), train, search)
    speculative = find_eta_star(Run(gaussians, net, (0, 1), speculation=3), train, search)
    assert [s.record() for s in together.per_seed] == [s.record() for s in again.per_seed]  # bit for bit
    assert together.seed_result(1).ledger_records() == alone.seed_result(1).ledger_records()
    for serial, fast in zip(together.per_seed, speculative.per_seed):  # k = 3: the same answer and path
        assert (fast.eta_star, fast.lo, fast.hi) == (serial.eta_star, serial.lo, serial.hi)
        assert sorted((o.lr, o.outcome, o.steps) for _, o in fast.ledger) == sorted((o.lr, o.outcome, o.steps) for _, o in serial.ledger)


def test_eta_star_on_the_gaussian_task_separates_success_from_failure(gaussians):
    net = network_for(gaussians)
    train = TrainConfig(batch_size=64, max_steps=150, eval_every=10)
    threshold = gaussians.default_threshold
    result = find_eta_star(Run(gaussians, net), train, SearchConfig(lr_bounds=(0.01, 1.0), rtol=0.05))
    search = result.per_seed[0]
    assert search.status == "converged"
    assert search.hi / search.lo <= 1.05
    below, above = run_probe(gaussians, net, train, [search.lo, search.hi], [0, 0], threshold)
    assert below.succeeded and not above.succeeded


@pytest.fixture(scope="module")
def planted():
    """MNIST-shaped data labelled by a random linear teacher: a layer wide enough (128) that two threads split its
    products, and a task a small network learns in tens of steps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 784, generator=g)
    y = (x @ torch.randn(784, 10, generator=g)).argmax(dim=1)
    return SimpleNamespace(name="planted", x_train=x, y_train=y, x_val=x[:600], y_val=y[:600], in_dim=784,
                           n_classes=10, default_threshold=0.5)  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
def test_in_fixed_lanes_a_replica_computes_the_same_bits_whatever_shares_its_pool(planted, threads):
    """Lanes (issue 23): a replica alone, beside others in any lane, or beside networks with another input-layer
    factor or parameterisation, computes the same bits (loss and accuracy at every check), on 1 and 2 threads."""
    torch.set_num_threads(threads)
    try:
        train = TrainConfig(batch_size=64, max_steps=30, eval_every=10)
        net = NetworkSpec(2, 128, 784, 10)
        alone = train_replicas(planted, net, train, [0.3], [0], 0.99, lanes=6, full_validation=True)[0][0]
        crowd = train_replicas(planted, net, train, [0.1, 2.0, 0.3, 0.05], [1, 2, 0, 0], 0.99, lanes=6, full_validation=True)[0]
        pool = LanePool(planted, train, lanes=6, full_validation=True)
        probes = [Probe(0.2, 3, NetworkSpec(2, 128, 784, 10, input_lr_factor=1.0), 30, 0.99, tag="1x"),
                  Probe(0.3, 0, net, 30, 0.99, tag="ours"), Probe(0.5, 1, NetworkSpec(2, 128, 784, 10, parameterisation="mup"),
                  20, 0.99, tag="mup")]  # fmt: skip
        ended = {}
        pool.run(lambda: probes.pop(0) if probes else None, lambda probe, outcome, _: ended.update({probe.tag: outcome}))
    finally:
        torch.set_num_threads(1)
    for other in (crowd[2], ended["ours"]):
        assert (other.outcome, other.steps, other.loss, other.accuracy) == (alone.outcome, alone.steps, alone.loss, alone.accuracy)
    assert len(alone.loss) == 3 and pool.lane_steps == 6 * 30 and pool.replica_steps == 30 + 30 + 20


@pytest.mark.parametrize("threads", [1, 2])
def test_in_fixed_lanes_speculation_depth_and_packing_change_no_bit_of_a_search(planted, threads):
    """Algorithm 1 at k = 1, 2, 3 and packed with another cell in the same 8 lanes: identical eta*, bracket and ledger."""
    torch.set_num_threads(threads)
    try:
        train, search = TrainConfig(batch_size=64, max_steps=40, eval_every=10), SearchConfig(lr_bounds=(0.01, 10.0), rtol=0.2)
        net = NetworkSpec(2, 128, 784, 10)
        runs = [find_eta_star(Run(planted, net, (0, 1), threshold=0.3, speculation=k, lanes=8), train, search) for k in (1, 2, 3)]
        other = Run(planted, NetworkSpec(2, 128, 784, 10, input_lr_factor=1.0), (2,), threshold=0.28, lanes=8)
        packed = search_cells([(Run(planted, net, (0, 1), threshold=0.3, lanes=8), train, search), (other, train, search)])[0]
    finally:
        torch.set_num_threads(1)
    ledgers = [[[{k: v for k, v in probe.items() if k != "round"} for probe in s.ledger_records()] for s in r.per_seed]
               for r in (*runs, packed)]  # fmt: skip
    assert all(ledger == ledgers[0] for ledger in ledgers) and runs[2].n_rounds < runs[0].n_rounds
    assert all([s.eta_star for s in r.per_seed] == [s.eta_star for s in runs[0].per_seed] for r in (*runs, packed))
    assert {s.status for s in runs[0].per_seed} == {"converged"}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ds: network_for(ds, depth=0), "depth"),
        (lambda ds: network_for(ds, width=0), "width"),
        (lambda ds: run_probe(ds, network_for(ds), TrainConfig(), [0.1], [0], threshold=1.0), "threshold"),
        (lambda ds: run_probe(ds, network_for(ds), TrainConfig(), [-0.1], [0], threshold=0.8), "positive"),
        (lambda ds: SearchConfig(lr_bounds=(1.0, 0.1)), "inverted"),
        (lambda ds: find_eta_star(Run(ds, network_for(ds), threshold=0.0)), "threshold"),
        (lambda ds: run_probe(ds, network_for(ds), TrainConfig(batch_size=10**6), [0.1], [0], 0.8), "exceeds"),
        (lambda ds: TrainConfig(batch_size=0), "batch_size"),
        (lambda ds: TrainConfig(loss="hinge"), "train.loss must be one of"),
    ],
)
def test_bad_input_gives_one_clear_error(gaussians, make, message):
    with pytest.raises(ValueError, match=message):
        make(gaussians)
