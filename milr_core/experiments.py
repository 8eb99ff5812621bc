"""The book's experiments: named grids per profile, run into the profile's result store.

Each experiment is a YAML file in ``milr_core/grids/`` with one list of sweep grids per profile:

- ``smoke``: tiny grids that run live on a CPU in seconds to a few minutes (CI, a first look);
- ``paper``: the full grids (our choice of depths, widths, seeds and budgets; the paper's are not
  known). Cells already in the committed store are loaded, missing ones computed on the device.

Every profile has its own store, ``<results root>/<profile>/``, shared by all experiments: a cell
that two chapters need (the same hash) is computed once. The results root is ``$MILR_RESULTS`` if
set, else ``results/`` at the top of the repository (found from the working directory upwards by
its ``_toc.yml``), else ``results/`` in the working directory (a pip install, e.g. on Colab).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import yaml

from milr_core.sweep import GridError, load_grid, run_sweep

GRIDS_DIR = Path(__file__).parent / "grids"
PROFILES = ("smoke", "paper")


def experiments() -> list[str]:
    return sorted(path.stem for path in GRIDS_DIR.glob("*.yaml"))


def results_root() -> Path:
    if os.environ.get("MILR_RESULTS"):
        return Path(os.environ["MILR_RESULTS"])
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "_toc.yml").is_file():
            return folder / "results"
    return Path.cwd() / "results"


def experiment_grids(name: str, profile: str) -> list[dict]:
    """The checked grids of one experiment at one profile (errors name the file, profile and problem)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    path = GRIDS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(experiments())}")
    profiles = yaml.safe_load(path.read_text())
    if profile not in profiles:
        raise GridError(f"{path.name}: no {profile!r} profile")
    return [load_grid(grid) for grid in profiles[profile]]


def run_experiment(name: str, profile: str = "smoke", *, device: str = "auto", executor: str = "local") -> pd.DataFrame:
    """Every cell of the experiment's grids (computed if the store lacks it), one tidy frame with a profile column."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    grids = experiment_grids(name, profile)
    store = results_root() / profile
    frames = [run_sweep(grid, store, executor=executor, device=device, resume=True) for grid in grids]
    frame = pd.concat(frames, ignore_index=True)
    frame["profile"] = profile
    return frame
