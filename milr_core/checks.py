"""The engine's oracle checks as plain functions, for any device: run them before trusting a new machine.

Each ``check_*(device)`` computes something small on ``device`` (seconds on a CPU or a GPU) against an
oracle with a known answer, returns a one-line summary of what it verified, and raises ``AssertionError``
with the numbers when the engine disagrees. They need no pytest: ``scripts/device_session.sh`` runs them
first on a lent GPU, so that device-handling bugs fail there rather than on Colab, and
``tests/test_checks.py`` runs them on the CPU.

- ``check_replica_probe``: a K-replica probe equals K single runs (float64);
- ``check_eigensolvers``: Lanczos and power iteration against the dense float64 Hessian (``to_dense``);
- ``check_effective_sharpness``: the effective-sharpness operator P^1/2 H P^1/2 against its dense form;
- ``check_cpu_vs_device_probe``: the same float64 probe on the CPU and on ``device`` (outcomes, steps, losses);
- ``check_sweep_records``: a tiny sweep on ``device`` writes verified records that name the device;
- ``check_same_seed``: the same seed twice gives bit-identical eta* and ledgers (float32, fixed lanes);
- ``check_speculation``: Algorithm 1 with speculation k=1, 2, 3 in the same lanes: identical eta*, bracket, ledger;
- ``check_packing``: a seed alone, beside another, or packed with other cells in the same lanes: identical;
- ``check_cpu_vs_device``: eta* on the CPU and on ``device`` agree within the search tolerance (float32).

``CHECKS`` lists them in order; ``GATING`` names those that must pass before a session fills a result store from
``device``: the float64 oracles, the device plumbing, and the bit-identity that fixed lanes promise (same seed,
speculation, packing). Only eta* across devices is reported without gating: two devices' kernels round
differently, which can flip a probe that sits on the threshold.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from functools import cache
from types import SimpleNamespace

import torch

from milr_core.config import Run, SearchConfig, SharpnessConfig, TrainConfig
from milr_core.curvature import HessianOperator, PreconditionedOperator, to_dense, top_hessian_eigenvalue
from milr_core.model import flat_logits_fn, flat_lr_multipliers, init_params, per_replica_loss
from milr_core.network import NetworkSpec

F64 = torch.float64


@cache
def gaussians():
    """The small real task of the checks: the two-Gaussian task in 8 dimensions (loaded once: packed cells share it)."""
    from milr_core.data import load_dataset

    return load_dataset("gaussians", dim=8)


def network_for(dataset, depth: int, width: int, **kwargs) -> NetworkSpec:
    return NetworkSpec(depth=depth, width=width, in_dim=dataset.in_dim, out_dim=dataset.n_classes, **kwargs)


def tiny_data(n: int = 20, in_dim: int = 4, n_classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, in_dim, generator=g, dtype=F64), torch.randint(0, n_classes, (n,), generator=g)


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _loss_gap(a: float, b: float) -> float:
    """abs(a - b) / max(1, abs(b)), and 0 for equal non-finite losses (a diverged replica's inf or NaN on both sides)."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    gap = abs(a - b) / max(1.0, abs(b))
    return math.inf if math.isnan(gap) else gap


# ----------------------------------------------------------------------------------------------------------
# the probe


def check_replica_probe(device: str) -> str:
    """A K-replica probe reproduces K single-LR runs (float64): outcomes, steps, every loss and accuracy."""
    from milr_core.probe import train_replicas

    data = gaussians()
    network = network_for(data, depth=3, width=12)
    train = TrainConfig(batch_size=32, max_steps=40, eval_every=1)
    lrs, seeds = [0.01, 0.05, 0.2, 0.05, 30.0], [0, 0, 0, 1, 1]
    # threshold 0.999 is never reached: every replica trains its whole budget, or diverges and leaves the batch
    together, _ = train_replicas(data, network, train, lrs, seeds, 0.999, device=device, dtype=F64, full_validation=True)
    outcomes = [o.outcome for o in together]
    assert outcomes.count("diverged") == 1 and outcomes[-1] == "diverged", f"expected only lr 30 to diverge: {outcomes}"
    worst_loss = worst_accuracy = 0.0
    for lr, seed, batched in zip(lrs, seeds, together):
        alone = train_replicas(data, network, train, [lr], [seed], 0.999, device=device, dtype=F64, full_validation=True)[0][0]
        assert (batched.outcome, batched.steps) == (alone.outcome, alone.steps), (
            f"lr {lr} seed {seed}: batched {batched.outcome} at step {batched.steps}, alone {alone.outcome} at {alone.steps}"
        )
        assert [s for s, _ in batched.loss] == [s for s, _ in alone.loss] and batched.loss, f"lr {lr}: loss steps differ"
        assert [s for s, _ in batched.accuracy] == [s for s, _ in alone.accuracy], f"lr {lr}: accuracy steps differ"
        for (_, l1), (_, l2) in zip(batched.loss, alone.loss):
            gap = _loss_gap(l1, l2)
            worst_loss = max(worst_loss, gap)
            assert gap <= 1e-10, f"lr {lr} seed {seed}: batched loss {l1!r} vs alone {l2!r} (relative gap {gap:.3g} > 1e-10)"
        for (_, a1), (_, a2) in zip(batched.accuracy, alone.accuracy):
            worst_accuracy = max(worst_accuracy, abs(a1 - a2))
            assert abs(a1 - a2) <= 1e-12, f"lr {lr} seed {seed}: batched accuracy {a1!r} vs alone {a2!r}"
    return (f"5-replica probe = 5 single runs on {device} (float64, 40 steps): outcomes and steps equal, "
            f"max loss gap {worst_loss:.1e} <= 1e-10, max accuracy gap {worst_accuracy:.1e} <= 1e-12")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# curvature


def _dense_hessian_oracle(network: NetworkSpec, params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Hessian of the mean loss by torch.func.hessian (independent of the operators' code paths)."""
    theta, logits = flat_logits_fn(network, params)
    return torch.func.hessian(lambda t: per_replica_loss(logits(t, x)[None], y, "cross_entropy")[0])(theta)


def check_eigensolvers(device: str) -> str:
    """HVPs (graph kept and chunked) against the dense Hessian; Lanczos and power iteration against eigvalsh."""
    network = NetworkSpec(2, 5, 4, 3)
    params = init_params(network, [0], F64, device)
    x, y = (t.to(device) for t in tiny_data())
    kept = HessianOperator(network, params, x, y)
    chunked = HessianOperator(network, params, x, y, chunk_size=7)
    assert kept.graph_kept and not chunked.graph_kept, "one chunk keeps the graph, several do not"
    dense = to_dense(kept)
    oracle = _dense_hessian_oracle(network, params, x, y)
    gap = (dense - oracle).abs().max().item()
    assert gap <= 1e-10, f"to_dense(HessianOperator) differs from torch.func.hessian by {gap:.3g} (> 1e-10)"
    probes = torch.randn(3, kept.n_params, generator=torch.Generator().manual_seed(1), dtype=F64).to(device)
    chunk_gap = max((chunked.matvec(v) - dense @ v).abs().max().item() for v in probes)
    assert chunk_gap <= 1e-12, f"the chunked HVP differs from the dense Hessian by {chunk_gap:.3g} (> 1e-12)"
    asymmetry = (dense - dense.T).abs().max().item()
    assert asymmetry <= 1e-12, f"the dense Hessian is not symmetric: max |H - H^T| = {asymmetry:.3g}"
    values = torch.linalg.eigvalsh(dense.cpu())
    top = values[-1].item()
    assert top > -values[0].item(), "this network's largest-magnitude eigenvalue should be its largest (power applies)"
    summary = []
    for method in ("lanczos", "power"):
        result = top_hessian_eigenvalue(kept, method, tol=1e-10, max_iter=2000)
        error = relative(result.eigenvalue, top)
        assert result.converged and result.residual <= 1e-10, (
            f"{method}: not converged on {device} (residual {result.residual:.3g}, {result.n_products} products)"
        )
        assert error <= 1e-8, f"{method}: lambda_1 {result.eigenvalue!r} vs dense {top!r} (relative error {error:.3g} > 1e-8)"
        assert result.dtype == "float64", f"{method}: answered in {result.dtype}, expected float64"
        summary.append(f"{method} {error:.1e} in {result.n_products} HVPs")
    return (f"HVP = dense Hessian (max gap {gap:.1e}, chunked {chunk_gap:.1e}) on {device}; lambda_1 = {top:.6g}: "
            + ", ".join(summary) + " (relative error <= 1e-8)")  # fmt: skip


def check_effective_sharpness(device: str) -> str:
    """P^1/2 H P^1/2 (P the LR multipliers) against its dense float64 form, alone and through sharpness_at_init."""
    from milr_core.sharpness import sharpness_at_init, training_subset

    lines = []
    for parameterisation in ("standard", "mup"):  # the input layer at 0.1x; muP's per-layer rates on top
        network = NetworkSpec(2, 5, 4, 3, parameterisation=parameterisation)
        params = init_params(network, [1], F64, device)
        x, y = (t.to(device) for t in tiny_data())
        operator = HessianOperator(network, params, x, y)
        multipliers = flat_lr_multipliers(network, dtype=F64, device=device)
        assert multipliers.device.type == torch.device(device).type, f"multipliers on {multipliers.device}, not {device}"
        root = multipliers.sqrt()
        oracle = root[:, None] * _dense_hessian_oracle(network, params, x, y) * root[None, :]
        effective = PreconditionedOperator(operator, multipliers)
        gap = (to_dense(effective) - oracle).abs().max().item()
        assert gap <= 1e-10, f"{parameterisation}: to_dense(P^1/2 H P^1/2) differs from the oracle by {gap:.3g} (> 1e-10)"
        top = torch.linalg.eigvalsh(oracle.cpu())[-1].item()
        result = top_hessian_eigenvalue(effective, "lanczos", tol=1e-10, max_iter=2000)
        error = relative(result.eigenvalue, top)
        assert result.converged and error <= 1e-8, (
            f"{parameterisation}: Lanczos lambda_1_eff {result.eigenvalue!r} vs dense {top!r} "
            f"(relative error {error:.3g}, residual {result.residual:.3g})"
        )
        lines.append(f"{parameterisation} {top:.5g} ({error:.1e})")

    # The protocol end to end (subset on the CPU, network and examples moved to the device).
    x, y = tiny_data(40)
    dataset = SimpleNamespace(x_train=x.float(), y_train=y, x_val=x.float(), y_val=y, meta={}, in_dim=4, n_classes=3)
    network = NetworkSpec(2, 5, 4, 3)
    config = SharpnessConfig(subset_size=25, subset_seed=7, chunk_size=10, tol=1e-9, effective=True)
    dataset.default_threshold = 0.5
    (record,) = sharpness_at_init(Run(dataset, network, (3,), device=device, dtype="float64"), config)
    xs, ys = training_subset(dataset.x_train, dataset.y_train, 25, 7)
    params = init_params(network, [3], F64)
    hessian = _dense_hessian_oracle(network, params, xs.double(), ys)
    root = flat_lr_multipliers(network).sqrt()
    for key, matrix in (("lambda_1", hessian), ("lambda_1_eff", root[:, None] * hessian * root[None, :])):
        top = torch.linalg.eigvalsh(matrix)[-1].item()
        assert record[f"{key}_converged"] and relative(record[key], top) <= 1e-8, (
            f"sharpness_at_init on {device}: {key} {record[key]!r} vs dense {top!r} (converged {record[f'{key}_converged']})"
        )
    assert record["lambda_1_eff"] < record["lambda_1"], "with the input layer at 0.1x, lambda_1_eff should lie below lambda_1"
    return (f"P^1/2 H P^1/2 = dense on {device}; Lanczos lambda_1_eff: " + ", ".join(lines)
            + f"; sharpness_at_init lambda_1 {record['lambda_1']:.5g}, lambda_1_eff {record['lambda_1_eff']:.5g} "
            "= dense (relative error <= 1e-8)")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# the search


CHECK_LANES = 8  # fixed lanes of the float32 search checks: fewer than a k=3 round of two seeds, so lanes refill


def _small_search_cell(device: str, seeds: tuple[int, ...] = (0, 1), speculation: int = 1, **options) -> tuple:
    """A small Gaussian cell on ``device`` in fixed lanes: (run, train, search)."""
    data = gaussians()
    run = Run(data, network_for(data, depth=2, width=16, **options), seeds, device=device, speculation=speculation,
              lanes=CHECK_LANES)  # fmt: skip
    return run, TrainConfig(batch_size=64, max_steps=150, eval_every=10), SearchConfig(lr_bounds=(1.0, 20.0), rtol=0.05,
                                                                                       probe_above=(1.5,))  # fmt: skip


def path_of(seed_search, rounds: bool = True) -> list[dict]:
    """The ledger of one seed's search as plain dicts (optionally without the round numbers)."""
    return [{k: v for k, v in probe.items() if rounds or k != "round"} for probe in seed_search.ledger_records()]


def _same_searches(first, second, what: str, rounds: bool = True) -> None:
    """Two results of the same seeds: identical status, eta*, bracket and ledger, bit for bit."""
    for a, b in zip(first.per_seed, second.per_seed):
        assert (a.status, a.eta_star, a.lo, a.hi) == (b.status, b.eta_star, b.lo, b.hi), (
            f"seed {a.seed}, {what}: {a.status} eta* {a.eta_star!r} [{a.lo!r}, {a.hi!r}] vs "
            f"{b.status} eta* {b.eta_star!r} [{b.lo!r}, {b.hi!r}]"
        )
        difference = ledger_difference(path_of(a, rounds), path_of(b, rounds), 0.0)
        assert difference is None, f"seed {a.seed}, {what}: the ledgers differ: {difference}"


def check_same_seed(device: str) -> str:
    """The same seeds twice: bit-identical eta*, brackets and ledgers (every probe's outcome, steps, accuracy, loss)."""
    from milr_core.search import find_eta_star

    run, train, search = _small_search_cell(device)
    first, again = find_eta_star(run, train, search), find_eta_star(run, train, search)
    _same_searches(first, again, f"twice on {device}")
    assert any(s.eta_star is not None for s in first.per_seed), "no seed converged: the cell is too hard for the check"
    probes = sum(len(s.ledger) for s in first.per_seed)
    return f"same seeds twice on {device}: eta* {[s.eta_star for s in first.per_seed]} and {probes} ledger probes bit-identical"


def check_speculation(device: str) -> str:
    """Algorithm 1 with speculation k=1, 2 and 3 in the same lanes: bit-identical eta*, bracket and ledger (round
    numbers aside), in fewer rounds."""
    from milr_core.search import find_eta_star

    results = [find_eta_star(*_small_search_cell(device, speculation=k)) for k in (1, 2, 3)]
    for k, result in zip((2, 3), results[1:]):
        _same_searches(results[0], result, f"k=1 vs k={k} on {device} in {CHECK_LANES} lanes", rounds=False)
    serial, spec3 = results[0], results[-1]
    assert spec3.n_rounds < serial.n_rounds, f"k=3 took {spec3.n_rounds} rounds, k=1 {serial.n_rounds}: no fewer"
    speculative = sum(len(s.speculative) for s in spec3.per_seed)
    return (f"k=1, 2, 3 on {device} in {CHECK_LANES} lanes: identical eta* {[s.eta_star for s in serial.per_seed]}, "
            f"brackets and ledgers; rounds {serial.n_rounds} -> {spec3.n_rounds}, {speculative} speculative probes")  # fmt: skip


def check_packing(device: str) -> str:
    """A seed's search alone, beside another seed, and packed with other cells (another input-layer factor, another
    threshold and budget, muP) in the same lanes: bit-identical eta*, bracket and ledger."""
    from dataclasses import replace

    from milr_core.search import find_eta_star, search_cells

    run, train, search = _small_search_cell(device, seeds=(1,))
    alone = find_eta_star(run, train, search)
    beside = find_eta_star(replace(run, seeds=(0, 1)), train, search)
    _same_searches(alone, type(beside)(**{**vars(beside), "per_seed": [beside.seed_result(1)]}), "alone vs beside seed 0")
    others = [(_small_search_cell(device, seeds=(0, 1), input_lr_factor=1.0)[0], train, search),
              (replace(run, seeds=(2,), threshold=0.7), replace(train, max_steps=90), search),
              (_small_search_cell(device, seeds=(1,), parameterisation="mup")[0], train, search)]
    packed = search_cells([(run, train, search), *others])
    _same_searches(alone, packed[0], f"alone vs packed with 3 other cells on {device} in {CHECK_LANES} lanes")
    mixed = find_eta_star(*others[0])
    _same_searches(mixed, packed[1], "input layer at 1x: alone vs packed")
    return (f"seed 1 alone, beside seed 0 and packed with three other cells (1x input layer, t=0.7 and 90 steps, muP) "
            f"on {device} in {CHECK_LANES} lanes: the same eta* {alone.per_seed[0].eta_star!r}, brackets and ledgers")


def check_cpu_vs_device(device: str) -> str:
    """eta* of a small cell on the CPU and on ``device`` agree within the search tolerance (float32 both)."""
    from milr_core.search import find_eta_star

    on_cpu = find_eta_star(*_small_search_cell("cpu"))
    run, train, search = _small_search_cell(device)
    there = find_eta_star(run, train, search)
    bound = math.log(1 + search.rtol)
    gaps = []
    for a, b in zip(on_cpu.per_seed, there.per_seed):
        assert a.status == b.status == "converged", f"seed {a.seed}: status cpu {a.status}, {device} {b.status}"
        gap = abs(math.log(a.eta_star / b.eta_star))
        gaps.append(gap)
        assert gap <= bound + 1e-12, (
            f"seed {a.seed}: eta* cpu {a.eta_star!r}, {device} {b.eta_star!r}: |log ratio| {gap:.4f} > log(1 + rtol) {bound:.4f}"
        )
    return (f"eta* cpu {[s.eta_star for s in on_cpu.per_seed]} vs {device} {[s.eta_star for s in there.per_seed]}: "
            f"max |log ratio| {max(gaps):.4f} <= log(1 + rtol) = {bound:.4f}")  # fmt: skip


def ledger_difference(a: list[dict], b: list[dict], rtol: float) -> str | None:
    """None if two ledgers (``path_of``) agree: lr, seed, outcome, steps and round exactly (where both have rounds),
    final accuracy and loss within ``rtol`` (0: bit for bit, NaN equal to NaN); else the first difference."""
    if len(a) != len(b):
        return f"{len(a)} probes vs {len(b)}"
    for p, q in zip(a, b):
        if {k: v for k, v in p.items() if k not in FLOAT_FIELDS} != {k: v for k, v in q.items() if k not in FLOAT_FIELDS}:
            return f"probe {p} vs {q}"
        for key in FLOAT_FIELDS:
            if not _close_floats(p.get(key), q.get(key), rtol):
                return f"lr {p['lr']!r}: {key} {p.get(key)!r} vs {q.get(key)!r}"
    return None


FLOAT_FIELDS = ("final_accuracy", "final_loss")


def _close_floats(a: float | None, b: float | None, rtol: float) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rtol * max(1.0, abs(b))


def check_cpu_vs_device_probe(device: str) -> str:
    """The same probe on the CPU and on ``device`` in float64: outcomes and steps equal, losses to 1e-9."""
    from milr_core.probe import train_replicas

    data = gaussians()
    network = network_for(data, depth=3, width=12)
    train = TrainConfig(batch_size=32, max_steps=40, eval_every=5)
    lrs, seeds = [0.05, 0.2, 30.0], [0, 1, 0]
    runs = [train_replicas(data, network, train, lrs, seeds, 0.999, device=where, dtype=F64, full_validation=True)[0]
            for where in ("cpu", device)]  # fmt: skip
    worst = 0.0
    for lr, here, there in zip(lrs, *runs):
        assert (here.outcome, here.steps) == (there.outcome, there.steps), (
            f"lr {lr}: cpu {here.outcome} at step {here.steps}, {device} {there.outcome} at step {there.steps}"
        )
        for (step, a), (_, b) in zip(here.loss, there.loss):
            gap = _loss_gap(b, a)
            worst = max(worst, gap)
            assert gap <= 1e-9, f"lr {lr} step {step}: loss cpu {a!r}, {device} {b!r} (relative gap {gap:.3g} > 1e-9)"
        assert [a for _, a in here.accuracy] == [a for _, a in there.accuracy], f"lr {lr}: accuracies differ across devices"
    return f"float64 probe cpu vs {device}: outcomes, steps and accuracies equal, max loss gap {worst:.1e} <= 1e-9"


# ----------------------------------------------------------------------------------------------------------
# the sweep


def check_sweep_records(device: str) -> str:
    """A tiny eta* and sharpness sweep on ``device``: four verified records whose provenance names the device."""
    from milr_core.config import RunOptions
    from milr_core.store import ResultStore, device_name
    from milr_core.sweep import run_sweep

    options = {"gaussians": {"dim": 8, "n_train_per_class": 512, "n_val_per_class": 256}}
    common = {"datasets": ["gaussians"], "dataset_options": options, "depths": [1], "widths": [8], "seeds": [0, 1]}
    eta = {**common, "name": "check_eta", "kind": "eta_star", "train": {"batch_size": 32, "max_steps": 60, "eval_every": 10},
           "search": {"lr_bounds": [0.03, 3.0], "rtol": 0.2}}  # fmt: skip
    sharp = {**common, "name": "check_sharpness", "kind": "sharpness", "sharpness": {"subset_size": 128, "tol": 1e-4, "bounds": True}}
    run = RunOptions(device=device, threads=torch.get_num_threads())
    expected = device_name(device)
    with tempfile.TemporaryDirectory(prefix="milr-check-") as folder:
        frames = [run_sweep(grid, folder, run=run, progress=False) for grid in (eta, sharp)]
        store = ResultStore(folder)
        records = store.records()
        assert len(records) == 4 and not (store.path / "quarantine").exists(), f"expected 4 verified records, got {len(records)}"
        named = {record["provenance"]["device"] for record in records}
        assert named == {expected}, f"provenance names {sorted(named)}, not {expected!r}"
        eta_frame = frames[0]
        assert eta_frame["eta_star"].notna().all(), f"eta* missing: {eta_frame[['seed', 'status']].to_dict('records')}"
        sharpness = frames[1]
        assert (sharpness["lambda_1"] > 0).all() and (sharpness["lambda_1_eff"] <= sharpness["lambda_1"]).all()
        bounded = (sharpness["lower_bound"] <= sharpness["lambda_1_ggn"] * (1 + 1e-3)).all()
        assert bounded, f"our lower bound above lambda_1 of the Gauss-Newton matrix: {sharpness[['lower_bound', 'lambda_1_ggn']]}"
    return (f"sweep on {device}: 4 verified records (2 eta*, 2 lambda_1 with our bounds) whose provenance names "
            f"{expected!r}")  # fmt: skip


CHECKS: list[Callable[[str], str]] = [
    check_replica_probe,
    check_eigensolvers,
    check_effective_sharpness,
    check_cpu_vs_device_probe,
    check_sweep_records,
    check_same_seed,
    check_speculation,
    check_packing,
    check_cpu_vs_device,
]
# The float64 oracles, the device plumbing, and the float32 exactness that fixed lanes promise (the same seeds twice,
# speculation and packing in the same lanes: bit for bit). Only eta* across devices may differ by a rounding-sized
# flip of a borderline probe: it is reported, not a reason to keep the device's records out of a store.
GATING = {"check_replica_probe", "check_eigensolvers", "check_effective_sharpness", "check_cpu_vs_device_probe",
          "check_sweep_records", "check_same_seed", "check_speculation", "check_packing"}  # fmt: skip
