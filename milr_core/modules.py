"""Any ``torch.nn.Module`` as the lane pool's replicas: K copies of one module trained at once, each from its seed.

``ModuleReplicas(factory, args, in_dim=..., out_dim=...)`` implements ``probe.Replicas`` for the module
``factory(**args)``, so that ``search.find_eta_star`` (Algorithm 1, the lanes, the early verdicts, the store)
runs on it unchanged: ``find_eta_star(Run(dataset, ModuleReplicas(...), seeds), train, search)``.

- **Initialisation is the module's own.** Replica s is ``factory(**args)`` built after ``torch.manual_seed(s)``
  (on the CPU, in float32, the global generator's state restored afterwards), then cast to the run's device
  and dtype: the same seed gives the same network on every device and in every dtype, as ``model.init_params``
  does for ours. A module that draws its weights as ``model.init_params`` does (``families.FullyConnected``)
  starts from our networks' very weights.
- **Replicas stay independent.** The K replicas' parameters are stacked along a leading axis and the module is
  called functionally on each (``torch.func.functional_call``): replica k's logits depend only on replica k's
  parameters, so the pool's one backward pass of the summed losses gives each replica its own gradient. The pool
  scales each replica's update by a (K, 1, 1) column, so every tensor is held as (K, a, b): a matrix as it is, any
  other shape as (K, 1, numel), viewed back in ``forward``.
- **Batching** (``BATCHINGS``): "vmap" makes the K calls one batched computation (``torch.func.vmap``: a linear
  layer on shared inputs becomes one wide product, a convolution a grouped one), which fills a GPU; "loop" calls
  the module K times. On one CPU thread (measured, ``benchmarks/bench_modules.py``) vmap is the faster for our MLP
  and the loop for convolutions and attention (a grouped convolution there is slower than K plain ones), and a
  looped replica's bits cannot depend on what shares its pool. Both give our MLP the specialised engine's bits.
- **Plain SGD, as in the paper.** The pool's update ``p -= lr m g`` with one multiplier m per parameter tensor:
  1 unless the module carries ``lr_multipliers``, a dict {parameter name: multiplier} (our convention, used by
  the families for the paper's small input-layer rate). Forward multipliers are the module's own business.
- **What a functional replica cannot carry**: state that a forward pass writes (BatchNorm's running statistics)
  and randomness in the forward pass (dropout is off: the module runs in eval mode). Buffers (fixed tensors) are
  shared by the replicas and must not depend on the seed. BatchNorm, a seed-dependent buffer and outputs that are
  not (B, out_dim) logits are refused in one line when the replicas are built, before any data moves.

Inputs arrive flattened, (B, in_dim) shared by every replica or (K, B, in_dim); a module reshapes them itself.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

Factory = Callable[..., nn.Module]
BATCHINGS = ("vmap", "loop")


def load_factory(path: str) -> Factory:
    """``package.module:name`` -> the object it names (a class or a function returning an ``nn.Module``)."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"a model factory is written package.module:name, got {path!r}")
    try:
        found = importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"cannot import {module!r} for the model factory {path!r}: {error}") from None
    factory = getattr(found, name, None)
    if not callable(factory):
        raise ValueError(f"{module} has no callable {name!r} (the model factory {path!r})")
    return factory


