"""milr: maximal initial learning rates in deep ReLU networks (Iyer, Hanin, Rolnick, ICML 2023).

The public face, by what a user does with it; each name is imported from its module on first use (``import
milr_core`` imports no torch, so ``milr --help`` stays instant), and everything else is internal:

- what is computed: ``NetworkSpec``, ``TrainConfig``, ``SearchConfig``, ``SharpnessConfig``, ``LateConfig``, one
  ``Run`` (a protocol call, everything resolved) and ``RunOptions`` (how a command or sweep runs);
- data: ``load_dataset``;
- the protocols: ``find_eta_star``, ``search_cells`` (several cells packed into one pool), ``sharpness_at_init``,
  ``find_late_max_lr``, ``catapult_window``, ``train_replicas`` (probes, the layer below);
- sweeps and stores: ``run_sweep``, ``ResultStore``, ``run_experiment`` (the book's grids);
- answers: ``fit_power_law``, ``predict_eta_star``, ``claims_table``.

    >>> from milr_core import NetworkSpec, Run, find_eta_star, load_dataset   # eta* of one network
"""

from importlib import import_module

# The version of the engine's numerical behaviour, part of every sweep cell's hash (see sweep.py).
# Bump it by hand with any change that alters results (training, search, sharpness, data), so that
# stores never mix records computed by different engines; refactors that change no number keep it.
ENGINE_VERSION = "3"

_PUBLIC = {
    # what is computed: a network, the protocol settings, one run
    "NetworkSpec": "network",
    "TrainConfig": "config",
    "SearchConfig": "config",
    "SharpnessConfig": "config",
    "LateConfig": "config",
    "Run": "config",
    "RunOptions": "config",
    # data
    "load_dataset": "data",
    # the protocols
    "find_eta_star": "search",
    "search_cells": "search",
    "sharpness_at_init": "sharpness",
    "find_late_max_lr": "late",
    "catapult_window": "catapult",
    "train_replicas": "probe",
    # sweeps, stores and the book's experiments
    "run_sweep": "sweep",
    "ResultStore": "store",
    "run_experiment": "experiments",
    # answers
    "fit_power_law": "fit",
    "predict_eta_star": "predict",
    "claims_table": "claims",
}
__all__ = ["ENGINE_VERSION", *_PUBLIC]


def __getattr__(name: str):
    """A public name, imported from its module the first time it is used."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'milr_core' has no attribute {name!r}")
    value = getattr(import_module(f"milr_core.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
