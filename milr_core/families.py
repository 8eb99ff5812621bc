"""Model families beyond our MLPs, as ``nn.Module`` classes that ``modules.ModuleReplicas`` trains (chapter 13).

Each family is a class taking ``depth``, ``width``, ``in_dim``, ``out_dim`` and its own keyword arguments, and
its docstring says what depth and width count. Every family gives its input layer (the stem, the patch
embedding) ``input_lr_factor`` times the learning rate, 0.1 by default: the paper's condition (ii) as every
chapter runs it. Every design choice here is ours unless attributed.

- ``FullyConnected`` ("mlp"): our ``NetworkSpec`` network as a module, the same weights under the same seed and
  the same arithmetic, to check the generic path against the specialised engine (``tests/test_modules.py``).
- ``ConvNet`` ("cnn"): a small all-convolutional ReLU network for CIFAR-10.
- ``PatchTransformer`` ("transformer"): a small pre-LN transformer encoder on image patches (MNIST).

A grid's ``model`` section (``config.ModelConfig``) names a family of ``FAMILIES`` or any
``package.module:factory`` taking the same four arguments; ``family_run`` turns a sweep cell's ``Run`` into one
whose network is that family's replicas.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from milr_core.config import ModelConfig, Run
from milr_core.modules import ModuleReplicas, accepts, load_factory
from milr_core.network import NetworkSpec, parameter_lr_multipliers


def _input_factor(module: nn.Module, prefixes: tuple[str, ...], factor: float) -> dict[str, float]:
    """{name: factor} for the parameters under ``prefixes``: a module's ``lr_multipliers`` (``modules.py``)."""
    return {name: factor for name, _ in module.named_parameters() if name.startswith(prefixes)}


def _he_normal_(weight: torch.Tensor, fan_in: int) -> torch.Tensor:
    """He (Kaiming) normal initialisation, N(0, 2 / fan_in), in place; the paper's for ReLU layers."""
    with torch.no_grad():
        return weight.normal_(0.0, math.sqrt(2.0 / fan_in))


# ----------------------------------------------------------------------------------------------------------
# our MLP, as a module


class Dense(nn.Module):
    """One linear layer as ``model.forward`` computes it: h @ W (W is fan_in x fan_out), times a forward
    multiplier unless it is 1, plus a bias."""

    def __init__(self, fan_in: int, fan_out: int, init_std: float, multiplier: float, bias: bool) -> None:
        super().__init__()
        self.multiplier = multiplier
        self.weight = nn.Parameter(torch.randn(fan_in, fan_out) * init_std)  # the draws of model.init_params
        self.bias = nn.Parameter(torch.zeros(1, fan_out)) if bias else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h @ self.weight
        if self.multiplier != 1.0:
            h = h * self.multiplier
        return h if self.bias is None else h + self.bias


