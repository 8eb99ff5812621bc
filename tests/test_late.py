"""Continuing training from a saved state, and the late-training maximum LR built on it."""

import pytest
import torch

from milr_core.config import LateConfig, Run, SearchConfig, SharpnessConfig, TrainConfig
from milr_core.late import find_late_max_lr
from milr_core.network import NetworkSpec
from milr_core.probe import train_replicas
from milr_core.sharpness import sharpness_at_init


@pytest.fixture(scope="module")
def net(gaussians):
    return NetworkSpec(depth=2, width=16, in_dim=gaussians.in_dim, out_dim=gaussians.n_classes)


def test_two_halves_of_a_run_equal_the_whole_run(gaussians, net):
    lrs, seeds = [0.05, 0.2], [0, 1]
    common = dict(threshold=0.999, dtype=torch.float64, stop_at_threshold=False, keep_params=True)
    _, whole = train_replicas(gaussians, net, TrainConfig(batch_size=32, max_steps=60), lrs, seeds, **common)
    _, half = train_replicas(gaussians, net, TrainConfig(batch_size=32, max_steps=30), lrs, seeds, **common)
    _, resumed = train_replicas(
        gaussians, net, TrainConfig(batch_size=32, max_steps=30), lrs, seeds, init=half, first_step=30, **common
    )
    for a, b in zip(whole, resumed):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert not torch.allclose(whole[0], half[0])


def test_training_to_the_budget_judges_success_at_the_end(gaussians, net):
    train = TrainConfig(batch_size=64, max_steps=200, eval_every=20)
    outcome = train_replicas(gaussians, net, train, [0.1], [0], 0.8, stop_at_threshold=False)[0][0]
    assert outcome.steps == 200 and outcome.accuracy[-1][0] == 200  # judged once, at the end
    assert outcome.succeeded == (outcome.final_accuracy >= 0.8)


def test_late_max_lr_continues_from_the_pretrained_network_and_measures_the_sharpness_there(gaussians, net):
    train = TrainConfig(batch_size=64, max_steps=150, eval_every=10)
    sharpness = SharpnessConfig(subset_size=256, tol=1e-4)
    late = LateConfig(pretrain_steps=200, late_steps=60)
    result = find_late_max_lr(Run(gaussians, net), train, SearchConfig(lr_bounds=(0.01, 1.0)), late, sharpness)
    record = result.seed_record(0)
    assert record["base_lr"] == pytest.approx(0.5 * record["eta_star"])
    assert record["pretrain_accuracy"] >= 0.8  # the pretrained state is past the threshold
    assert record["late_status"] in ("converged", "no_failure")
    phases = {entry["phase"] for entry in result.seed_ledger(0)}
    assert phases == {"initial", "late"}
    (at_init,) = sharpness_at_init(Run(gaussians, net), sharpness)
    assert record["lambda_1_init"] == pytest.approx(at_init["lambda_1"], rel=1e-5)  # the same network and subset
    assert record["lambda_1_eff_init"] == pytest.approx(at_init["lambda_1_eff"], rel=1e-5)
    assert record["lambda_1_T"] != pytest.approx(record["lambda_1_init"], rel=1e-3)  # training moved it
    assert record["lambda_1_converged_T"] and record["lambda_1_eff_converged_T"]


@pytest.mark.parametrize("overrides, message", [({"base_fraction": 0.0}, "base_fraction"), ({"late_steps": 0}, "late_steps")])
def test_late_protocol_refuses_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        LateConfig(**overrides)
