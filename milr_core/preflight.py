"""Checks before compute: the memory a cell needs, a grid's size and hours.

What used to fail late (after the data was loaded, or hours into training) is refused here in one line,
before any data is read (every value's range is its config field's constraint, ``config.py``):

- **memory**: ``cell_memory`` reckons the bytes a cell holds at once (parameters x replicas x dtype bytes
  x copies, plus activations, plus the data) and ``check_memory`` compares them with what the device has
  (a CPU: ``MemAvailable`` of /proc/meminfo; CUDA: ``torch.cuda.mem_get_info``).
- **size**: ``grid_cost`` counts a grid's cells and estimates its hours with a FLOP model (forward 2
  FLOPs per weight and example, backward twice that, at ``FLOP_RATES``); ``check_size`` refuses a grid
  above ``LARGE_CELLS`` cells or ``LARGE_HOURS`` hours unless ``LARGE_FLAG`` is given.

Every number here (limits, copies, rates, thresholds) is ours: rough, and on the safe side.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from milr_core.network import NetworkSpec


class PreflightError(ValueError):
    """A run refused before it starts; the message says what and why, in one line."""


# ----------------------------------------------------------------------------------------------------------
# memory

DTYPE_BYTES = {"float32": 4, "tf32": 4, "float64": 8}
PARAMETER_COPIES = 4  # a parameter, its gradient, the copy a probe restarts from, one workspace
ACTIVATION_COPIES = 3  # per unit and example: pre-activation, activation, the gradient flowing back
LANCZOS_VECTORS = 32  # the eigensolver's first basis (curvature.lanczos grows it only when it needs more)
VALIDATION_CHUNK = 500  # examples per validation forward pass (probe.VALIDATION_CHUNK)
TRAINED = ("eta_star", "search_trace", "late_lr", "catapult")
MEASURED = ("sharpness", "late_lr", "catapult", "trajectory")  # the kinds that run the eigensolver
INPUT_SHAPES = {"mnist": (784, 10), "fashion_mnist": (784, 10), "cifar10": (3072, 10)}  # (in_dim, classes)


def data_shape(name: str, options: dict) -> tuple[int, int, int, int]:
    """(training examples, validation examples, in_dim, classes) of a dataset, known without reading it."""
    from milr_core.data import N_OFFICIAL_TRAIN, check_options

    resolved = check_options(name, options)
    if name == "gaussians":
        return 2 * resolved["n_train_per_class"], 2 * resolved["n_val_per_class"], resolved["dim"], 2
    n_val = resolved["val_size"]
    return N_OFFICIAL_TRAIN[name] - n_val, n_val, *INPUT_SHAPES[name]


def cell_memory(kind: str, sections: dict, network: NetworkSpec, replicas: int, dtype: str, data_values: int = 0) -> int:
    """Bytes one seed group holds at once, roughly: the larger of training and measuring, plus the data (float32).

    Args:
        kind, sections: the grid's kind and its config sections by name ("train", "sharpness", ...).
        network: the network; replicas: networks trained side by side (seeds x speculative lanes).
        dtype: "float32", "tf32" or "float64"; data_values: numbers the dataset holds (inputs of both splits).
    """
    per = DTYPE_BYTES[dtype]
    units = network.width * network.depth
    need = 0
    if kind in TRAINED:
        examples = max(sections["train"].batch_size, VALIDATION_CHUNK)
        need = replicas * (network.n_params() * PARAMETER_COPIES + examples * units * ACTIVATION_COPIES) * per
    if kind in MEASURED:
        sharpness = sections["sharpness"]
        examples = min(sharpness.chunk_size, sharpness.subset_size)
        basis = min(sharpness.max_iter or LANCZOS_VECTORS, LANCZOS_VECTORS)
        measure = (network.n_params() * (PARAMETER_COPIES + basis) + 2 * examples * units * ACTIVATION_COPIES) * per
        need = max(need, measure)
    return need + 4 * data_values


def available_memory(device: str) -> int | None:
    """Bytes free on ``device`` now (a CPU: MemAvailable), None where it cannot be known."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def check_memory(label: str, need: int, device: str, available: int | None = None, workers: int = 1) -> None:
    """PreflightError if ``workers`` processes each needing ``need`` bytes do not fit in what ``device`` has."""
    available = available_memory(device) if available is None else available
    if available is not None and need * workers > available:
        each = f" each, {workers} workers" if workers > 1 else ""
        raise PreflightError(
            f"{label} needs about {_gib(need)} of memory{each}, but {device} has {_gib(available)} available: "
            "use smaller widths or depths, fewer seeds, fewer workers, or a larger machine"
        )


def check_grid_memory(grid, device: str, speculation: Callable[[NetworkSpec, int], int] = lambda network, n_seeds: 1,
                      workers: int = 1, available: int | None = None) -> None:  # fmt: skip
    """Refuse a grid whose largest seed group (deepest and widest, all its seeds batched) does not fit on ``device``.

    Args:
        grid: a checked ``grid.Grid``.
        speculation: k for a network and a number of seeds (the sweep's ``speculation_for``); 2^k - 1 lanes per seed.
    """
    available = available_memory(device) if available is None else available
    for name in grid.datasets:
        for variant in grid.variants:
            n_train, n_val, in_dim, classes = data_shape(name, variant.dataset_options[name])
            network = NetworkSpec(max(grid.depths), max(grid.widths), in_dim, classes, **variant.network)
            replicas = len(grid.seeds) * (2 ** speculation(network, len(grid.seeds)) - 1)
            need = cell_memory(grid.kind, variant.sections, network, replicas, variant.dtype, (n_train + n_val) * in_dim)
            cell = f"{name} depth {network.depth} width {network.width} ({len(grid.seeds)} seeds batched)"
            label = f"grid {grid.name}: the cell {cell}"
            check_memory(label, need, device, available, workers)


