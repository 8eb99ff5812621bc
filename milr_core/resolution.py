"""How precisely eta* is defined: its band under perturbations that change no mathematics, against its seed spread.

The resolution grid (``grids/resolution.yaml``) computes the same cells in several arithmetics (float64, two
threads, fixed lanes with speculation) beside a reference (this machine, float32, one thread, elastic lanes);
the committed power-law record of the same cell, computed on another CPU, is one more. Per cell:

- each perturbation's ratio to the reference (median over seeds of eta* / eta*_reference), and whether it gave
  the reference's eta* bit for bit for every seed;
- the **band**: per seed, the largest over the smallest eta* across all arithmetics, then the median over seeds;
- the **seed spread**: the largest over the smallest of the reference's eta* across seeds.

A band inside the seed spread means the float rounding is already inside what the cell-and-seed bootstrap of
every fit resamples (``fit.py``), so the intervals account for it. Every number is ours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REFERENCE = "float32, 1 thread"  # the resolution grid's reference variant
COMMITTED = "committed record (another CPU)"  # the power-law record of the same cell, in the comparison
CELL = ["dataset", "depth", "width"]


def with_committed(resolution: pd.DataFrame, power_law: pd.DataFrame | None) -> pd.DataFrame:
    """The resolution frame with the power-law records of its cells added as one more variant (``COMMITTED``)."""
    rows = resolution[["variant", *CELL, "seed", "eta_star", "status"]]
    if power_law is None or power_law.empty:
        return rows
    cells = rows[CELL].drop_duplicates()
    same = power_law.merge(cells, on=CELL)[[*CELL, "seed", "eta_star", "status"]]
    return pd.concat([rows, same.assign(variant=COMMITTED)], ignore_index=True)


def resolution_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell and perturbation: ratio to the reference (median over seeds), identical seeds, and the cell's
    band and seed spread (``with_committed``'s frame; seeds that did not converge in some variant are left out of
    the band, counted in ``seeds in band``).

    Columns: dataset, depth, width, variant, ratio, identical seeds, seeds, band, seeds in band, seed spread,
    band within seed spread.
    """
    eta = frame.assign(eta_star=pd.to_numeric(frame["eta_star"], errors="coerce"))
    wide = eta.pivot_table(index=[*CELL, "seed"], columns="variant", values="eta_star", aggfunc="first")
    if REFERENCE not in wide:
        return pd.DataFrame(columns=[*CELL, "variant", "ratio", "identical seeds", "seeds", "band", "seeds in band",
                                     "seed spread", "band within seed spread"])  # fmt: skip
    rows = []
    for cell, seeds in wide.groupby(level=CELL, sort=False):
        complete = seeds.dropna()
        per_seed = complete.max(axis=1) / complete.min(axis=1)
        band = float(np.median(per_seed)) if len(per_seed) else np.nan
        reference = seeds[REFERENCE].dropna()
        spread = float(reference.max() / reference.min()) if len(reference) > 1 else np.nan
        for variant in seeds.columns:
            if variant == REFERENCE:
                continue
            pair = seeds[[REFERENCE, variant]].dropna()
            rows.append({**dict(zip(CELL, cell)), "variant": variant,
                         "ratio": float(np.median(pair[variant] / pair[REFERENCE])) if len(pair) else np.nan,
                         "identical seeds": int((pair[variant] == pair[REFERENCE]).sum()), "seeds": len(pair),
                         "band": band, "seeds in band": len(per_seed), "seed spread": spread,
                         "band within seed spread": bool(band <= spread) if np.isfinite(band * spread) else None})  # fmt: skip
    return pd.DataFrame(rows)


def resolution_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per perturbation, over the cells: cells, seeds with the reference's eta* bit for bit, the median and largest
    ``abs(log ratio)`` as a factor; and one row "all" with the cells whose band lies within their seed spread."""
    rows = []
    for variant, group in table.groupby("variant", sort=False):
        factor = np.exp(np.abs(np.log(group["ratio"].dropna())))
        rows.append({"variant": variant, "cells": len(group), "identical seeds": int(group["identical seeds"].sum()),
                     "seeds": int(group["seeds"].sum()), "median factor": float(factor.median()) if len(factor) else np.nan,
                     "largest factor": float(factor.max()) if len(factor) else np.nan})  # fmt: skip
    cells = table.drop_duplicates(subset=CELL)
    within = cells["band within seed spread"].dropna()
    rows.append({"variant": "all", "cells": len(cells), "band within seed spread": int(within.sum()),
                 "median band": float(cells["band"].median()), "median seed spread": float(cells["seed spread"].median())})
    return pd.DataFrame(rows)
