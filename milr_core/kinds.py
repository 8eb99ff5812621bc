"""What each kind of cell computes: one runner per kind, ``(run, sections) -> [(result, ledger) per seed]``.

A runner is one call of a protocol with the cell's ``Run`` (its network, data, seeds, threshold and arithmetic) and
the config sections its kind reads (``grid.KIND_SECTIONS``); ``sweep.run_group`` builds both and writes the records.
A new kind of experiment is one runner here and its schema in ``grid.KIND_SECTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable

from milr_core.config import Run
from milr_core.grid import KIND_SECTIONS

Runner = Callable[[Run, dict], list[tuple[dict, list[dict]]]]  # (run, sections) -> (result, ledger) per seed


def run_eta_star(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    from milr_core.search import find_eta_star

    return find_eta_star(run, sections["train"], sections["search"]).records()


def run_search_trace(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    """One eta* search whose ledger keeps every probe's curves (chapter 1 draws them from the store)."""
    from milr_core.search import find_eta_star

    return find_eta_star(run, sections["train"], sections["search"], full_validation=True).records(curves=True)


def run_sharpness(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    from milr_core.sharpness import sharpness_at_init

    return [({k: v for k, v in r.items() if k != "wall_time_s"}, []) for r in sharpness_at_init(run, sections["sharpness"])]


def run_late(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    from milr_core.late import find_late_max_lr

    return find_late_max_lr(run, *(sections[s] for s in ("train", "search", "late", "sharpness"))).records()


def run_catapult(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    from milr_core.catapult import catapult_window

    return catapult_window(run, *(sections[s] for s in ("train", "search", "sharpness"))).records()


def run_trajectory(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    from milr_core.catapult import catapult_trajectory

    return [(record, []) for record in catapult_trajectory(run, sections["sharpness"], sections["trajectory"])]


def run_predictors(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    from milr_core.predictors import predictors_at_init

    return predictors_at_init(run, *(sections[s] for s in ("train", "sharpness", "range_test", "predictors")))


def run_model_eta_star(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    """eta* of the model section's family at the cell's depth and width (``families.py``)."""
    from milr_core.families import family_run
    from milr_core.search import find_eta_star

    return find_eta_star(family_run(run, sections["model"]), sections["train"], sections["search"]).records()


def run_model_range_test(run: Run, sections: dict) -> list[tuple[dict, list[dict]]]:
    """The LR range test of the model section's family at the cell's depth and width; the ledger holds its curve."""
    from milr_core.families import family_run
    from milr_core.lr_finder import lr_range_test

    tests = lr_range_test(family_run(run, sections["model"]), sections["train"], sections["range_test"])
    return [(test.record(), [test.curve()]) for test in tests]


KINDS: dict[str, Runner] = {
    "eta_star": run_eta_star,
    "search_trace": run_search_trace,
    "sharpness": run_sharpness,
    "late_lr": run_late,
    "catapult": run_catapult,
    "trajectory": run_trajectory,
    "resolution": run_eta_star,  # its arithmetic section is applied by run_group
    "predictors": run_predictors,
    "model_eta_star": run_model_eta_star,
    "model_range_test": run_model_range_test,
}
assert KINDS.keys() == KIND_SECTIONS.keys(), "every kind needs a runner and a schema"