# ----------------------------------------------------------------------------------------------------------
# size and hours

FLOP_RATES = {"cpu": 2e10, "cuda": 2e13}  # FLOP/s one worker sustains on these small networks (ours, rough)
LARGE_CELLS = 2_000
LARGE_HOURS = 100.0
LARGE_FLAG = "--large"
EIGEN_PRODUCTS = 60  # Hessian-vector products of a typical eigensolve (ours; each about 4 forward passes)
CRITICAL_FORWARDS = 30  # forward passes of the critical LR's line search (predictors.py: a ladder, then bisection)


def probes_per_search(search) -> int:
    """Trainings one search runs: the bisection's halvings from the bracket to rtol, its ends, the diagnostics."""
    lo, hi = search.lr_bounds
    halvings = max(1, math.ceil(math.log2(max(math.log(hi / lo) / math.log1p(search.rtol), 2.0))))
    if search.method == "ksection":
        rounds = max(1, math.ceil(halvings / math.log2(search.lrs_per_round)))
        return rounds * search.lrs_per_round + len(search.probe_above)
    return halvings + 2 + len(search.probe_above)


def _flops_per_forward_flop(kind: str, sections: dict, n_train: int, n_val: int) -> float:
    """A cell's FLOPs per FLOP of one example's forward pass (the model is linear in it)."""
    total = 0.0
    if kind in TRAINED:
        train = sections["train"]
        steps = train.budget_steps(n_train)
        probe = steps * 3 * train.batch_size + steps / train.eval_every * n_val
        total += probes_per_search(sections["search"]) * probe
    if kind == "late_lr":
        late, batch = sections["late"], sections["train"].batch_size
        total += 3 * batch * (late.pretrain_steps + probes_per_search(sections["search"]) * late.late_steps)
    if kind in MEASURED:
        sharpness = sections["sharpness"]
        solves = (1 + sharpness.effective + sharpness.bounds) * (2 if kind == "late_lr" else 1)
        if kind == "trajectory":
            trajectory = sections["trajectory"]
            solves = len(trajectory.eta_lambdas) * (trajectory.steps // trajectory.every + 1)
            total += len(trajectory.eta_lambdas) * trajectory.steps * 3 * sharpness.subset_size
        total += solves * EIGEN_PRODUCTS * 4 * sharpness.subset_size
    if "range_test" in sections:  # the LR range test's ramp, trained from a fresh network
        total += sections["range_test"].steps * 3 * sections["train"].batch_size
    if kind == "predictors":  # the first update's gradient, and its line search of forward passes
        total += (3 + CRITICAL_FORWARDS) * sections["train"].batch_size
    return total


@dataclass(frozen=True)
class Cost:
    """A grid's size and our rough estimate of its compute."""

    name: str
    cells: int
    groups: int
    flops: float
    device: str

    @property
    def hours(self) -> float:
        return self.flops / FLOP_RATES["cuda" if self.device.startswith("cuda") else "cpu"] / 3600

    @property
    def large(self) -> bool:
        return self.cells > LARGE_CELLS or self.hours > LARGE_HOURS

    def announce(self) -> str:
        rate = FLOP_RATES["cuda" if self.device.startswith("cuda") else "cpu"]
        return (f"grid {self.name}: {self.cells} cells in {self.groups} seed groups, about {self.hours:.3g} hours "
                f"on {self.device} (our rough model: {rate:.0e} FLOP/s)")  # fmt: skip


def grid_cost(grid, device: str = "cpu") -> Cost:
    """The size and estimated FLOPs of a checked ``grid.Grid``, in time linear in its axes (no cell is expanded).

    A model family's network (kinds ``model_*``) is counted as our MLP of the same depth and width: right for the
    mlp family, a floor for a CNN or a transformer of that many channels or units."""
    flops = 0.0
    for name in grid.datasets:
        for variant in grid.variants:
            n_train, n_val, in_dim, classes = data_shape(name, variant.dataset_options[name])
            per_forward = _flops_per_forward_flop(grid.kind, variant.sections, n_train, n_val)
            hidden = sum(depth - 1 for depth in grid.depths)
            for width in grid.widths:  # NetworkSpec.flops_per_example summed over the depths
                forward = 2 * (len(grid.depths) * width * (in_dim + classes) + hidden * width * width)
                flops += per_forward * forward * len(grid.seeds)
    groups = len(grid.datasets) * len(grid.variants) * len(grid.depths) * len(grid.widths)
    return Cost(grid.name, grid.n_cells, groups, flops, device)


def check_size(cost: Cost, allowed: bool = False) -> str:
    """The one line announcing ``cost``; PreflightError if the grid is large and ``allowed`` (the flag) is not given."""
    if cost.large and not allowed:
        raise PreflightError(f"{cost.announce()}; a grid above {LARGE_CELLS} cells or {LARGE_HOURS:g} hours "
                             f"runs only with {LARGE_FLAG}")  # fmt: skip
    return cost.announce()
