"""Sweeps that survive and share: expand a grid into cells, compute those the store lacks, write each as it ends.

A *cell* is one (dataset, variant, depth, width, seed). Its hash is the sha256 of the canonical JSON of
everything that determines its result, defaults filled in: the kind, the dataset's name and identity
(``data.identity``: the sha256 of its fingerprint, format, lossiness and options; a JPEG mirror of CIFAR-10
is not CIFAR-10), depth, width, seed, the resolved threshold, the network and every section the kind reads
(the search by its estimand, ``SearchConfig.identity``), the dtype and ``milr_core.ENGINE_VERSION``. Not
hashed: where the data was found, the device, the executor, the speculation depth, threads and workers,
and the grid's and variant's names, so the same cell in two grids is computed once.

Cells equal but for the seed form a *seed group*, computed by one call with the seeds batched (a seed's
result does not depend on which seeds it was batched with) and written as one record per seed, as soon
as the call returns. Before computing a group a process claims it in the store (``ResultStore.claimed``),
so several processes (``workers``), Ray tasks or machines on a shared folder compute each group once, and
a killed worker's group is taken up again once its claim is stale. A sweep killed at any instant resumes
where it stopped.

Reading needs no data: with ``compute=False`` the data identity comes from the committed manifest
(``data.manifest_identity``), so a machine without MNIST or CIFAR-10 renders the committed store.

A new kind of experiment is one entry of ``kinds.KINDS``: the sections it reads (``grid.KIND_SECTIONS``) and a
runner returning (result, ledger) per seed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from milr_core import ENGINE_VERSION
from milr_core.config import Run, RunOptions, default_threshold
from milr_core.grid import KIND_SECTIONS, TRAINED, Grid, GridError, load_grid
from milr_core.kinds import KINDS
from milr_core.network import NetworkSpec
from milr_core.store import ResultStore, content_hash, provenance

POLL_S = 5.0  # how often a worker looks again at groups other workers hold
SAY_WAITING_S = 60.0  # how often a waiting worker says what it waits for


# ----------------------------------------------------------------------------------------------------------
# cells


@dataclass(frozen=True)
class Cell:
    """One (dataset, variant, depth, width, seed): what is hashed (spec), its labels, its seed group and data."""

    hash: str
    spec: dict
    labels: dict
    group: str
    data_key: tuple[str, str]  # (dataset, canonical options): which loaded dataset it trains on


def data_key(name: str, options: dict) -> tuple[str, str]:
    return name, content_hash(options)


def _section_identity(config) -> dict:
    return config.identity() if hasattr(config, "identity") else dataclasses.asdict(config)


def expand(grid: Grid, identity: Callable[[str, dict], dict]) -> list[Cell]:
    """The grid's cells in the order dataset, variant, depth, width, seed (seeds of a group are adjacent).

    ``identity(dataset, options)`` gives the data's identity: from the loaded data, or from the manifest.
    """
    cells = []
    for name in grid.datasets:
        for variant in grid.variants:
            options = variant.dataset_options[name]
            common = {
                "kind": grid.kind,
                "engine_version": ENGINE_VERSION,
                "dataset": name,
                "data": identity(name, options),
                "network": variant.network,
                "dtype": variant.dtype,
                **{section: _section_identity(config) for section, config in variant.sections.items()},
            }
            if grid.kind in TRAINED:
                common["threshold"] = default_threshold(name) if variant.threshold is None else variant.threshold
            labels = {"grid": grid.name, "variant": variant.name}
            for depth in grid.depths:
                for width in grid.widths:
                    group = content_hash({**common, "depth": depth, "width": width})
                    for seed in grid.seeds:
                        spec = {**common, "depth": depth, "width": width, "seed": seed}
                        cells.append(Cell(content_hash(spec), spec, labels, group, data_key(name, options)))
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.hash in seen:
            twin = seen[cell.hash].labels["variant"]
            raise GridError(f"grid {grid.name!r}: variants {twin!r} and {cell.labels['variant']!r} have identical settings")
        seen[cell.hash] = cell
    return cells


def seed_groups(cells: list[Cell]) -> list[list[Cell]]:
    """Cells equal but for the seed, grouped, in the order of their first cell."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    return list(groups.values())


def load_datasets(grid: Grid) -> dict:
    """Each (dataset, options) the grid trains on, loaded once."""
    from milr_core.data import load_dataset

    datasets = {}
    for name in grid.datasets:
        for variant in grid.variants:
            key = data_key(name, variant.dataset_options[name])
            if key not in datasets:
                datasets[key] = load_dataset(name, **grid.data, **variant.dataset_options[name])
    return datasets


def _manifest_or_placeholder(name: str, options: dict) -> dict:
    """The manifest's identity, or a stand-in (enough to find twin variants, not to match stored records)."""
    from milr_core.data import manifest_identity

    return manifest_identity(name, options) or {"unknown": options}


