"""The book's experiments: named grids per profile, run into the profile's result store.

Each experiment is a YAML file in ``milr_core/grids/`` with one list of sweep grids per profile:

- ``smoke``: tiny grids that run live on a CPU in seconds to a few minutes (CI, a first look);
- ``paper``: the full grids (our choice of depths, widths, seeds and budgets; the paper's are not
  known), computed on a GPU and committed. By default this profile only *reads* the store: a CPU
  machine renders the committed cells and never starts hours of training; figures built from a grid
  with missing cells say so in their captions.

Whether missing cells are computed: ``run_experiment(..., compute=...)``, else the environment
variable ``MILR_COMPUTE`` ("1" or "0"; ``milr reproduce --compute`` sets it for the notebooks), else
the profile's default (``smoke``: compute; ``paper``: read only).

Every profile has its own store, ``repository.committed_store(profile)``, shared by all experiments: a
cell that two chapters need (the same hash) is computed once. It is ``$MILR_RESULTS/<profile>`` if set,
else ``results/<profile>`` at the top of the checkout; outside a checkout (a pip install on Colab) the
committed ``paper`` store is fetched from the repository once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from milr_core import safe_yaml
from milr_core.config import RunOptions
from milr_core.grid import Grid, GridError, load_grid, restricted
from milr_core.repository import committed_store
from milr_core.store import ResultStore
from milr_core.sweep import expand, run_sweep, stored_identity

GRIDS_DIR = Path(__file__).parent / "grids"
PROFILES = ("smoke", "paper")
COMPUTES_BY_DEFAULT = {"smoke": True, "paper": False}


def experiments() -> list[str]:
    return sorted(path.stem for path in GRIDS_DIR.glob("*.yaml"))


def experiment_grids(name: str, profile: str) -> list[Grid]:
    """The checked grids of one experiment at one profile (errors name the file, profile and problem)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    path = GRIDS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(experiments())}")
    profiles = safe_yaml.load(path)
    if profile not in profiles:
        raise GridError(f"{path.name}: no {profile!r} profile")
    grids = []
    for grid in profiles[profile]:
        try:
            grids.append(load_grid(grid))
        except GridError as error:
            raise GridError(f"{path.name} ({profile}): {error}") from None
    return grids


def computes_missing(profile: str, compute: bool | None = None) -> bool:
    """Whether cells missing from the profile's store are computed (see the module docstring)."""
    if compute is not None:
        return compute
    setting = os.environ.get("MILR_COMPUTE", "")
    if setting not in ("", "0", "1"):
        raise ValueError(f"MILR_COMPUTE must be 1 (compute missing cells) or 0 (read the store only), got {setting!r}")
    return COMPUTES_BY_DEFAULT[profile] if setting == "" else setting == "1"


PARTS = ("datasets", "variants", "depths", "widths", "seeds")  # what ``part`` may restrict


def run_experiment(
    name: str,
    profile: str = "smoke",
    *,
    compute: bool | None = None,
    part: dict[str, list] | None = None,
    run: RunOptions = RunOptions(),
    executor: str = "local",
) -> pd.DataFrame:
    """The experiment's cells as one tidy frame with a profile column: every cell if ``compute``, else the stored ones.

    Args:
        name: the experiment (a file of ``milr_core/grids``: power_law, sharpness, ...).
        profile: "smoke" (tiny grids, computed live) or "paper" (the book's grids, read from the committed store).
        compute: compute the cells the store lacks (None: ``MILR_COMPUTE``, else the profile's default).
        part: restricts the grids, e.g. ``{"widths": [1024, 2048], "datasets": ["mnist"]}`` (keys: datasets,
            variants (names), depths, widths, seeds), so that a GPU session computes the cells that matter first.
        run, executor: how it computes (``run_sweep``'s).

    Returns:
        One row per network (cell and seed) with the record's result, settings and provenance, and ``profile``.

    Raises ``ValueError`` when ``part`` matches no cell and ``LookupError`` when nothing is to be computed and the
    store holds none of the cells.
    """
    grids = experiment_grids(name, profile)
    if part:
        grids = [g for g in (restricted(grid, part) for grid in grids) if g is not None]
        if not grids:
            raise ValueError(f"no cell of experiment {name!r} ({profile}) matches {part}")
    compute = computes_missing(profile, compute)
    store = committed_store(profile)
    frames = [run_sweep(grid, store, run=run, executor=executor, compute=compute, progress=run.progress) for grid in grids]
    frame = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
    if frame.empty:
        raise LookupError(
            f"the {profile!r} store {store} holds none of experiment {name!r}'s cells; compute them on a GPU "
            f"(milr experiment {name} --profile {profile} --compute, or MILR_COMPUTE=1 milr reproduce --profile {profile})"
        )
    frame["profile"] = profile
    return frame


def ledger(name: str, profile: str = "smoke", *, compute: bool | None = None) -> pd.DataFrame:
    """One row per probe of the experiment's stored cells (``ResultStore.ledger_frame``): chapter 1's ladder."""
    frame = run_experiment(name, profile, compute=compute)
    return ResultStore(committed_store(profile)).ledger_frame(frame["hash"])


def coverage(profile: str) -> pd.DataFrame:
    """How much of each grid of every experiment the profile's store holds, and on which devices it was computed.

    One row per grid: experiment, grid, cells, stored, the widths and depths of the stored cells, the
    devices (with torch versions) named in their provenance, and the hours they took there: a seed group
    shares one call, so each record counts its call's wall time over ``seeds_batched``. Computes nothing.
    """
    store = ResultStore(committed_store(profile))
    rows = []
    for name in experiments():
        for grid in experiment_grids(name, profile):
            cells = expand(grid, stored_identity)
            records = store.records(cell.hash for cell in cells)
            widths = sorted({r["cell"]["width"] for r in records})
            depths = sorted({r["cell"]["depth"] for r in records})
            devices = sorted({f"{r['provenance']['device']} (torch {r['provenance']['torch']})" for r in records})
            seconds = sum(r["provenance"]["wall_time_s"] / r["provenance"].get("seeds_batched", 1) for r in records)
            rows.append({
                "experiment": name, "grid": grid.name, "cells": len(cells), "stored": len(records),
                "widths": ", ".join(map(str, widths)), "depths": ", ".join(map(str, depths)),
                "devices": "; ".join(devices), "hours": seconds / 3600,
            })  # fmt: skip
    return pd.DataFrame(rows)
