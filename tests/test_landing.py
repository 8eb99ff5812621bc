"""The landing page answers: one row per question (the question in plain words, its verdict per dataset where they
differ, one number with its interval, why, the chapter), short cells, and a summary figure of what (a1) decides.
(The landing tests on the old claims format stay in test_book.py.)"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_fit import planted
from test_tables import as_store, off_law

from milr_core import landing, rules
from milr_core.fit import fit_in_regime
from milr_core.rules import NOT_SUPPORTED, SUPPORTED, UNDECIDED

ROOT = Path(__file__).resolve().parents[1]
MAX_WORDS = 25  # a landing cell says its piece in about this many words


def planted_claims() -> pd.DataFrame:
    """A claims table as claims_table gives it: a question every unit agrees on, one they split on, one without."""
    judged = lambda verdict, why: rules.Judgement(verdict, why, 0.1)  # noqa: E731
    law = rules.Question("a1", "(a) eta* is a power of depth x width", '"well predicted"',
                         "In our regime, is eta* a power law of depth x width?", "rule a1", "02_power_law")  # fmt: skip
    product = rules.Question("a2", "(a) eta* is a power of depth x width", '"well predicted"',
                             "Do depth and width enter only through their product d w?", "rule a2", "02_power_law")  # fmt: skip
    bounds = rules.Question("d1", "(d) bounds", '"prove bounds"', "Does every network satisfy our bounds?", "rule d1",
                            "08_theory")  # fmt: skip
    rows = law.rows([rules.answer(unit, judged(SUPPORTED, "interval below x1.5"), f"scatter x1.2{i} [x1.1, x1.3]")
                     for i, unit in enumerate(("MNIST", "CIFAR-10", "Gaussians"))])  # fmt: skip
    rows += product.rows([rules.answer("MNIST", judged(UNDECIDED, "interval straddles an edge of +-0.2"),
                                       "a - b -0.40 [-0.63, -0.08]"),
                          rules.answer("CIFAR-10", judged(NOT_SUPPORTED, "interval outside +-0.2"),
                                       "a - b -0.55 [-0.77, -0.26]"),
                          rules.unmeasured("CIFAR-10 (per-feature)", "fewer than 4 cells in the regime")])  # fmt: skip
    rows += bounds.rows([rules.unmeasured("", "the store holds no cells of sharpness")])
    return pd.DataFrame(rows, columns=rules.COLUMNS)


def list_table_rows(table: str) -> list[list[str]]:
    """The cells of a MyST list-table, row by row (header first)."""
    rows = []
    for line in table.splitlines():
        if line.startswith("* - "):
            rows.append([line[4:]])
        elif line.startswith("  - ") and rows:
            rows[-1].append(line[4:])
    return rows


def test_one_row_per_question_with_its_verdicts_number_why_and_chapter():
    rows = list_table_rows(landing.verdicts_table(planted_claims()))
    assert rows[0] == ["Question", "Verdict", "Number [95% interval]", "Why", "Measured in"] and len(rows) == 4
    law, product, bounds = rows[1:]
    assert law[0] == "(a1) In our regime, is η\\* a power law of depth × width?" and law[1] == "✓ supported"
    assert law[2] == "MNIST: scatter ×1.20 [×1.1, ×1.3]" and law[3] == "interval below ×1.5"
    assert law[4] == "{doc}`chapter 2 </notebooks/02_power_law>`"
    assert product[1] == "? undecided: MNIST; ✗ not supported: CIFAR-10; – not measured: CIFAR-10 (per-feature)"
    assert product[2].startswith("MNIST: a - b −0.40") and product[3] == "interval straddles an edge of ±0.2"
    assert bounds[1] == "– not measured" and bounds[2] == "–" and "chapter 8" in bounds[4]


def test_no_landing_cell_is_long_and_none_says_mixed():
    table = landing.verdicts_table(planted_claims())
    for row in list_table_rows(table)[1:]:
        for cell in row:
            assert len(cell.split()) <= MAX_WORDS, cell
    assert "mixed" not in table and set(landing.VERDICT_MARKS) == set(rules.VERDICTS)


def test_the_summary_figure_draws_the_law_fitted_in_the_regime():
    law = as_store(off_law(planted(-0.7, -0.7, c=3.0, seed_noise=0.0)), dataset="mnist")
    fig = landing.summary_figure(law)
    ax = fig.axes[0]
    fitted = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(fitted) == 1 and ax.get_title() == "MNIST (t = 0.8)"
    x, y = fitted[0].get_data()
    assert np.allclose(y, fit_in_regime(law, n_bootstrap=10).predict(x))  # the regime's law, not all cells'
    assert np.allclose(y, 3.0 * x**-0.7)
    assert any("in regime: α = 0.70" in text.get_text() for text in ax.texts)


def test_write_landing_with_questions(tmp_path, monkeypatch):
    import sys
    import types

    claims = types.ModuleType("milr_core.claims")
    claims.claims_table = lambda profile: planted_claims()
    experiments = types.ModuleType("milr_core.experiments")
    experiments.run_experiment = lambda name, profile: as_store(off_law(planted(-0.7, -0.7)), dataset="mnist")
    experiments.coverage = lambda profile: pd.DataFrame([{"experiment": "power_law", "grid": "g", "cells": 10,
                                                          "stored": 10, "widths": "16", "depths": "4",
                                                          "devices": "cpu", "hours": 1.0}])  # fmt: skip
    monkeypatch.setitem(sys.modules, "milr_core.claims", claims)
    monkeypatch.setitem(sys.modules, "milr_core.experiments", experiments)
    landing.write_landing("paper", tmp_path)
    text = (tmp_path / "verdicts.md").read_text()
    assert "(a2) Do depth and width enter only through their product d w?" in text and text.count("* - (") == 3
    assert (tmp_path / "summary.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.slow  # reads the committed store: about 15 s
def test_the_committed_store_answers_every_question_in_short_cells():
    from milr_core.claims import claims_table

    if not (ROOT / "results" / "paper").is_dir():
        pytest.skip("no committed store")
    claims = claims_table("paper")
    assert not claims.apply(lambda c: c.astype(str).str.contains("mixed")).any().any()
    rows = list_table_rows(landing.verdicts_table(claims))[1:]
    assert len(rows) == claims["question"].nunique()
    for row in rows:
        for cell in row:
            assert len(re.sub(r"\{doc\}`[^`]*`", "link", cell).split()) <= MAX_WORDS, cell
