"""What a network is, without torch: constant-width ReLU networks, their shapes and parameterisations.

A network of ``depth`` d and ``width`` w has d hidden layers of w ReLU units, so it holds d + 1 linear
layers: input (in_dim -> w), d - 1 hidden (w -> w) and output (w -> out_dim). Depth counts hidden
layers, which is the convention of the eta* literature (depth x width = d * w).

How a layer is initialised, scaled in the forward pass and how fast it learns is a
*parameterisation*, a function in ``PARAMETERISATIONS``: "standard" (He init, the paper's setting),
"ntk" and "mup" (beyond the paper; their docstrings say which choices are ours). ``model.py`` turns a
``NetworkSpec`` into tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from milr_core.constraints import COUNT, OneOf, Range, check_fields, setting


@dataclass(frozen=True)
class LayerScaling:
    """How one linear layer is initialised, multiplied in the forward pass, and how fast it learns."""

    init_std: float
    multiplier: float = 1.0
    lr_multiplier: float = 1.0


def standard_parameterisation(fan_in: int, fan_out: int, layer: int, n_layers: int) -> LayerScaling:
    """He (Kaiming) normal initialisation, weights N(0, 2 / fan_in), every layer including the output."""
    return LayerScaling(init_std=math.sqrt(2.0 / fan_in))


def ntk_parameterisation(fan_in: int, fan_out: int, layer: int, n_layers: int) -> LayerScaling:
    """NTK parameterisation (Jacot et al. 2018): weights N(0, 1), forward multiplier sqrt(2 / fan_in).

    The factor 2 (ReLU's, as in He init) is ours: with the same seed the network computes the same function
    as the standard one at init, at every width; only the gradients differ (each layer's effective learning
    rate is 2 / fan_in times the standard one's). Biases are zero at init and added unscaled (ours).
    """
    return LayerScaling(init_std=1.0, multiplier=math.sqrt(2.0 / fan_in))


MUP_BASE_WIDTH = 64  # our choice: muP equals the standard parameterisation at this width


def mup_parameterisation(fan_in: int, fan_out: int, layer: int, n_layers: int) -> LayerScaling:
    """muP for SGD (Yang & Hu, Tensor Programs IV/V) in its "standard parameterisation with per-layer init
    and learning-rate scaling" form, relative to He init at ``MUP_BASE_WIDTH``.

    - input layer: init var 2 / fan_in, LR x width / base;
    - hidden layers: init var 2 / fan_in, LR x 1;
    - output layer: init var (2 / fan_in) (base / fan_in), i.e. He's std x sqrt(base / width) (Tensor
      Programs V's var 1 / fan_in^2), LR x base / width.

    Width is the input layer's fan_out and the output layer's fan_in, so the rule needs no extra field.
    Ours: the base width (64), and biases following their layer's LR multiplier (Tensor Programs V scales
    every bias like an input weight, LR x fan_out; one multiplier per layer is what the seam carries).
    """
    if layer == n_layers - 1:
        shrink = MUP_BASE_WIDTH / fan_in
        return LayerScaling(init_std=math.sqrt(2.0 / fan_in) * math.sqrt(shrink), lr_multiplier=shrink)
    if layer == 0:
        return LayerScaling(init_std=math.sqrt(2.0 / fan_in), lr_multiplier=fan_out / MUP_BASE_WIDTH)
    return LayerScaling(init_std=math.sqrt(2.0 / fan_in))


Parameterisation = Callable[[int, int, int, int], LayerScaling]
PARAMETERISATIONS: dict[str, Parameterisation] = {
    "standard": standard_parameterisation,
    "ntk": ntk_parameterisation,
    "mup": mup_parameterisation,
}


@dataclass(frozen=True)
class NetworkSpec:
    """A constant-width ReLU network.

    input_lr_factor multiplies the learning rate of the input layer (weights and bias). The paper's
    condition (ii) is that the input layer trains at a "relatively small" learning rate; the factor
    is not stated there. Our default 0.1 is our choice; 1.0 trains every layer at the same rate.
    Biases are initialised to zero.
    """

    depth: int = setting("hidden layers (the network has depth + 1 linear layers)", Range(1, 1024, integer=True))
    width: int = setting("units per hidden layer", Range(1, 65_536, integer=True))
    in_dim: int = setting("inputs (set by the dataset)", COUNT)
    out_dim: int = setting("outputs, one per class (set by the dataset)", COUNT)
    bias: bool = setting("give every layer a bias (initialised to zero)", default=True)
    input_lr_factor: float = setting("LR multiplier of the input layer (0.1 is ours; 1.0 trains all layers alike)",
                                  Range(0, 1e6, low_open=True), default=0.1)  # fmt: skip
    parameterisation: str = setting("how layers are initialised and trained: standard (He init), ntk or mup",
                                 OneOf(tuple(sorted(PARAMETERISATIONS))), default="standard")  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self, "")

    @property
    def n_layers(self) -> int:
        return self.depth + 1

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each linear layer, input first."""
        dims = [self.in_dim] + [self.width] * self.depth + [self.out_dim]
        return list(zip(dims[:-1], dims[1:]))

    def layer_scalings(self) -> list[LayerScaling]:
        """Per-layer scaling, with the input-layer LR factor folded into layer 0's lr_multiplier."""
        rule = PARAMETERISATIONS[self.parameterisation]
        scalings = [rule(fi, fo, i, self.n_layers) for i, (fi, fo) in enumerate(self.layer_shapes())]
        first = scalings[0]
        scalings[0] = LayerScaling(first.init_std, first.multiplier, first.lr_multiplier * self.input_lr_factor)
        return scalings

    def n_params(self) -> int:
        return sum(fi * fo + (fo if self.bias else 0) for fi, fo in self.layer_shapes())

    def flops_per_example(self) -> int:
        """Multiply-adds x 2 of one forward pass for one example (a backward pass costs about twice this)."""
        return 2 * sum(fi * fo for fi, fo in self.layer_shapes())

    def training_flops_per_example(self) -> int:
        """FLOPs of one SGD step per example: the forward pass, every layer's weight gradient, and the input
        gradient of every layer but the first (nothing needs the gradient with respect to the data)."""
        fan_in, fan_out = self.layer_shapes()[0]
        return 3 * self.flops_per_example() - 2 * fan_in * fan_out


def _parameter_layers(network: NetworkSpec) -> list[int]:
    """The layer index of each tensor returned by ``init_params`` (weights and biases interleaved)."""
    return [layer for layer in range(network.n_layers) for _ in range(2 if network.bias else 1)]


def parameter_lr_multipliers(network: NetworkSpec) -> list[float]:
    """The learning-rate multiplier of each tensor returned by ``init_params``."""
    scalings = network.layer_scalings()
    return [scalings[layer].lr_multiplier for layer in _parameter_layers(network)]
