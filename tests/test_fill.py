"""Filling a store (milr_core/fill.py, planner.py): the FLOP count, which groups pack, the calls, the planner, and a
packed call's records against the same groups computed alone in the same lanes."""

import pytest
import torch

from milr_core import fill
from milr_core.planner import Planner, Speed
from milr_core.config import RunOptions
from milr_core.grid import load_grid
from milr_core.network import NetworkSpec
from milr_core.store import ResultStore, canonical, content_hash
from milr_core.sweep import expand, run_group, seed_groups


def placeholder(name: str, options: dict) -> dict:
    """A data identity that needs no data (enough to hash cells)."""
    return {"name": name, "options": options}


def groups_of(grid: dict, identity=placeholder, experiment: str = "test") -> list[fill.Group]:
    checked = load_grid(grid)
    return [fill.Group(experiment, checked, cells) for cells in seed_groups(expand(checked, identity))]


BASE = {"name": "g", "kind": "eta_star", "datasets": ["gaussians"], "dataset_options": {"gaussians": {"dim": 8}},
        "depths": [2], "widths": [32], "seeds": [0, 1],
        "train": {"batch_size": 64, "max_steps": 40, "eval_every": 10},
        "search": {"lr_bounds": [0.1, 10.0], "rtol": 0.2}}  # fmt: skip


def test_training_flops_are_a_real_steps_flops():
    """2x128 on MNIST: forward 2 x (784x128 + 128x128 + 128x10) = 236,032; backward: every weight gradient (the same)
    and every input gradient but the first layer's (2 x (128x128 + 128x10) = 35,328): 507,392 per example, as torch's
    FLOP counter reads off one real training step (the old 3 x forward, 708,096, was 1.40x too many)."""
    from torch.utils.flop_counter import FlopCounterMode

    from milr_core.model import MLP, per_replica_loss

    network = NetworkSpec(depth=2, width=128, in_dim=784, out_dim=10)
    assert network.flops_per_example() == 236_032
    assert network.training_flops_per_example() == 236_032 + 236_032 + 35_328 == 507_392
    model = MLP(network)
    params = [p.requires_grad_() for p in model.init_params([0], torch.float32, "cpu")]
    x, y = torch.randn(16, 784), torch.randint(0, 10, (16,))
    with FlopCounterMode(display=False) as counter:
        loss = per_replica_loss(model.forward(params, x, model.forward_multipliers()), y)
        torch.autograd.grad(loss.sum(), params)
    assert counter.get_total_flops() / 16 == 507_392


def test_groups_pack_when_only_what_a_lane_may_differ_in_differs():
    variants = [{"name": "base"}, {"name": "full", "network": {"input_lr_factor": 1.0}},
                {"name": "mup", "network": {"parameterisation": "mup"}}, {"name": "t", "threshold": 0.7},
                {"name": "budget", "train": {"max_steps": 80}}, {"name": "bracket", "search": {"lr_bounds": [1.0, 30.0]}}]  # fmt: skip
    keys = {fill.pack_key(g) for g in groups_of({**BASE, "variants": variants})}
    assert len(keys) == 1 and None not in keys
    base = fill.pack_key(groups_of(BASE)[0])
    for change in ({"widths": [16]}, {"depths": [3]}, {"dtype": "float64"}, {"train": {**BASE["train"], "batch_size": 32}},
                   {"train": {**BASE["train"], "eval_every": 20}}, {"dataset_options": {"gaussians": {"dim": 4}}},
                   {"kind": "search_trace"}, {"network": {"bias": False}}):  # fmt: skip
        assert fill.pack_key(groups_of({**BASE, **change})[0]) != base, change
    sharpness = {k: v for k, v in BASE.items() if k not in ("train", "search")} | {"kind": "sharpness"}
    assert fill.pack_key(groups_of(sharpness)[0]) is None


def test_calls_pack_later_compatible_groups_until_the_lanes_are_full():
    one_seed = {**BASE, "seeds": [0]}
    a, b = groups_of({**BASE, "variants": [{"name": "a"}, {"name": "b", "threshold": 0.7}]})
    c, d = groups_of({**one_seed, "variants": [{"name": "c", "threshold": 0.75}, {"name": "d", "threshold": 0.85}]})
    other = groups_of({**BASE, "widths": [16]})[0]
    calls = fill.plan_calls([a, other, b, c, d], lanes=4)
    assert [[g.variant.name for g in call.groups] for call in calls] == [["a", "b"], ["base"], ["c", "d"]]
    assert [call.speculation for call in calls] == [1, 1, 1]  # 2 + 2 seeds fill 4 lanes; k = 2 would need 6
    assert fill.plan_calls([c], lanes=8)[0].speculation == 3  # 1 x 7 probes fit in 8 lanes, 1 x 15 do not
    unpacked = fill.plan_calls([a, other, b, c, d], lanes=4, exact=False)
    assert [len(call.groups) for call in unpacked] == [1] * 5 and {call.speculation for call in unpacked} == {1}


def planted_record(cell, steps: list[int], products: int = 0) -> dict:
    result = {"seed": cell.spec["seed"], "status": "converged"} | ({"lambda_1_n_products": products} if products else {})
    return {"hash": cell.hash, "cell": cell.spec, "labels": cell.labels, "result": result,
            "ledger": [{"lr": 1.0, "steps": s, "outcome": "budget"} for s in steps], "provenance": {"wall_time_s": 1.0}}  # fmt: skip


