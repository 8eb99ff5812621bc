"""Every oracle check of milr_core.checks passes on the CPU (the device session runs the same ones on a GPU)."""

import pytest

from milr_core import checks


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.__name__)
def test_check_passes_on_cpu(check):
    summary = check("cpu")
    assert isinstance(summary, str) and "\n" not in summary and "cpu" in summary


def test_checks_are_listed_once_and_gating_names_exist():
    names = [c.__name__ for c in checks.CHECKS]
    assert len(set(names)) == len(names) and all(n.startswith("check_") for n in names)
    assert checks.GATING <= set(names) and "check_batching" not in checks.GATING


def test_ledger_difference_treats_nan_as_equal_and_reports_a_change():
    a = [{"round": 1, "lr": 1.0, "seed": 0, "outcome": "diverged", "steps": 3, "final_accuracy": None,
          "final_loss": float("nan")}]  # fmt: skip
    b = [dict(a[0], final_loss=float("nan"))]
    assert checks.ledger_difference(a, b, 0.0) is None
    assert "steps" in checks.ledger_difference(a, [dict(a[0], steps=4)], 0.0)
    assert "final_loss" in checks.ledger_difference(a, [dict(a[0], final_loss=1.0)], 1e-4)
    assert checks.ledger_difference(a, a + a, 0.0) == "1 probes vs 2"


def test_a_broken_oracle_fails_with_the_numbers(monkeypatch):
    """A check raises AssertionError naming what disagreed (here: a Lanczos that answers 1% high)."""
    real = checks.top_hessian_eigenvalue

    def off_by_one_percent(*args, **kwargs):
        result = real(*args, **kwargs)
        result.eigenvalue *= 1.01
        return result

    monkeypatch.setattr(checks, "top_hessian_eigenvalue", off_by_one_percent)
    with pytest.raises(AssertionError, match=r"lanczos: lambda_1 .*relative error 0\.01"):
        checks.check_eigensolvers("cpu")
