"""The LR range test (``lr_finder.py``): fastai's smoothing, stop and suggestion rules against hand-computed answers,
and the whole test, trained by the engine, on a planted quadratic where the loss turns up exactly at eta = 2 / lambda."""

import math

import pytest
import torch

from milr_core.config import RangeTestConfig, Run, TrainConfig
from milr_core.data import Dataset
from milr_core.lr_finder import lr_range_test, minimum, ramp, smooth, steep, stop_index, suggest, valley


class Linear:
    """Replicas of a linear map x -> x W (no bias, no ReLU): under MSE its loss is a quadratic in W."""

    def __init__(self, in_dim: int, out_dim: int, lr_multiplier: float = 1.0) -> None:
        self.in_dim, self.out_dim, self.lr_multiplier = in_dim, out_dim, lr_multiplier

    def shape(self) -> tuple:
        return ("linear", self.in_dim, self.out_dim)

    def init_params(self, seeds, dtype, device) -> list[torch.Tensor]:
        weights = [torch.randn(self.in_dim, self.out_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return [torch.stack(weights).to(device=device, dtype=dtype)]

    def lr_multipliers(self) -> list[float]:
        return [self.lr_multiplier]

    def forward_multipliers(self) -> list[float]:
        return [1.0]

    def forward(self, params, x, multipliers=None) -> torch.Tensor:
        return torch.matmul(x, params[0])


def planted(curvatures: list[float], n_classes: int = 3) -> Dataset:
    """One example per input direction, x_i = sqrt(lambda_i d) e_i: the MSE Hessian of a linear map is diag(lambda)
    per output column. Training and validation sets are the same examples."""
    d = len(curvatures)
    x = torch.diag(torch.tensor(curvatures, dtype=torch.float64).mul(d).sqrt()).float()
    y = torch.arange(d) % n_classes
    return Dataset("planted", x, y, x, y, {"n_classes": n_classes, "default_threshold": 0.5})


def test_smoothing_is_fastais_debiased_average():
    assert smooth([2.0, 2.0, 2.0], 0.98) == pytest.approx([2.0, 2.0, 2.0])  # debiased: a constant stays put
    beta = 0.9
    first, second = 1.0, 3.0
    expected = ((1 - beta) * (beta * first + second)) / (1 - beta**2)
    assert smooth([first, second], beta) == pytest.approx([first, expected])
    assert smooth([1.0, 5.0], 0.0) == [1.0, 5.0]


def test_the_stop_is_the_first_step_above_the_factor_times_the_minimum():
    assert stop_index([3.0, 2.0, 1.0, 3.9, 4.1, 9.0], 4.0) == 4
    assert stop_index([3.0, 2.0, 1.0, 3.9], 4.0) is None
    assert stop_index([3.0, math.nan, 1.0], 4.0) == 1
    assert stop_index([3.0, math.inf], 4.0) == 1


def test_the_ramp_is_exponential_from_lr_min():
    config = RangeTestConfig(lr_min=1e-3, lr_max=10.0, steps=4)
    rates = [config.lr_min * ramp(config)(s) for s in range(5)]
    assert rates == pytest.approx([1e-3, 1e-2, 1e-1, 1.0, 10.0])


def test_suggestion_rules_on_planted_curves():
    lrs = [10.0 ** (k / 4) for k in range(-20, 5)]  # 25 rates, a quarter decade apart
    drops = [0.0] * 24
    drops[9] = -2.0  # the steepest segment starts at index 9
    drops[3] = -0.5
    losses = [5.0]
    for step in drops:
        losses.append(losses[-1] + step)
    assert steep(lrs, losses) == lrs[9]
    assert minimum([1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 2.0, 1.0, 1.5, 4.0]) == pytest.approx(0.3)
    # valley: a curve decreasing through index m, then rising; fastai sets max_start = m - (m + 1) = -1 there
    m = 11
    curve = [20.0 - k for k in range(m + 1)] + [10.0 + k for k in range(8)]
    rates = [float(k + 1) for k in range(len(curve))]
    sections = (m + 1) / 3
    assert valley(rates, curve) == rates[-1 + int(sections) + int(sections / 2)]


def test_suggestions_trim_as_fastai_and_give_none_on_too_short_a_curve():
    config = RangeTestConfig(skip_start=2, skip_end=1)
    lrs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    smoothed = [9.0, 1.0, 5.0, 4.0, 3.0, 0.5]  # the trimmed curve is 5, 4, 3 (rates 4, 8, 16)
    assert suggest(lrs, smoothed, config)["minimum"] == pytest.approx(1.6)
    assert suggest(lrs, [9.0, 1.0, 5.0, math.nan, 3.0, 0.5], config) == dict.fromkeys(("steep", "minimum", "valley"))


@pytest.mark.parametrize("multiplier", [1.0, 0.25])
def test_on_a_planted_quadratic_the_loss_turns_up_at_two_over_lambda(multiplier):
    """Full-batch GD on an isotropic quadratic: loss_{s+1} / loss_s = (1 - eta_s m lambda)^2, so the recorded raw
    loss (no smoothing, nothing trimmed) is smallest at the first step whose rate reaches 2 / (m lambda)."""
    curvature, d = 2.5, 6
    data = planted([curvature] * d)
    model = Linear(d, 3, multiplier)
    config = RangeTestConfig(lr_min=1e-3, lr_max=100.0, steps=60, smoothing=0.0, diverge_factor=4.0, skip_start=0,
                             skip_end=0)  # fmt: skip
    train = TrainConfig(batch_size=d, loss="mse", max_loss=1e12)
    (test,) = lr_range_test(Run(data, model, seeds=(3,), threshold=0.5, dtype="float64"), train, config)
    edge = 2 / (multiplier * curvature)
    first_past = next(s for s in range(config.steps) if config.lr_min * ramp(config)(s) >= edge)
    assert test.lrs[: first_past + 1] == pytest.approx([config.lr_min * ramp(config)(s) for s in range(first_past + 1)])
    assert min(range(len(test.losses)), key=test.losses.__getitem__) == first_past
    assert test.suggestions["minimum"] == pytest.approx(test.lrs[first_past] / 10)
    assert test.stop == "diverged" and test.losses[-1] > 4 * min(test.losses)
    assert all(loss <= 4 * min(test.losses[: i + 1]) for i, loss in enumerate(test.losses[:-1]))
    assert test.steps_trained >= test.steps_used and test.record()["range_forward_examples"] == test.steps_used * d


def test_the_range_test_trains_every_seed_like_a_probe_alone():
    """Seeds batched in one pool give each seed the curve it gets alone (one CPU thread, elastic lanes)."""
    data = planted([1.0, 2.0, 3.0, 4.0])
    model, train = Linear(4, 3), TrainConfig(batch_size=4, loss="mse")
    config = RangeTestConfig(lr_min=1e-2, lr_max=10.0, steps=30)
    both = lr_range_test(Run(data, model, seeds=(0, 1), threshold=0.5), train, config)
    alone = lr_range_test(Run(data, model, seeds=(1,), threshold=0.5), train, config)
    assert [t.seed for t in both] == [0, 1]
    assert both[1].losses == alone[0].losses and both[1].suggestions == alone[0].suggestions
    assert both[0].losses != both[1].losses


def test_fixed_lanes_give_the_curves_of_elastic_ones_in_float64():
    """Idle lanes padded beside the seeds change no bits on one CPU thread in float64 (``runtime.py``)."""
    data = planted([1.0, 2.0, 3.0, 4.0])
    model, train = Linear(4, 3), TrainConfig(batch_size=4, loss="mse")
    config = RangeTestConfig(lr_min=1e-2, lr_max=10.0, steps=30)
    elastic, fixed = (lr_range_test(Run(data, model, seeds=(0, 1), threshold=0.5, dtype="float64", lanes=lanes), train,
                                    config) for lanes in (None, 5))  # fmt: skip
    assert [t.losses for t in elastic] == [t.losses for t in fixed] and [t.stop for t in fixed] == ["diverged"] * 2