class FullyConnected(nn.Module):
    """Our ``NetworkSpec`` network as a module: ``depth`` hidden ReLU layers of ``width`` units (depth counts hidden
    layers, as in the paper), every parameterisation of ``network.py``, the input layer's rate times
    ``input_lr_factor``. Under seed s it draws the weights ``model.init_params`` draws under s."""

    def __init__(self, depth: int, width: int, in_dim: int, out_dim: int, *, bias: bool = True,
                 input_lr_factor: float = 0.1, parameterisation: str = "standard") -> None:  # fmt: skip
        super().__init__()
        network = NetworkSpec(depth, width, in_dim, out_dim, bias, input_lr_factor, parameterisation)
        self.layers = nn.ModuleList(
            Dense(fan_in, fan_out, scaling.init_std, scaling.multiplier, bias)
            for (fan_in, fan_out), scaling in zip(network.layer_shapes(), network.layer_scalings())
        )
        names = [name for name, _ in self.named_parameters()]
        self.lr_multipliers = dict(zip(names, parameter_lr_multipliers(network)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        return self.layers[-1](h)


# ----------------------------------------------------------------------------------------------------------
# a small CNN for CIFAR-10


class ConvNet(nn.Module):
    """A small all-convolutional ReLU network for images (CIFAR-10: ``in_dim`` 3072 = 3 x 32 x 32, channel-major).

    ``depth`` ReLU convolutions of ``width`` channels (so depth x width counts units per position, as d x w
    counts an MLP's): a patchifying stem (``patch`` x ``patch`` kernel, stride ``patch``: 32 x 32 -> 8 x 8 at the
    default 4), then ``depth`` - 1 convolutions 3 x 3 (padding 1); global average pooling and a linear head.
    He-normal weights (fan-in), zero biases, no normalisation and no residual connections: the paper's setting,
    a plain ReLU network, with convolutions. All ours, chosen so that a CPU trains it in minutes.
    """

    def __init__(self, depth: int, width: int, in_dim: int = 3072, out_dim: int = 10, *, channels: int = 3,
                 patch: int = 4, input_lr_factor: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        side = math.isqrt(in_dim // channels)
        if channels * side * side != in_dim or side % patch:
            raise ValueError(f"ConvNet: in_dim {in_dim} is not {channels} square channels of a side divisible by "
                             f"patch {patch}")  # fmt: skip
        self.shape = (channels, side, side)
        self.convs = nn.ModuleList([nn.Conv2d(channels, width, patch, stride=patch)] +
                                   [nn.Conv2d(width, width, 3, padding=1) for _ in range(depth - 1)])  # fmt: skip
        self.head = nn.Linear(width, out_dim)
        for layer in [*self.convs, self.head]:
            _he_normal_(layer.weight, layer.weight[0].numel())
            nn.init.zeros_(layer.bias)
        self.lr_multipliers = _input_factor(self, ("convs.0.",), input_lr_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.view(-1, *self.shape)
        for conv in self.convs:
            h = F.relu(conv(h))
        return self.head(h.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------------------
# a small transformer for MNIST


class Block(nn.Module):
    """A pre-LN transformer block: x + attention(LN(x)), then x + MLP(LN(x)) with a ReLU MLP of 4 x width."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        x = x + self.out((attention @ v).transpose(1, 2).reshape(batch, tokens, width))
        return x + self.down(F.relu(self.up(self.norm2(x))))


class PatchTransformer(nn.Module):
    """A small pre-LN transformer encoder on square image patches (MNIST: ``in_dim`` 784 = 28 x 28 -> 16 patches of
    7 x 7 at the default ``patch`` 7).

    ``depth`` transformer blocks (attention and a ReLU MLP each) of model width ``width`` (d_model); heads of 16
    dimensions (one head below width 32). A linear patch embedding plus a learned position embedding, a final
    LayerNorm, a linear head on the tokens side by side (flattened). Linear layers He-normal (fan-in) with zero
    biases, the position embedding N(0, 0.02^2) (GPT-2's), LayerNorms at 1 and 0 (PyTorch's). The patch and
    position embeddings are the input layer. All ours, chosen so that a CPU trains it in minutes. The flattened head
    keeps a linear path from pixels to logits, as an MLP has: with the mean over tokens instead, width 16 reached
    only about 0.8 validation accuracy on MNIST after two epochs of plain SGD at any rate we tried (measured, ours).
    """

    def __init__(self, depth: int, width: int, in_dim: int = 784, out_dim: int = 10, *, patch: int = 7,
                 head_dim: int = 16, input_lr_factor: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        side = math.isqrt(in_dim)
        if side * side != in_dim or side % patch or width % max(1, width // head_dim):
            raise ValueError(f"PatchTransformer: in_dim {in_dim} is not a square image of a side divisible by patch "
                             f"{patch}, or width {width} does not split into heads of {head_dim}")  # fmt: skip
        self.side, self.patch, self.tokens = side, patch, (side // patch) ** 2
        self.embed = nn.Linear(patch * patch, width)
        self.position = nn.Parameter(torch.randn(self.tokens, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, max(1, width // head_dim)) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(self.tokens * width, out_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _he_normal_(module.weight, module.in_features)
                nn.init.zeros_(module.bias)
        self.lr_multipliers = _input_factor(self, ("embed.", "position"), input_lr_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, p = self.side // self.patch, self.patch
        patches = x.view(-1, n, p, n, p).transpose(2, 3).reshape(-1, self.tokens, p * p)
        h = self.embed(patches) + self.position
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).flatten(1))


FAMILIES = {"mlp": FullyConnected, "cnn": ConvNet, "transformer": PatchTransformer}


# ----------------------------------------------------------------------------------------------------------
# a family in a sweep


def _family_factory(family: str):
    """A family's class by its name in ``FAMILIES``, or any factory ``package.module:name``."""
    if family in FAMILIES:
        return FAMILIES[family]
    if ":" not in family:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}, or package.module:factory")
    return load_factory(family)


def check_family(model: ModelConfig) -> None:
    """The family exists and takes depth, width, in_dim, out_dim and every argument given (no module is built)."""
    factory = _family_factory(model.family)
    for name in ("depth", "width", "in_dim", "out_dim", *model.args):
        if not accepts(factory, name):
            raise ValueError(f"model family {model.family} takes no argument {name!r}")


def family_replicas(model: ModelConfig, depth: int, width: int, in_dim: int, out_dim: int,
                    batching: str = "vmap") -> ModuleReplicas:  # fmt: skip
    """The replicas of the family's network of this depth and width on data of this shape."""
    args = {"depth": depth, "width": width, "in_dim": in_dim, "out_dim": out_dim, **model.args}
    return ModuleReplicas(_family_factory(model.family), args, in_dim=in_dim, out_dim=out_dim, name=model.family,
                          batching=batching)  # fmt: skip


def family_run(run: Run, model: ModelConfig) -> Run:
    """A sweep cell's ``Run`` (its network a ``NetworkSpec`` of the cell's depth and width) with the family's
    replicas of that depth and width as its network: batched by vmap on a GPU, looped on a CPU (faster there)."""
    network, batching = run.network, "vmap" if run.device.startswith("cuda") else "loop"
    replicas = family_replicas(model, network.depth, network.width, network.in_dim, network.out_dim, batching)
    return dataclasses.replace(run, network=replicas)