def accepts(factory: Factory, name: str) -> bool:
    """Whether ``factory`` takes a keyword argument ``name`` (or any keyword)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def build(factory: Factory, args: Mapping[str, object], seed: int) -> nn.Module:
    """``factory(**args)`` initialised under ``seed`` (the global CPU generator's state restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        module = factory(**args)
    if not isinstance(module, nn.Module):
        raise ValueError(f"the model factory returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval()


class ModuleReplicas:
    """Replicas of ``factory(**args)``, one per seed, as the lane pool trains them (``probe.Replicas``).

    Args:
        factory: a class or function returning an ``nn.Module`` mapping (B, in_dim) inputs to (B, out_dim) logits.
        args: its keyword arguments.
        in_dim, out_dim: the dataset's input size and number of classes (checked on a forward pass here).
        name: how the factory is named in records and messages (default: its qualified name).
        batching: "vmap" or "loop" (see the module docstring).
    """

    def __init__(self, factory: Factory, args: Mapping[str, object] | None = None, *, in_dim: int, out_dim: int,
                 name: str | None = None, batching: str = "vmap") -> None:  # fmt: skip
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, got {batching!r}")
        self.factory, self.args, self.batching = factory, dict(args or {}), batching
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.name = name or f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', factory)}"
        try:
            template = build(factory, self.args, 0)
        except TypeError as error:  # a wrong argument name or type: the factory's own words
            raise ValueError(f"{self.name}: {error}") from None
        self.template = template  # the structure every replica is called through (its own weights are never used)
        self.names = [name for name, _ in template.named_parameters()]
        self.buffers = dict(template.named_buffers())
        self.check(template)
        given = getattr(template, "lr_multipliers", {})
        unknown = sorted(set(given) - set(self.names))
        if unknown:
            raise ValueError(f"{self.name}: lr_multipliers names no parameter {unknown[0]!r}")
        self.multipliers = [float(given.get(name, 1.0)) for name in self.names]
        self.shapes = tuple(tuple(p.shape) for _, p in template.named_parameters())
        self.held = [shape if len(shape) == 2 else (1, math.prod(shape)) for shape in self.shapes]
        self.on_device: dict[tuple, dict[str, torch.Tensor]] = {}

    def check(self, template: nn.Module) -> None:
        """One line for what a functional replica cannot be: no parameters, BatchNorm, wrong output shape."""
        if not self.names:
            raise ValueError(f"{self.name}: the module has no parameters to train")
        norms = [n for n, m in template.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            raise ValueError(f"{self.name}: BatchNorm ({norms[0]}) keeps running statistics, state that replicas "
                             "trained functionally cannot carry; use GroupNorm or LayerNorm")  # fmt: skip
        with torch.no_grad():
            out = template(torch.zeros(2, self.in_dim))
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"{self.name}: the module returns {type(out).__name__}, not a tensor of logits")
        if tuple(out.shape) != (2, self.out_dim):
            raise ValueError(f"{self.name}: inputs (2, {self.in_dim}) give outputs {tuple(out.shape)}, but the "
                             f"dataset needs (2, {self.out_dim}): one logit per class")  # fmt: skip

    # ------------------------------------------------------------------------------------------------------
    # probe.Replicas

    def shape(self) -> tuple:
        """What replicas sharing a batch must have in common: the factory, its arguments, the tensors' shapes."""
        return ("module", self.name, tuple(sorted(self.args.items(), key=str)), self.in_dim, self.out_dim, self.shapes)

    def init_params(self, seeds: Sequence[int], dtype: torch.dtype, device) -> list[torch.Tensor]:
        """Each parameter tensor stacked over the seeds' replicas, (K, a, b) (see the module docstring), in
        ``named_parameters`` order."""
        if len(seeds) == 0:
            raise ValueError("init_params needs at least one seed")
        replicas = [build(self.factory, self.args, seed) for seed in seeds]
        for seed, module in zip(seeds, replicas):
            for name, buffer in module.named_buffers():
                if not torch.equal(buffer, self.buffers[name]):
                    raise ValueError(f"{self.name}: buffer {name} differs under seed {seed}; replicas share their "
                                     "buffers, so a buffer must not depend on the seed (make it a parameter)")  # fmt: skip
        states = [dict(module.named_parameters()) for module in replicas]
        return [torch.stack([state[name].detach().reshape(held) for state in states]).to(device=device, dtype=dtype)
                for name, held in zip(self.names, self.held)]  # fmt: skip

    def lr_multipliers(self) -> list[float]:
        return self.multipliers

    def forward_multipliers(self) -> list[float]:
        return []

    def forward(self, params: Sequence[torch.Tensor], x: torch.Tensor, multipliers=None) -> torch.Tensor:
        """Logits (K, B, out_dim) for x of shape (B, in_dim), shared by the replicas, or (K, B, in_dim)."""
        buffers = self.buffers_on(x.device, params[0].dtype)

        def call(state: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.template, (state, buffers), (inputs,))

        state = {name: p.view(p.shape[0], *shape) for name, p, shape in zip(self.names, params, self.shapes)}
        if self.batching == "vmap":
            return vmap(call, in_dims=(0, None if x.dim() == 2 else 0))(state, x)
        replicas = [dict(zip(state, row)) for row in zip(*(p.unbind(0) for p in state.values()))]
        inputs = x.unbind(0) if x.dim() == 3 else [x] * len(replicas)
        return torch.stack([call(replica, x_k) for replica, x_k in zip(replicas, inputs)])

    def buffers_on(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        key = (str(device), dtype)
        if key not in self.on_device:
            self.on_device[key] = {name: b.to(device=device, dtype=dtype if b.is_floating_point() else b.dtype)
                                   for name, b in self.buffers.items()}  # fmt: skip
        return self.on_device[key]

    def n_params(self) -> int:
        return sum(p.numel() for p in self.template.parameters())
