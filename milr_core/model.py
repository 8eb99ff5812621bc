"""A ``NetworkSpec`` as torch tensors: K replicas at once, their forward pass, losses, and a flat view.

Every parameter tensor carries a leading replica axis K: replica k is an independent network. The
probe trains K learning rates (or seeds) at once by summing the replicas' losses: replica k's loss
depends only on replica k's parameters, so one backward pass yields every replica's own gradient.

The curvature code sees one network (K = 1) as a flat vector: ``flat_logits_fn`` maps it to logits,
``layer_blocks`` says which slice holds each layer, ``flat_lr_multipliers`` each coordinate's
learning-rate multiplier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import accumulate

import torch
import torch.nn.functional as F

from milr_core.config import LOSSES
from milr_core.network import NetworkSpec, parameter_lr_multipliers


def init_params(
    network: NetworkSpec,
    seeds: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> list[torch.Tensor]:
    """Fresh parameters for one replica per seed: weights (K, fan_in, fan_out), biases (K, 1, fan_out).

    Weights are drawn on the CPU in float32 from a generator seeded with the replica's seed, so the same
    seed gives the same network on every device and in every dtype; replicas with equal seeds are equal.
    """
    if len(seeds) == 0:
        raise ValueError("init_params needs at least one seed")
    params: list[torch.Tensor] = []
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    for (fan_in, fan_out), scaling in zip(network.layer_shapes(), network.layer_scalings()):
        weights = torch.stack([torch.randn(fan_in, fan_out, generator=g) for g in generators])
        params.append((weights * scaling.init_std).to(device=device, dtype=dtype))
        if network.bias:
            params.append(torch.zeros(len(seeds), 1, fan_out, device=device, dtype=dtype))
    return params


def forward(
    network: NetworkSpec,
    params: Sequence[torch.Tensor],
    x: torch.Tensor,
    multipliers: Sequence[float | torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits (K, B, out_dim) for inputs x of shape (B, in_dim), shared by all replicas, or (K, B, in_dim).

    ``multipliers`` overrides each layer's forward multiplier (the parameterisation's): a number, or a (K, 1, 1)
    tensor when replicas of different parameterisations share a batch (the lane pool). A multiplication by 1 is
    skipped; by a number or by a tensor holding it, the product's bits are the same.
    """
    scalings = multipliers if multipliers is not None else [s.multiplier for s in network.layer_scalings()]
    step = 2 if network.bias else 1
    h = x
    for layer, multiplier in enumerate(scalings):
        weight = params[step * layer]
        if h.dim() == 2:  # inputs shared by all replicas: one (B, in) x (in, K*out) GEMM, x is never copied K times
            n_replicas, fan_in, fan_out = weight.shape
            wide = weight.transpose(0, 1).reshape(fan_in, n_replicas * fan_out)
            h = (h @ wide).view(-1, n_replicas, fan_out).transpose(0, 1)
        else:
            h = torch.matmul(h, weight)
        if isinstance(multiplier, torch.Tensor) or multiplier != 1.0:
            h = h * multiplier
        if network.bias:
            h = h + params[step * layer + 1]
        if layer < network.n_layers - 1:
            h = F.relu(h)
    return h


class MLP:
    """A ``NetworkSpec``'s replicas as the lane pool (``probe.py``) trains them: the ``probe.Replicas`` protocol.

    Lanes may hold networks of one shape with different parameterisations or input-layer factors: their
    forward and learning-rate multipliers then become per-lane tensors.
    """

    def __init__(self, network: NetworkSpec) -> None:
        self.network = network
        self.in_dim, self.out_dim = network.in_dim, network.out_dim

    def shape(self) -> tuple:
        """What replicas sharing a batch must have in common."""
        return ("mlp", self.network.in_dim, self.network.out_dim, self.network.depth, self.network.width, self.network.bias)

    def init_params(self, seeds: Sequence[int], dtype: torch.dtype, device) -> list[torch.Tensor]:
        return init_params(self.network, seeds, dtype, device)

    def lr_multipliers(self) -> list[float]:
        return parameter_lr_multipliers(self.network)

    def forward_multipliers(self) -> list[float]:
        return [scaling.multiplier for scaling in self.network.layer_scalings()]

    def forward(self, params: Sequence[torch.Tensor], x: torch.Tensor,
                multipliers: Sequence[float | torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
        return forward(self.network, params, x, multipliers)

    def training_flops_per_example(self) -> int:
        return self.network.training_flops_per_example()


def per_replica_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "cross_entropy") -> torch.Tensor:
    """Mean loss of each replica, shape (K,). labels: (B,) shared or (K, B).

    "mse" regresses the logits on one-hot targets, 0.5 * squared error summed over classes, mean over examples.
    """
    n_replicas, batch, n_classes = logits.shape
    labels = labels.expand(n_replicas, batch)
    if loss == "cross_entropy":
        losses = F.cross_entropy(logits.reshape(-1, n_classes), labels.reshape(-1), reduction="none")
        return losses.view(n_replicas, batch).mean(dim=1)
    if loss == "mse":
        targets = F.one_hot(labels, n_classes).to(logits.dtype)
        return 0.5 * (logits - targets).pow(2).sum(dim=2).mean(dim=1)
    raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")


def flat_logits_fn(
    network: NetworkSpec, params: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """One network (K = 1) as a flat parameter vector theta and the map (theta, x) -> logits (B, C)."""
    if any(p.shape[0] != 1 for p in params):
        raise ValueError("curvature is computed for one network: params must have replica axis K = 1")
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def logits(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tensors = [t.view(shape) for t, shape in zip(theta.split(sizes), shapes)]
        return forward(network, tensors, x)[0]

    return theta, logits


def layer_blocks(network: NetworkSpec) -> list[slice]:
    """The slice of the flat parameter vector holding each layer's weights and bias, input layer first."""
    sizes = [fi * fo + (fo if network.bias else 0) for fi, fo in network.layer_shapes()]
    return [slice(end - size, end) for size, end in zip(sizes, accumulate(sizes))]


def flat_lr_multipliers(network: NetworkSpec, dtype: torch.dtype = torch.float64, device="cpu") -> torch.Tensor:
    """Each flat coordinate's learning-rate multiplier (the diagonal of P in the SGD step theta -= lr P g)."""
    sizes = [n for fi, fo in network.layer_shapes() for n in ((fi * fo, fo) if network.bias else (fi * fo,))]
    return torch.cat([torch.full((n,), m, dtype=dtype, device=device)
                      for n, m in zip(sizes, parameter_lr_multipliers(network))])  # fmt: skip