def stored_identity(name: str, options: dict) -> dict:
    """The data identity the committed manifest records, else that of the data loaded from disk."""
    from milr_core.data import identity, load_dataset, manifest_identity

    return manifest_identity(name, options) or identity(load_dataset(name, **options))


# ----------------------------------------------------------------------------------------------------------
# computing


def make_run(dataset, cells: list[Cell], options: RunOptions) -> tuple[Run, dict]:
    """The ``Run`` of one seed group (device, k and lanes resolved) and its sections' config dataclasses."""
    from milr_core import runtime

    spec = cells[0].spec
    sections = {s: rebuild(s, spec[s]) for s in KIND_SECTIONS[spec["kind"]]}
    net = NetworkSpec(spec["depth"], spec["width"], dataset.in_dim, dataset.n_classes, **spec["network"])
    seeds = [cell.spec["seed"] for cell in cells]
    options = dataclasses.replace(options, dtype=spec["dtype"])
    return runtime.make_run(dataset, net, seeds, spec.get("threshold"), options), sections


def run_group(dataset, cells: list[Cell], options: RunOptions) -> list[dict]:
    """Compute one seed group in one call; returns one record per cell. Runs wherever the executor puts it."""
    from milr_core.runtime import set_precision

    from milr_core.runtime import threads

    arithmetic = cells[0].spec.get("arithmetic")
    if arithmetic:  # a resolution cell names its arithmetic: threads, lanes and k are part of what it measures
        options = dataclasses.replace(options, lanes=arithmetic["lanes"], speculation=arithmetic["speculation"])
    with threads(arithmetic["threads"] if arithmetic else None):
        run, sections = make_run(dataset, cells, options)
        set_precision(run.device, run.dtype)
        start = time.perf_counter()
        outcomes = KINDS[cells[0].spec["kind"]](run, sections)
        return records_of(cells, outcomes, run, time.perf_counter() - start)


def records_of(cells: list[Cell], outcomes: list[tuple[dict, list[dict]]], run: Run, wall_time_s: float,
               **extra) -> list[dict]:  # fmt: skip
    """One store record per cell of a seed group, with the provenance of the call that computed it."""
    from milr_core.runtime import arithmetic

    fingerprint = arithmetic(run.device, run.dtype, run.lanes)
    origin = provenance(run.device, wall_time_s, seeds_batched=len(run.seeds), speculation=run.speculation,
                        lanes=run.lanes, threads=fingerprint["threads"], arithmetic=fingerprint, **extra)  # fmt: skip
    return [
        {"hash": cell.hash, "cell": cell.spec, "labels": cell.labels, "result": result, "ledger": ledger,
         "provenance": origin}
        for cell, (result, ledger) in zip(cells, outcomes)
    ]  # fmt: skip


def rebuild(section: str, values: dict):
    """A section's config dataclass from the values a cell spec holds."""
    from milr_core.config import SECTIONS

    return SECTIONS[section](**values)


def work(grid: Grid, store: ResultStore, cells: list[Cell], run: RunOptions, datasets: dict | None = None,
         on_records: Callable[[list[dict]], None] | None = None) -> int:  # fmt: skip
    """Compute every group of ``cells`` that no other process holds, then wait for those they hold.

    Returns the number of groups this process computed. A group whose claim goes stale (its owner died)
    is taken up here.
    """
    datasets = datasets if datasets is not None else {}
    pending = [g for g in seed_groups(cells) if not all(store.has(c.hash) for c in g)]
    computed, said = 0, time.time()
    while pending:
        waiting = []
        for group in pending:
            if all(store.has(c.hash) for c in group):
                continue
            with store.claimed(group[0].group) as mine:
                if not mine:
                    waiting.append(group)
                    continue
                todo = [c for c in group if not store.has(c.hash)]  # another process may have finished some
                if not todo:
                    continue
                key = todo[0].data_key
                if key not in datasets:
                    datasets.update(load_datasets(grid))
                records = run_group(datasets[key], todo, run)
                for record in records:
                    store.put(record)
                computed += 1
                if on_records:
                    on_records(records)
        pending = waiting
        if pending:
            if time.time() - said > SAY_WAITING_S:
                said = time.time()
                print(f"waiting for {len(pending)} seed group(s) other processes hold: "
                      f"{store.describe_claim(pending[0][0].group) or 'a claim just released'}", file=sys.stderr)  # fmt: skip
            time.sleep(POLL_S)
    return computed


def worker_main(grid: Grid, store_path: str, cells: list[Cell], run: RunOptions) -> int:
    """One worker process of a local sweep: pinned threads, the shared claim loop."""
    from milr_core.runtime import pin_threads

    pin_threads(run.threads, run.workers)
    return work(grid, ResultStore(store_path), cells, run)


