"""Probe throughput of the generic path (``modules.ModuleReplicas``: vmap + functional_call) against what it replaces.

    python benchmarks/bench_modules.py --threads 1 --out modules_cpu.json          # the ratios of issue 28
    python benchmarks/bench_modules.py --mlp mnist:4x256 --cnn cifar10:8x64 --replicas 12

Two ratios, in one run, of replica-steps per second (one SGD step of one replica, batch 128):

- **MLP** (``--mlp DATASET:DxW``, default MNIST 2x64): our MLP through ``FullyConnected`` and the generic path
  against the specialised engine (``model.MLP``), K replicas in one lane pool of K fixed lanes each. Issue 28's
  target: >= 0.7x. Their outcomes must be identical (the generic path computes the engine's bits on one thread).
- **CNN** (``--cnn DATASET:DxW``, default CIFAR-10 4x16): K replicas of ``ConvNet`` in one lane pool, batched by
  vmap and by a loop (``modules.BATCHINGS``), against the same K trained one after another, each a plain PyTorch
  loop (module(x), cross-entropy, backward, p -= lr m grad on the seed's batches), and each alone in the pool.

Each time is the difference of two budgets (``--steps`` and 4x that), so setup and the final validation cancel; the
two are measured ``--repeats`` times, interleaved with the other contestants', and the fastest kept (a shared
machine only slows a run down). Results go to JSON with the device, torch version, git commit and thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's milr_core, when run from anywhere

from milr_core.config import TrainConfig  # noqa: E402
from milr_core.data import load_dataset  # noqa: E402
from milr_core.families import ConvNet, FullyConnected  # noqa: E402
from milr_core.modules import ModuleReplicas  # noqa: E402
from milr_core.network import NetworkSpec  # noqa: E402
from milr_core.probe import batch_order, train_replicas  # noqa: E402
from milr_core.store import device_name, git_commit  # noqa: E402

BATCH, LR, TARGET = 128, 1e-3, 0.7  # a rate too small for any probe to finish early; issue 28's MLP target


def cell(text: str) -> tuple[str, int, int]:
    name, _, shape = text.partition(":")
    try:
        depth, width = map(int, shape.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a cell is DATASET:DEPTHxWIDTH, got {text!r}") from None
    return name, depth, width


def pooled(data, model, replicas: int) -> Callable[[int], None]:
    """Train ``replicas`` replicas of ``model`` for ``steps`` in one pool of that many fixed lanes."""
    return lambda steps: train_replicas(data, model, TrainConfig(batch_size=BATCH, max_steps=steps, eval_every=10**6),
                                        [LR] * replicas, list(range(replicas)), 0.9999, lanes=replicas)  # fmt: skip


def one_after_another(data, model: ModuleReplicas, replicas: int) -> Callable[[int], None]:
    """The same replicas one after another: each its module's plain PyTorch loop on the seed's batches."""

    def run(steps: int) -> None:
        for seed in range(replicas):
            torch.manual_seed(seed)
            module = model.factory(**model.args)
            multipliers = getattr(module, "lr_multipliers", {})
            for index in batch_order(seed, data.x_train.shape[0], BATCH, steps):
                loss = F.cross_entropy(module(data.x_train[index]), data.y_train[index])
                module.zero_grad()
                loss.backward()
                with torch.no_grad():
                    for name, p in module.named_parameters():
                        p -= LR * multipliers.get(name, 1.0) * p.grad

    return run


def each_alone(data, model, replicas: int) -> Callable[[int], None]:
    """The same replicas one after another, each alone in a pool of one lane."""
    single = pooled(data, model, 1)
    return lambda steps: [single(steps) for _ in range(replicas)]


def throughputs(contestants: dict[str, Callable[[int], None]], replicas: int, steps: int, repeats: int) -> dict:
    """Replica-steps per second of each contestant: 3 x ``steps`` steps from the difference of two budgets."""
    best = {name: {steps: float("inf"), 4 * steps: float("inf")} for name in contestants}
    for _ in range(repeats):
        for name, train in contestants.items():
            for budget in (steps, 4 * steps):
                start = time.perf_counter()
                train(budget)
                best[name][budget] = min(best[name][budget], time.perf_counter() - start)
    return {name: 3 * steps * replicas / (times[4 * steps] - times[steps]) for name, times in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlp", type=cell, default=cell("mnist:2x64"), metavar="DATASET:DxW")
    parser.add_argument("--cnn", type=cell, default=cell("cifar10:4x16"), metavar="DATASET:DxW")
    parser.add_argument("--replicas", type=int, default=3, help="K, replicas trained together")
    parser.add_argument("--steps", type=int, default=10, help="the shorter budget (the longer is 4x)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    K = args.replicas
    rows = []

    name, depth, width = args.mlp
    data = load_dataset(name)
    network = NetworkSpec(depth, width, data.in_dim, data.n_classes)
    generic = ModuleReplicas(FullyConnected, {"depth": depth, "width": width, "in_dim": data.in_dim,
                                              "out_dim": data.n_classes}, in_dim=data.in_dim, out_dim=data.n_classes)  # fmt: skip
    same = repr(pooled(data, network, K)(args.steps)) == repr(pooled(data, generic, K)(args.steps))
    speed = throughputs({"specialised": pooled(data, network, K), "generic": pooled(data, generic, K)}, K,
                        args.steps, args.repeats)  # fmt: skip
    rows.append({"model": f"MLP {name} {depth}x{width}", "ours": "generic", "against": "specialised engine",
                 "ours_replica_steps_per_s": speed["generic"], "against_replica_steps_per_s": speed["specialised"],
                 "ratio": speed["generic"] / speed["specialised"], "target": TARGET, "same_outcomes": same})  # fmt: skip

    name, depth, width = args.cnn
    data = load_dataset(name)
    models = {batching: ModuleReplicas(ConvNet, {"depth": depth, "width": width, "in_dim": data.in_dim,
                                                  "out_dim": data.n_classes}, in_dim=data.in_dim,
                                       out_dim=data.n_classes, batching=batching) for batching in ("vmap", "loop")}  # fmt: skip
    speed = throughputs({"vmap": pooled(data, models["vmap"], K), "loop": pooled(data, models["loop"], K),
                         "plain loops": one_after_another(data, models["vmap"], K),
                         "alone in the pool": each_alone(data, models["vmap"], K)}, K, args.steps, args.repeats)  # fmt: skip
    for ours, against in (("vmap", "plain loops"), ("loop", "plain loops"), ("vmap", "alone in the pool")):
        rows.append({"model": f"CNN {name} {depth}x{width}", "ours": f"{K} in one pool, {ours}",
                     "against": f"{K} one after another, {against}", "ours_replica_steps_per_s": speed[ours],
                     "against_replica_steps_per_s": speed[against], "ratio": speed[ours] / speed[against]})  # fmt: skip

    print(f"{'model':<24} {'ours':<20} {'against':<40} {'ours/s':>9} {'against/s':>10} {'ratio':>6}")
    for row in rows:
        print(f"{row['model']:<24} {row['ours']:<20} {row['against']:<40} {row['ours_replica_steps_per_s']:>9.1f} "
              f"{row['against_replica_steps_per_s']:>10.1f} {row['ratio']:>6.2f}")  # fmt: skip
    print(f"MLP outcomes identical (generic vs specialised): {same}")
    if args.out:
        environment = {"device": device_name("cpu"), "torch": torch.__version__, "commit": git_commit(),
                       "threads": torch.get_num_threads(), "replicas": K, "batch_size": BATCH, "steps": args.steps}  # fmt: skip
        args.out.write_text(json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
