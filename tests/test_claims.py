"""The claims table's extension rows (e)-(g) on synthetic frames: their rules give the verdicts they state."""

import numpy as np
import pandas as pd

from milr_core.claims import catapult_claim, parameterisation_claim, predict_claim


def eta_frame(width_power: dict, depths=(1, 2, 4), widths=(16, 32, 64), seeds=(0, 1)) -> pd.DataFrame:
    """eta* = 8 d^-1 w^p per variant, with a little seed noise, as run_experiment returns it."""
    rng = np.random.default_rng(0)
    rows = [{"dataset": "gaussians", "variant": variant, "depth": d, "width": w, "seed": s, "kind": "eta_star",
             "network.parameterisation": variant if variant != "base" else "standard", "network.input_lr_factor": 0.1,
             "eta_star": 8 / d * w**p * np.exp(rng.normal(0, 0.01))}
            for variant, p in width_power.items() for d in depths for w in widths for s in seeds]  # fmt: skip
    return pd.DataFrame(rows)


def test_parameterisation_claim_reads_the_width_slopes():
    supported = parameterisation_claim(eta_frame({"standard": -0.5, "ntk": 0.5, "mup": 0.0}))
    assert supported.verdict == "supported" and "mup +0.00" in supported.measured.replace("-0.00", "+0.00")
    assert "extension" in supported.paper
    assert parameterisation_claim(eta_frame({"standard": -0.5, "mup": -0.6})).verdict == "not supported"
    assert parameterisation_claim(eta_frame({"standard": -0.5})).verdict == "not measured"


def test_catapult_claim_counts_networks_in_the_window():
    frame = pd.DataFrame({"eta_lambda": [1.0, 2.5, 3.9, 8.0, None]})
    claim = catapult_claim(frame)
    assert claim.verdict == "mixed" and claim.measured.startswith("2 of 4 networks inside, 1 below, 1 above")
    assert catapult_claim(pd.DataFrame({"eta_lambda": [2.0, 3.0]})).verdict == "supported"
    assert catapult_claim(pd.DataFrame({"eta_lambda": [None]})).verdict == "not measured"


def test_predict_claim_on_an_exact_law_is_supported():
    frame = eta_frame({"base": -1.0})  # eta* = 8 / (d w): every held-out cell is predicted exactly
    claim = predict_claim(frame)
    assert claim.verdict == "supported" and "mean |log error| 0.0" in claim.measured
    scattered = frame.assign(eta_star=frame["eta_star"] * np.repeat(np.exp([1.5, -1.5] * 4 + [1.5]), 2))  # 4.5x off
    assert predict_claim(scattered).verdict == "not supported"