def run_local(grid: Grid, store: ResultStore, cells: list[Cell], run: RunOptions, datasets: dict, bar) -> None:
    """In this process (one worker), or in supervised worker processes sharing the store's claims (``workers.py``)."""
    if run.workers == 1:
        if run.threads:
            from milr_core.runtime import pin_threads

            pin_threads(run.threads)
        work(grid, store, cells, run, datasets, on_records=lambda records: bar.update(len(records)))
        return
    from milr_core.workers import run_workers

    def tick() -> None:
        bar.n = bar.total - len(cells) + sum(store.file(c.hash).exists() for c in cells)
        bar.refresh()

    run_workers(worker_main, (grid, str(store.path), cells, run), run.workers, on_tick=tick)


def run_ray(grid: Grid, store: ResultStore, cells: list[Cell], run: RunOptions, datasets: dict, bar) -> None:
    """One task per seed group on the current Ray cluster (started locally if none); the driver claims and writes."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init()
    pending, held = [], {}
    try:
        from milr_core.runtime import resolve_device

        device = resolve_device(run.device)
        resources = {"num_gpus": 1} if device.startswith("cuda") else {"num_cpus": 1}
        task = ray.remote(**resources)(_ray_task)
        refs = {key: ray.put(dataset) for key, dataset in datasets.items()}
        for group in seed_groups(cells):
            if all(store.has(c.hash) for c in group) or not store.try_claim(group[0].group):
                continue
            ref = task.remote(refs[group[0].data_key], group, dataclasses.replace(run, threads=run.threads or 1))
            pending.append(ref)
            held[ref] = group[0].group
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            records = ray.get(done[0])
            for record in records:
                store.put(record)
            store.release(held.pop(done[0]))
            bar.update(len(records))
    finally:
        for ref in pending:  # a failed task or an interrupt: stop the rest, keep what was written
            ray.cancel(ref)
        for key in held.values():
            store.release(key)
        if started:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("executor 'ray' needs ray: pip install 'milr_core[ray]'") from None
    return ray


def _ray_task(dataset, group: list[Cell], run: RunOptions) -> list[dict]:
    from milr_core.runtime import pin_threads

    pin_threads(run.threads, run.workers)
    return run_group(dataset, group, run)


EXECUTORS = {"local": run_local, "ray": run_ray}


def run_sweep(
    grid: dict | str | Path | Grid,
    store: str | Path,
    *,
    run: RunOptions = RunOptions(),
    executor: str = "local",
    resume: bool = True,
    compute: bool = True,
    progress: bool = True,
):
    """Compute the grid's cells missing from ``store``, writing each as it finishes; returns the grid's frame.

    Args:
        grid: a grid (a YAML file, a mapping, or a checked ``grid.Grid``; ``grid.py`` describes the format).
        store: the result store's folder (created if needed), shared safely by several sweeps.
        run: how it computes (device, dtype, speculation, lanes, workers, threads, progress).
        executor: "local" (this process, or ``run.workers`` supervised processes) or "ray".
        resume: skip the cells already in the store (a killed sweep continues where it stopped); False refuses
            a store that holds any of the grid's cells, so that a sweep never silently mixes with an earlier one.
        compute: False computes nothing and reads no data: the frame then holds the stored cells only.
        progress: a progress bar on stderr.

    Returns:
        ``ResultStore.to_frame`` of the grid's cells, in grid order, labelled with this grid's name and variant
        names, with ``grid_cells`` (the grid's size) and ``grid_stored`` (how many of its cells the frame holds),
        so that a figure can say it shows part of a grid.
    """
    from tqdm.auto import tqdm

    grid = load_grid(grid)
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    if executor == "ray" and compute:
        _import_ray()
    planned = expand(grid, _manifest_or_placeholder)  # twins and a non-resumable store refused before any data is read
    results = ResultStore(store)
    if compute and not resume and any(results.has(cell.hash) for cell in planned):
        raise FileExistsError(
            f"{results.path} already holds cells of grid {grid.name!r}; resume (--resume) to skip them, or use a fresh store"
        )
    if compute:
        datasets = load_datasets(grid)
        from milr_core.data import identity

        by_name = {key: identity(dataset) for key, dataset in datasets.items()}
        cells = expand(grid, lambda name, options: by_name[data_key(name, options)])
    else:
        datasets, cells = {}, expand(grid, stored_identity)
    finished = {cell.hash for cell in cells if results.has(cell.hash)}
    if finished and compute and not resume:
        raise FileExistsError(
            f"{results.path} already holds {len(finished)} of the {len(cells)} cells of grid {grid.name!r}; "
            "resume (--resume) to skip them, or use a fresh store"
        )
    todo = [cell for cell in cells if cell.hash not in finished] if compute else []
    if todo:
        bar = tqdm(total=len(cells), initial=len(finished), desc=grid.name, unit="cell", disable=not progress)
        try:
            EXECUTORS[executor](grid, results, todo, run, datasets, bar)
        finally:
            bar.close()
    present = [cell for cell in cells if results.has(cell.hash)]
    frame = results.to_frame([cell.hash for cell in present])
    if len(frame):
        frame["grid"] = grid.name
        frame["variant"] = [cell.labels["variant"] for cell in present]
    frame["grid_cells"], frame["grid_stored"] = len(cells), len(present)
    return frame
