"""Filling a profile's store on a device: the seed groups it lacks, in order, packed into lanes, and computed.

The device session's fill step (``scripts/device_session.py``) is these functions and ``planner.fill_calls`` in a
loop; anyone filling a store on a machine they hold for a while can call them the same way.

- **What is missing, in what order** (``missing_groups``): every seed group of the profile's grids with a cell the
  store lacks, by experiment (``EXPERIMENT_ORDER``), costliest first (width^2 x depth: the widest and deepest cells,
  which a CPU cannot reach), deeper first among equals, then by dataset (``DATASET_ORDER``). A cell that two grids
  share is listed once, under the first. The resolution experiment is never filled: it measures the arithmetic of
  the machine that runs it (CPU threads among its variants), so its cells are computed where they are meant to be.
- **Packing** (``pack_key``, ``plan_calls``): eta* groups that differ only in what a lane may differ in (learning
  rates, input-layer factor, parameterisation, budget, threshold, search) train in one pool of fixed lanes
  (``search.search_cells``): they share the data, network shape, dtype, batch size, check interval, loss and
  divergence bound. Lanes one group would leave idle compute another's probes, and since a replica in fixed lanes
  computes the same bits whatever shares its pool (``runtime.py``), a packed group's records equal those of the group
  computed alone in the same lanes. A call packs groups until their seeds fill the lanes; speculation (k > 1) then
  fills only the lanes packing left idle, and only on a device whose speculation and packing checks passed.
- **Computing** (``compute_call``): each group is claimed in the store before its call starts (as ``sweep.work``
  claims), and its records are written and its claim released the moment its searches end; other kinds (sharpness,
  late LR, catapult, trajectory, ...) run one group per call through ``sweep.run_group``.

How long the calls take, and which fit in the time left: ``planner.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from milr_core.config import RunOptions
from milr_core.grid import TRAINED, Grid
from milr_core.store import ResultStore, content_hash
from milr_core.sweep import Cell, expand, make_run, records_of, run_group, seed_groups, stored_identity

# The order the fill takes the profile's experiments in (others after these, by name).
EXPERIMENT_ORDER = ("power_law", "sharpness", "input_layer", "parameterisations", "sensitivity", "late_lr",
                    "catapult", "preprocessing", "trajectory")  # fmt: skip
NOT_FILLED = ("resolution",)  # a machine's own arithmetic (chapter 1), computed by `milr experiment resolution` there
DATASET_ORDER = ("mnist", "cifar10", "gaussians", "fashion_mnist")
PACKABLE = {"eta_star": False, "search_trace": True}  # the eta* kinds, and whether they keep every probe's curves
SHARED_TRAIN = ("batch_size", "eval_every", "loss", "max_loss")  # what packed cells share (search.search_cells)
MAX_SPECULATION = 5


# ----------------------------------------------------------------------------------------------------------
# what is missing


@dataclass
class Group:
    """A seed group the store lacks: its experiment, grid, the cells still missing, and the experiment's rank."""

    experiment: str
    grid: Grid
    cells: list[Cell]
    rank: int = 0

    @property
    def spec(self) -> dict:
        return self.cells[0].spec

    @property
    def key(self) -> str:
        """The group's claim key in the store (``sweep.work`` claims the same)."""
        return self.cells[0].group

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def seeds(self) -> list[int]:
        return [cell.spec["seed"] for cell in self.cells]

    @property
    def variant(self):
        return next(v for v in self.grid.variants if v.name == self.cells[0].labels["variant"])

    def label(self) -> str:
        spec = self.spec
        return f"{self.grid.name} {self.variant.name} {spec['dataset']} d={spec['depth']} w={spec['width']} seeds {self.seeds}"

    def describe(self) -> dict:
        """The group as fill.json lists it."""
        spec = self.spec
        return {"experiment": self.experiment, "grid": self.grid.name, "kind": self.kind, "dataset": spec["dataset"],
                "variant": self.variant.name, "depth": spec["depth"], "width": spec["width"], "seeds": self.seeds,
                "hashes": [cell.hash for cell in self.cells]}  # fmt: skip


def missing_groups(profile: str, store: ResultStore | None = None) -> list[Group]:
    """Every seed group of the profile's grids with a cell ``store`` lacks (None: an empty store), in fill order.

    Args:
        profile: "smoke" or "paper".
        store: the store to fill; its records are read only to see which cells it holds.

    Returns:
        The groups by experiment (``EXPERIMENT_ORDER``), costliest first, deeper first, then by dataset; each holds
        only its missing cells, and a cell two grids share appears once.
    """
    from milr_core.experiments import experiment_grids, experiments

    names = sorted(set(experiments()) - set(NOT_FILLED), key=lambda n: (EXPERIMENT_ORDER.index(n) if n in EXPERIMENT_ORDER else 99, n))
    seen: set[str] = set()
    groups = []
    for rank, name in enumerate(names):
        for grid in experiment_grids(name, profile):
            for cells in seed_groups(expand(grid, stored_identity)):
                todo = [c for c in cells if c.hash not in seen and (store is None or not store.has(c.hash))]
                seen.update(c.hash for c in cells)
                if todo:
                    groups.append(Group(name, grid, todo, rank))
    dataset_rank = {name: i for i, name in enumerate(DATASET_ORDER)}
    return sorted(groups, key=lambda g: (g.rank, -g.spec["width"] ** 2 * g.spec["depth"], -g.spec["depth"],
                                         dataset_rank.get(g.spec["dataset"], 9)))  # fmt: skip