def test_the_planner_reads_the_nearest_siblings_ledgers(tmp_path):
    grid = {**BASE, "depths": [2, 4], "widths": [16, 32, 64], "dataset_options": {"gaussians": {"dim": 8, "n_val_per_class": 100}}}
    cells = {(c.spec["depth"], c.spec["width"], c.spec["seed"]): c for c in expand(load_grid(grid), placeholder)}
    store = ResultStore(tmp_path)
    store.put(planted_record(cells[2, 16, 0], [100, 50]))
    store.put(planted_record(cells[2, 16, 1], [300]))
    store.put(planted_record(cells[4, 32, 0], [7]))  # another depth: used only where the same depth has no sibling
    store.put(planted_record(cells[2, 64, 0], [9999]))  # wider than the group: never used
    group = next(g for g in groups_of(grid) if (g.spec["depth"], g.spec["width"]) == (2, 32))
    planner = Planner(Speed(lanes=4, tflops=1e-3, layer_floor_s=0.0, init_s_per_param=1e-9), store)
    work = planner.work(group)
    assert (work.steps, work.products, work.probes) == (225.0, 0.0, 1.5) and "d=2 w=16" in work.source
    # By hand, 2x32 on 8 inputs and 2 classes: forward 2 x (8x32 + 32x32 + 32x2) = 2,688 FLOPs; a step 3 x 2,688 -
    # 2 x 8x32 = 7,552 per example x batch 64, plus validation: 200 examples x 2,688 / 10 steps: 537,088 per lane.
    # 2 seeds x 225 steps over 2 busy lanes of 4: 225 pool steps of 4 x 537,088 FLOPs at 1e9 FLOP/s; and 2 x 1.5
    # fresh networks of 1,410 parameters at 1 ns each.
    assert planner.seconds(fill.Call([group])) == pytest.approx(225 * 4 * 537_088 / 1e9 + 3 * 1410 * 1e-9, rel=1e-12)
    slow = Planner(Speed(lanes=4, tflops=1e-3, layer_floor_s=1.0, init_s_per_param=0.0), store)
    assert slow.seconds(fill.Call([group])) == pytest.approx(225 * (4 * 537_088 / 1e9 + 3 * 1.0))  # + 1 s per layer
    deeper = next(g for g in groups_of(grid) if (g.spec["depth"], g.spec["width"]) == (4, 64))
    assert planner.work(deeper).steps == 7.0  # its own depth at a smaller width comes first
    empty = Planner(planner.speed, ResultStore(tmp_path / "empty"))
    default = empty.work(group)  # the bisection's probes (preflight's count) x the budget of 40 steps
    assert default.source == "default" and default.steps == default.probes * 40 and default.probes >= 4


def test_a_packed_call_writes_what_each_group_computes_alone(tmp_path):
    """Three compatible groups in one pool of 6 fixed lanes (one thread): each group's records verify, its claim is
    released, and its results and ledgers equal those of the group computed alone by sweep.run_group, bit for bit."""
    from milr_core.data import identity, load_dataset

    dataset = load_dataset("gaussians", dim=8)
    grid = {**BASE, "depths": [1], "widths": [8], "train": {"batch_size": 64, "max_steps": 60, "eval_every": 10},
            "variants": [{"name": "a"}, {"name": "full", "network": {"input_lr_factor": 1.0}}, {"name": "t", "threshold": 0.7}]}  # fmt: skip
    groups = groups_of(grid, identity=lambda name, options: identity(dataset))
    [call] = fill.plan_calls(groups, lanes=6)
    assert len(call.groups) == 3 and call.speculation == 1
    store, datasets = ResultStore(tmp_path / "store"), {content_hash(groups[0].spec["data"]): dataset}
    options = RunOptions(device="cpu", threads=1, lanes=6)
    seen = []
    done = fill.compute_call(call, store, options, datasets, on_group=lambda g, records: seen.append(len(records)))
    assert len(done) == 3 and seen == [2, 2, 2] and not list((tmp_path / "store" / ".claims").glob("*.claim"))
    for group in groups:
        for record in run_group(dataset, group.cells, options):
            packed = store.get(record["hash"])
            assert packed["provenance"]["packed_groups"] == 3 and packed["provenance"]["lanes"] == 6
            assert canonical([packed["result"], packed["ledger"]]) == canonical([record["result"], record["ledger"]])


def test_the_paper_fill_order_is_power_law_widest_and_deepest_first_and_lists_each_cell_once():
    groups = fill.missing_groups("paper")
    first = [(g.grid.name, g.spec["depth"], g.spec["width"]) for g in groups[:3]]
    assert first == [("power_law_mnist", 16, 2048), ("power_law_cifar10", 16, 2048), ("power_law_gaussians", 16, 2048)]
    assert all(g.seeds == [0, 1, 2] for g in groups[:3])
    experiments = [g.experiment for g in groups]
    assert experiments.index("sharpness") > max(i for i, e in enumerate(experiments) if e == "power_law")
    hashes = [c.hash for g in groups for c in g.cells]
    assert len(hashes) == len(set(hashes))
    assert "resolution" not in experiments and "beyond_mlps" in experiments  # a machine's own arithmetic is not filled
