"""The resolution of eta*: its band across arithmetics against the seed spread, on planted frames."""

import math

import pandas as pd
import pytest

from milr_core.resolution import COMMITTED, REFERENCE, resolution_summary, resolution_table, with_committed


def frame(rows):
    return pd.DataFrame([{"dataset": "mnist", "depth": 2, "width": 128, "status": "converged", **r} for r in rows])


def test_the_band_is_the_median_over_seeds_of_max_over_min_and_the_spread_is_the_references():
    rows = frame([
        {"variant": REFERENCE, "seed": 0, "eta_star": 1.0}, {"variant": REFERENCE, "seed": 1, "eta_star": 2.0},
        {"variant": REFERENCE, "seed": 2, "eta_star": 1.5},
        {"variant": "float64", "seed": 0, "eta_star": 1.0}, {"variant": "float64", "seed": 1, "eta_star": 2.2},
        {"variant": "float64", "seed": 2, "eta_star": 1.5 * 1.1},
    ])  # fmt: skip
    table = resolution_table(rows)
    (row,) = table.to_dict("records")
    assert row["variant"] == "float64" and row["identical seeds"] == 1 and row["seeds"] == 3
    assert row["ratio"] == pytest.approx(1.1) and row["band"] == pytest.approx(1.1) and row["seed spread"] == 2.0
    assert row["band within seed spread"] is True
    summary = resolution_summary(table).set_index("variant")
    assert summary.loc["float64", "identical seeds"] == 1 and summary.loc["all", "band within seed spread"] == 1


def test_a_seed_that_failed_somewhere_leaves_the_band_and_the_committed_record_joins_as_a_variant():
    rows = frame([{"variant": REFERENCE, "seed": s, "eta_star": 1.0 + s} for s in range(2)])
    rows = pd.concat([rows, frame([{"variant": "2 threads", "seed": 0, "eta_star": 1.3},
                                   {"variant": "2 threads", "seed": 1, "eta_star": math.nan, "status": "no_success"}])])  # fmt: skip
    committed = frame([{"seed": s, "eta_star": (1.0 + s) * 0.8} for s in range(2)]).drop(columns="variant", errors="ignore")
    table = resolution_table(with_committed(rows, committed)).set_index("variant")
    assert table.loc["2 threads", "seeds in band"] == 1 and table.loc["2 threads", "band"] == pytest.approx(1.3 / 0.8)
    assert table.loc[COMMITTED, "ratio"] == pytest.approx(0.8) and table.loc[COMMITTED, "identical seeds"] == 0