def dataset_for(group: Group, cache: dict):
    """The group's data, loaded once per identity (packed cells must share one dataset object); a dataset whose
    identity is not the one its cells were hashed with is refused in one line."""
    from milr_core.data import identity, load_dataset

    key = content_hash(group.spec["data"])
    if key not in cache:
        name = group.spec["dataset"]
        dataset = load_dataset(name, **group.grid.data, **group.variant.dataset_options[name])
        if content_hash(identity(dataset)) != key:
            raise ValueError(f"the {name} data found here is not the data the grid's cells name (its identity differs "
                             "from the committed manifest's): its records would not match the store's cells")  # fmt: skip
        cache[key] = dataset
    return cache[key]


# ----------------------------------------------------------------------------------------------------------
# packing


def pack_key(group: Group) -> str | None:
    """What groups packed into one pool must share (None: a kind that is not packed): kind, data, dtype, network
    shape, and the training settings every lane of a pool follows."""
    spec = group.spec
    if spec["kind"] not in PACKABLE:
        return None
    return content_hash({"kind": spec["kind"], "dataset": spec["dataset"], "data": spec["data"], "dtype": spec["dtype"],
                         "depth": spec["depth"], "width": spec["width"], "bias": spec["network"].get("bias", True),
                         "train": {k: spec["train"][k] for k in SHARED_TRAIN}})  # fmt: skip


def speculation_depth(seeds: int, lanes: int) -> int:
    """The largest k (at most ``MAX_SPECULATION``) whose rounds, (2^k - 1) probes per seed, fit in the lanes: k > 1
    only where packing left lanes idle."""
    k = 1
    while k < MAX_SPECULATION and seeds * (2 ** (k + 1) - 1) <= lanes:
        k += 1
    return k


@dataclass
class Call:
    """One computation of the fill: several compatible eta* groups in one pool, or one group of another kind."""

    groups: list[Group]
    speculation: int = 1

    @property
    def packed(self) -> bool:
        return pack_key(self.groups[0]) is not None

    @property
    def seeds(self) -> int:
        """The call's cells (its replicas in one round at k=1)."""
        return sum(len(g.seeds) for g in self.groups)


def plan_calls(groups: list[Group], lanes: int, exact: bool = True) -> list[Call]:
    """The fill's calls, in the order of their first group: each packable group with the later compatible ones,
    until their seeds fill ``lanes``.

    Args:
        groups: ``missing_groups``'s list.
        lanes: the pool's fixed lane count.
        exact: whether this device passed the speculation and packing checks; if not, one group per call at k=1.

    Returns:
        The calls; every group in exactly one.
    """
    keys = [pack_key(g) if exact else None for g in groups]
    taken: set[int] = set()
    calls = []
    for i, group in enumerate(groups):
        if i in taken:
            continue
        members = [group]
        if keys[i] is not None:
            for j in range(i + 1, len(groups)):
                if sum(len(m.seeds) for m in members) >= lanes:
                    break
                if j not in taken and keys[j] == keys[i]:
                    members.append(groups[j])
                    taken.add(j)
        seeds = sum(len(m.seeds) for m in members)
        calls.append(Call(members, speculation_depth(seeds, lanes) if exact and group.kind in TRAINED else 1))
    return calls


# ----------------------------------------------------------------------------------------------------------
# computing


def compute_call(call: Call, store: ResultStore, options: RunOptions, datasets: dict,
                 on_group: Callable[[Group, list[dict]], None] | None = None) -> list[Group]:  # fmt: skip
    """Compute one call's groups (claimed first, each written and released the moment it ends); returns the groups
    computed here (a group another process holds, or whose cells appeared meanwhile, is left out).

    Args:
        call: packed eta* groups (one ``search.search_cells``), or one group of another kind (``sweep.run_group``).
        store: where the records go. options: device, threads and lanes (``call.speculation`` sets k).
        datasets: a cache shared across calls (``dataset_for``). on_group: called with each group and its records.
    """
    from milr_core.runtime import set_precision
    from milr_core.search import search_cells

    options = dataclasses.replace(options, speculation=call.speculation)
    done: list[Group] = []
    with ExitStack() as everything:
        claims: dict[str, ExitStack] = {}
        todo = []
        for group in call.groups:
            claim = everything.enter_context(ExitStack())
            mine = claim.enter_context(store.claimed(group.key))
            cells = [c for c in group.cells if not store.has(c.hash)] if mine else []  # another process may have
            if not cells:  # written some meanwhile: then nothing of the group is left to compute here
                claim.close()
                continue
            claims[group.key] = claim
            todo.append(dataclasses.replace(group, cells=cells))

        def finish(group: Group, records: list[dict]) -> None:
            for record in records:
                store.put(record)
            claims.pop(group.key).close()
            done.append(group)
            if on_group:
                on_group(group, records)

        if not todo:
            return done
        if not call.packed:
            finish(todo[0], run_group(dataset_for(todo[0], datasets), todo[0].cells, options))
            return done
        runs = [make_run(dataset_for(g, datasets), g.cells, options) for g in todo]
        set_precision(runs[0][0].device, runs[0][0].dtype)
        curves = PACKABLE[todo[0].kind]
        started = last = time.perf_counter()
        share = dict.fromkeys(range(len(todo)), 0.0)  # each group's share of the pool's wall time

        def on_cell(index: int, result) -> None:
            nonlocal last
            now = time.perf_counter()
            for running in share:  # the time since the last ending, split among the groups still running
                share[running] += (now - last) / len(share)
            last = now
            wall = share.pop(index)
            run = runs[index][0]
            finish(todo[index], records_of(todo[index].cells, result.records(curves=curves), run, wall,
                                           packed_groups=len(todo), pack_wall_s=round(now - started, 3)))  # fmt: skip

        search_cells([(run, sections["train"], sections["search"]) for run, sections in runs], on_cell,
                     full_validation=curves)  # fmt: skip
    return done
