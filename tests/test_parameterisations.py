"""NTK and muP through the parameterisation seam: muP is standard at the base width, NTK keeps He's
forward second moments, the LR multipliers are as documented, and sweeps accept them."""

import math

import pytest
import torch

from milr_core import sweep
from milr_core.config import TrainConfig
from milr_core.data import load_dataset
from milr_core.grid import GridError, load_grid
from milr_core.model import forward, init_params
from milr_core.network import MUP_BASE_WIDTH, parameter_lr_multipliers
from milr_core.probe import train_replicas

from helpers import network_for


@pytest.fixture(scope="module")
def small_gaussians():
    """A smaller draw of the Gaussian task than conftest's: these tests train many parameterisations."""
    return load_dataset("gaussians", dim=8, n_train_per_class=256, n_val_per_class=128)


def parameterised(dataset, parameterisation, depth=2, width=MUP_BASE_WIDTH, **kwargs):
    return network_for(dataset, depth, width, parameterisation=parameterisation, **kwargs)


def test_mup_is_standard_at_the_base_width(small_gaussians):
    standard, mup = parameterised(small_gaussians, "standard"), parameterised(small_gaussians, "mup")
    seeds = [0, 1]
    for a, b in zip(init_params(standard, seeds), init_params(mup, seeds)):
        assert torch.equal(a, b)
    assert parameter_lr_multipliers(standard) == parameter_lr_multipliers(mup)
    train = TrainConfig(batch_size=32, max_steps=30, eval_every=5)
    runs = [train_replicas(small_gaussians, net, train, [0.3, 0.3], seeds, 0.999, full_validation=True)[0] for net in (standard, mup)]
    for a, b in zip(*runs):
        assert (a.outcome, a.steps, a.loss, a.accuracy) == (b.outcome, b.steps, b.loss, b.accuracy)


def logit_second_moments(spec, seeds, x):
    """mean over examples and logits of z^2, one value per seed."""
    return forward(spec, init_params(spec, seeds, torch.float64), x.double()).pow(2).mean(dim=(1, 2))


@pytest.mark.parametrize("depth", [1, 4])
def test_ntk_forward_second_moments_match_he_init(small_gaussians, depth):
    """Over independent seeds, E[z^2] of the logits is the same for NTK and standard, and both equal He
    init's prediction 2 E||x||^2 / in_dim (ReLU halves a symmetric pre-activation's second moment, He's
    factor 2 restores it). The tolerance, 4 standard errors, fails for e.g. a multiplier sqrt(1/fan_in)."""
    x = small_gaussians.x_train[:256]
    expected = (2 * x.double().pow(2).sum(dim=1).mean() / small_gaussians.in_dim).item()
    moments = {
        name: logit_second_moments(parameterised(small_gaussians, name, depth=depth, width=128), range(offset, offset + 300), x)
        for name, offset in (("standard", 0), ("ntk", 10_000))
    }
    stderr = {name: m.std().item() / math.sqrt(len(m)) for name, m in moments.items()}
    ntk, standard = moments["ntk"].mean().item(), moments["standard"].mean().item()
    assert abs(ntk - standard) <= 4 * math.hypot(stderr["ntk"], stderr["standard"])
    assert abs(ntk - expected) <= 4 * stderr["ntk"] and abs(standard - expected) <= 4 * stderr["standard"]
    assert 4 * stderr["ntk"] < 0.25 * expected  # the test has power: a factor 2 off would fail it


def test_ntk_same_seed_same_function(small_gaussians):
    """Same seed, same draws: NTK moves the scale from the weights to the forward pass."""
    x = small_gaussians.x_train[:64].double()
    outs = [forward(spec, init_params(spec, [3], torch.float64), x) for spec in
            (parameterised(small_gaussians, "standard", width=300), parameterised(small_gaussians, "ntk", width=300))]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)  # standard's weights are rounded to float32


@pytest.mark.parametrize("input_lr_factor", [0.1, 1.0])
def test_lr_multipliers_are_as_documented(small_gaussians, input_lr_factor):
    width, depth = 4 * MUP_BASE_WIDTH, 3
    per_tensor = {  # weights and biases of the input, two hidden and the output layer
        "standard": [input_lr_factor] * 2 + [1.0] * 6,
        "ntk": [input_lr_factor] * 2 + [1.0] * 6,
        "mup": [input_lr_factor * 4] * 2 + [1.0] * 4 + [0.25] * 2,
    }
    for name, expected in per_tensor.items():
        spec = parameterised(small_gaussians, name, depth=depth, width=width, input_lr_factor=input_lr_factor)
        assert parameter_lr_multipliers(spec) == pytest.approx(expected, rel=1e-15)
    mup = parameterised(small_gaussians, "mup", depth=depth, width=width)
    output_weights = init_params(mup, [0])[-2]
    he_std = math.sqrt(2 / width)
    assert output_weights.std().item() == pytest.approx(he_std * math.sqrt(MUP_BASE_WIDTH / width), rel=0.1)


def test_unknown_parameterisation_is_a_clear_error(small_gaussians):
    with pytest.raises(ValueError, match=r"parameterisation must be one of mup, ntk, standard, got 'mu_p'"):
        parameterised(small_gaussians, "mu_p")


def test_sweep_accepts_a_parameterisation():
    grid = {
        "datasets": ["gaussians"], "dataset_options": {"gaussians": {"dim": 8}},
        "depths": [1], "widths": [16], "seeds": [0],
        "variants": [{"name": p, "network": {"parameterisation": p}} for p in ("standard", "ntk", "mup")],
    }  # fmt: skip
    cells = sweep.expand(load_grid(grid), sweep.stored_identity)
    assert [c.spec["network"]["parameterisation"] for c in cells] == ["standard", "ntk", "mup"]
    assert len({c.hash for c in cells}) == 3
    with pytest.raises(GridError, match="parameterisation must be one of mup, ntk, standard, got 'bogus'"):
        load_grid(grid | {"variants": [{"name": "bogus", "network": {"parameterisation": "bogus"}}]})
