"""Where and how the engine computes: the device, matmul precision, CPU threads, dtypes, lanes, and an arithmetic
fingerprint that says which of those fix a result's bits.

A probe trains its replicas as one batched computation (``probe.py``). Whether a replica's arithmetic depends on
what shares its batch is a property of the kernels, not of the mathematics:

- on one CPU thread, and in float64, a replica computes the same bits in a batch of any size (tests);
- with several CPU threads or on a GPU, the kernel chosen for a batched product, the split of a reduction
  between threads, or the reduction order of the loss can depend on the batch's size, so a probe near the edge of
  training can flip (measured: MNIST 2x128 at 300 steps, seed 0, eta* 1.540 with k=1 and 1.334 with k=5 on an H200).

**Lanes** remove that dependence: a pool with a fixed number of lanes L runs every step on exactly L replicas
(idle lanes padded), so every kernel sees the same shapes whatever the speculation depth k, the seeds batched
or the cells packed together, and a replica's bits depend only on (device, dtype, threads, L). ``lanes=None``
(*elastic*) lets the batch shrink and grow with the work, which saves compute and is exact where the arithmetic
is batch-independent: the default on one CPU thread. Every record's provenance names its lanes and the
arithmetic fingerprint (``arithmetic``), so a reader can tell which values should reproduce bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "tf32": torch.float32}
GPU_LANES = 24  # lanes on a GPU unless measured otherwise (the device session's bench picks its own; ours)
MAX_LANES = 256


def resolve_device(device: str) -> str:
    """"auto" as cuda where torch sees a GPU, else cpu; a CUDA device torch does not see is refused."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def set_precision(device: str, dtype: str) -> None:
    """TF32 matmuls only when the dtype asks for them (plain fp32 otherwise, also where a GPU defaults to TF32)."""
    tf32 = dtype == "tf32"
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32


def pin_threads(threads: int | None = None, workers: int = 1) -> int:
    """torch threads = ``threads``, else the cores / workers: oversubscribed cores make every step 20-50x slower."""
    count = threads or max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(count)
    return count


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``count`` inside the block (None: left as they are), restored after it."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_dtype(name: str) -> torch.dtype:
    """The storage dtype of a run's dtype name (tf32 stores float32)."""
    return DTYPES[name]


def _lanes_for(device: str, threads: int, asked: int | None, replicas: int) -> int | None:
    """The lane count of a run: ``asked``; else elastic (None) on one CPU thread, where the arithmetic is
    batch-independent; else fixed: ``GPU_LANES`` on a GPU, the run's first round of ``replicas`` on a CPU."""
    if asked is not None:
        return asked
    if device.startswith("cuda"):
        return GPU_LANES
    return None if threads == 1 else max(1, replicas)


@cache
def _cpu_model() -> tuple[str, str]:
    """The CPU's model name and a short hash of its feature flags (which vector units the kernels may use)."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return name, hashlib.sha256(flags.encode()).hexdigest()[:12] if flags else "unknown"


def arithmetic(device: str, dtype: str, lanes: int | None) -> dict:
    """What fixes a record's floating-point bits besides its cell: device and its model, torch build and BLAS,
    threads, dtype and TF32, and the lane count (None: elastic)."""
    device = str(device)
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        model = {"device": torch.cuda.get_device_name(index), "cuda": torch.version.cuda,
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(index)))}  # fmt: skip
    else:
        name, flags = _cpu_model()
        model = {"device": f"cpu: {name}", "cpu_flags": flags}
    build = torch.__config__.show()
    blas = next((line.split("=", 1)[1].strip() for line in build.splitlines() if "BLAS_INFO" in line), "unknown")
    return {
        **model,
        "torch": torch.__version__,
        "torch_build": hashlib.sha256(build.encode()).hexdigest()[:12],
        "blas": blas,
        "threads": torch.get_num_threads(),
        "dtype": dtype,
        "tf32": torch.get_float32_matmul_precision() != "highest",
        "lanes": lanes,
    }


def make_run(dataset, network, seeds, threshold: float | None, options):
    """A ``config.Run`` from a user's ``RunOptions``: the device resolved, k and the lanes chosen for it (after the
    threads are pinned: one thread allows elastic lanes)."""
    from milr_core.config import Run

    device = resolve_device(options.device)
    seeds = tuple(seeds)
    k = options.speculation or 1  # on a GPU too, until its speculation and packing checks have passed (checks.py)
    lanes = _lanes_for(device, torch.get_num_threads(), options.lanes, len(seeds) * (2**k - 1))
    return Run(dataset, network, seeds, threshold, device, options.dtype, k, lanes, options.progress)
