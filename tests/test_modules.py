"""Any module as replicas (``modules.py``) and the model families (``families.py``): the generic path gives the
specialised engine's eta* and ledger on our MLPs bit for bit; replicas are the module's own initialisation and stay
independent; SGD through the pool is a plain PyTorch loop; bad modules and grids are refused in one line."""

import dataclasses
import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from milr_core.config import ModelConfig, RangeTestConfig, Run, SearchConfig, TrainConfig
from milr_core.data import Dataset, load_dataset
from milr_core.families import ConvNet, FullyConnected, PatchTransformer, family_replicas
from milr_core.grid import GridError, load_grid
from milr_core.model import MLP
from milr_core.modules import ModuleReplicas, load_factory
from milr_core.network import NetworkSpec
from milr_core.probe import batch_order, train_replicas
from milr_core.search import find_eta_star
from milr_core.sweep import run_sweep

TRAIN = TrainConfig(batch_size=32, max_steps=60, eval_every=10)
SEARCH = SearchConfig(lr_bounds=(0.05, 20.0), rtol=0.2)


@pytest.fixture(scope="module")
def gaussians():
    return load_dataset("gaussians", dim=8, n_train_per_class=256, n_val_per_class=128)


def images(side: int, channels: int, n: int = 256) -> Dataset:
    """Noise images, flattened channel-major, in 3 classes: class c brightens channel c (3 channels) or the c-th
    horizontal band of the picture (1 channel)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2 * n, channels, side, side, generator=generator)
    y = torch.randint(0, 3, (2 * n,), generator=generator)
    for c in range(3):
        if channels == 3:
            x[y == c, c] += 1.0
        else:
            x[y == c, :, c * side // 3 : (c + 1) * side // 3] += 1.0
    x = x.flatten(1)
    return Dataset("images", x[:n], y[:n], x[n:], y[n:], {"n_classes": 3, "default_threshold": 0.5})


def fully_connected(network: NetworkSpec, batching: str = "vmap") -> ModuleReplicas:
    args = {f.name: getattr(network, f.name) for f in dataclasses.fields(network)}
    return ModuleReplicas(FullyConnected, args, in_dim=network.in_dim, out_dim=network.out_dim, batching=batching)


# ----------------------------------------------------------------------------------------------------------
# same answers on MLPs

CASES = [  # depth, width, input_lr_factor, parameterisation, bias, lanes (None: elastic)
    (1, 16, 0.1, "standard", True, None),
    (2, 32, 1.0, "standard", True, None),
    (3, 8, 0.1, "standard", False, 3),
    (2, 16, 0.1, "ntk", True, None),
    (2, 64, 0.5, "mup", True, 4),
    (4, 16, 0.1, "standard", True, None),
]


@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("depth, width, factor, parameterisation, bias, lanes", CASES)
def test_the_generic_path_gives_the_engines_eta_star_and_ledger_bit_for_bit(gaussians, depth, width, factor,
                                                                           parameterisation, bias, lanes, batching):  # fmt: skip
    """On one CPU thread (tests/conftest.py), ``FullyConnected`` through ``ModuleReplicas`` (functional_call, vmapped
    or looped) computes our MLP's very bits: the same initial weights, logits, gradients and updates, hence the same
    eta*, bracket and ledger. If an op changes (say addmm for matmul + add), this fails."""
    network = NetworkSpec(depth, width, gaussians.in_dim, gaussians.n_classes, bias, factor, parameterisation)
    generic = fully_connected(network, batching)
    assert generic.lr_multipliers() == MLP(network).lr_multipliers()
    for a, b in zip(MLP(network).init_params([0, 5], torch.float32, "cpu"), generic.init_params([0, 5], torch.float32, "cpu")):
        assert torch.equal(a, b)
    special = find_eta_star(Run(gaussians, network, seeds=(0, 1), lanes=lanes), TRAIN, SEARCH)
    module = find_eta_star(Run(gaussians, generic, seeds=(0, 1), lanes=lanes), TRAIN, SEARCH)
    assert [s.status for s in special.per_seed] == [s.status for s in module.per_seed]
    assert special.eta_stars == module.eta_stars and len(special.eta_stars) == 2
    ledgers = [repr([s.ledger_records(curves=True) for s in result.per_seed]) for result in (special, module)]
    assert ledgers[0] == ledgers[1]  # repr: every float to its last bit, and a diverged probe's NaN loss equal to itself


def test_the_generic_path_trains_to_the_engines_parameters_on_wide_inputs():
    """Wide inputs (784, MNIST's) and a batch of 128: other GEMM kernels; the final parameters equal bit for bit."""
    data = load_dataset("gaussians", dim=784, n_train_per_class=256, n_val_per_class=64)
    network = NetworkSpec(2, 64, data.in_dim, data.n_classes)
    train = TrainConfig(batch_size=128, max_steps=20, eval_every=10)
    lrs, seeds = [0.3, 3.0, 30.0], [0, 0, 1]
    special, a = train_replicas(data, network, train, lrs, seeds, 0.99, keep_params=True)
    for batching in ("vmap", "loop"):
        module, b = train_replicas(data, fully_connected(network, batching), train, lrs, seeds, 0.99, keep_params=True)
        assert repr([o.to_dict(curves=True) for o in special]) == repr([o.to_dict(curves=True) for o in module])
        assert all(torch.equal(x, y) for x, y in zip(a, b)), batching


# ----------------------------------------------------------------------------------------------------------
# replicas: the module's own initialisation, independent, trained by plain SGD


def test_each_replica_is_the_modules_own_initialisation_under_its_seed():
    replicas = ModuleReplicas(ConvNet, {"depth": 2, "width": 4, "in_dim": 3 * 8 * 8, "out_dim": 3, "patch": 2},
                              in_dim=192, out_dim=3)  # fmt: skip
    before = torch.random.get_rng_state()
    stacked = replicas.init_params([3, 7], torch.float64, "cpu")
    assert torch.equal(torch.random.get_rng_state(), before), "building replicas must leave the global generator alone"
    for k, seed in enumerate((3, 7)):
        torch.manual_seed(seed)
        own = ConvNet(2, 4, 192, 3, patch=2)
        for p, (name, q) in zip(stacked, own.named_parameters()):
            assert p.dtype == torch.float64 and torch.equal(p[k].view_as(q), q.double()), name
    assert replicas.lr_multipliers() == [0.1, 0.1, 1.0, 1.0, 1.0, 1.0]  # the stem at input_lr_factor


@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("factory, args, side", [(ConvNet, {"patch": 2}, 8), (PatchTransformer, {"patch": 2}, 4)])
def test_replicas_trained_together_equal_each_trained_alone_by_a_plain_torch_loop(factory, args, side, batching):
    """Three replicas (two seeds, two rates) in one pool against a plain PyTorch loop per replica: the module, its
    SGD step p -= lr m g with the module's multipliers, on the batches of the seed's order (float64)."""
    channels = 3 if factory is ConvNet else 1
    data = images(side, channels)
    replicas = ModuleReplicas(factory, {"depth": 2, "width": 16, "in_dim": data.in_dim, "out_dim": 3, **args},
                              in_dim=data.in_dim, out_dim=3, batching=batching)  # fmt: skip
    train = TrainConfig(batch_size=16, max_steps=12, eval_every=4)
    lrs, seeds = [0.05, 0.2, 0.05], [0, 0, 1]
    outcomes, final = train_replicas(data, replicas, train, lrs, seeds, 0.99, dtype=torch.float64, keep_params=True,
                                     stop_at_threshold=False)  # fmt: skip
    assert [o.steps for o in outcomes] == [12] * 3 and "diverged" not in {o.outcome for o in outcomes}
    for k, (lr, seed) in enumerate(zip(lrs, seeds)):
        torch.manual_seed(seed)
        module = factory(**replicas.args).double()
        multipliers = getattr(module, "lr_multipliers", {})
        for index in batch_order(seed, data.x_train.shape[0], train.batch_size, train.max_steps):
            loss = F.cross_entropy(module(data.x_train[index].double()), data.y_train[index])
            module.zero_grad()
            loss.backward()
            with torch.no_grad():
                for name, p in module.named_parameters():
                    p -= lr * multipliers.get(name, 1.0) * p.grad
        for p, (name, q) in zip(final, module.named_parameters()):
            torch.testing.assert_close(p[k].view_as(q), q, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("family, channels, side, patch", [("cnn", 3, 8, 2), ("transformer", 1, 8, 4)])
def test_a_cnn_and_a_transformer_find_eta_star_through_the_engine(family, channels, side, patch):
    data = images(side, channels)
    model = family_replicas(ModelConfig(family, {"patch": patch}), 2, 8, data.in_dim, 3)
    result = find_eta_star(Run(data, model, seeds=(0,), threshold=0.5), TrainConfig(batch_size=32, max_steps=30,
                           eval_every=10), SearchConfig(lr_bounds=(0.01, 10.0), rtol=1.0))  # fmt: skip
    search = result.per_seed[0]
    assert search.status == "converged" and 0.01 <= search.eta_star <= 10.0
    assert {probe["outcome"] for probe in search.ledger_records()} >= {"success"}


# ----------------------------------------------------------------------------------------------------------
# bad modules, one line each


class WithBatchNorm(nn.Module):
    def __init__(self, in_dim: int = 4) -> None:
        super().__init__()
        self.linear, self.norm = nn.Linear(in_dim, 2), nn.BatchNorm1d(2)

    def forward(self, x):
        return self.norm(self.linear(x))


class SeededBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.register_buffer("mask", torch.randn(2))

    def forward(self, x):
        return self.linear(x) * self.mask


def test_bad_modules_are_refused_in_one_line_before_any_training():
    with pytest.raises(ValueError, match="BatchNorm"):
        ModuleReplicas(WithBatchNorm, in_dim=4, out_dim=2)
    with pytest.raises(ValueError, match=r"outputs \(2, 2\).*needs \(2, 3\)"):
        ModuleReplicas(nn.Linear, {"in_features": 4, "out_features": 2}, in_dim=4, out_dim=3)
    with pytest.raises(ValueError, match="unexpected keyword"):
        ModuleReplicas(nn.Linear, {"in_features": 4, "out_feature": 2}, in_dim=4, out_dim=2)
    with pytest.raises(ValueError, match="buffer mask differs under seed 1"):
        ModuleReplicas(SeededBuffer, in_dim=4, out_dim=2).init_params([0, 1], torch.float32, "cpu")
    with pytest.raises(ValueError, match="package.module:name"):
        load_factory("torch.nn.Linear")
    with pytest.raises(ImportError, match="cannot import"):
        load_factory("no_such_package.models:Net")
    with pytest.raises(ValueError, match="no callable"):
        load_factory("torch.nn:NoSuchLayer")
    with pytest.raises(ValueError, match="batching must be one of vmap, loop"):
        ModuleReplicas(nn.Linear, {"in_features": 4, "out_features": 2}, in_dim=4, out_dim=2, batching="grouped")
    with pytest.raises(ValueError, match="not 3 square channels"):
        ConvNet(2, 8, in_dim=784)


# ----------------------------------------------------------------------------------------------------------
# the grid kinds


def model_grid(kind: str = "model_eta_star", **extra) -> dict:
    return {"name": "modules_test", "kind": kind, "datasets": ["gaussians"], "dataset_options": {"gaussians": {"dim": 8}},
            "depths": [2], "widths": [16], "seeds": [0, 1], "train": {"batch_size": 32, "max_steps": 60, "eval_every": 10},
            **({"search": {"lr_bounds": [0.05, 20.0], "rtol": 0.2}} if kind == "model_eta_star" else {}),
            "model": {"family": "mlp", "args": {"input_lr_factor": 1.0}}, **extra}  # fmt: skip


def test_a_model_grid_stores_the_eta_star_of_the_same_mlp_as_the_eta_star_kind(tmp_path):
    """The model_eta_star kind with family mlp stores what the eta_star kind stores for our MLP (other hashes)."""
    family = run_sweep(model_grid(), tmp_path / "store", progress=False)
    ours = {k: v for k, v in model_grid().items() if k != "model"} | {"kind": "eta_star", "network": {"input_lr_factor": 1.0}}
    mlp = run_sweep(ours, tmp_path / "store", progress=False)
    assert list(family["eta_star"]) == list(mlp["eta_star"]) and family["eta_star"].notna().all()
    assert set(family["hash"]).isdisjoint(mlp["hash"])
    assert family["model.family"].tolist() == ["mlp", "mlp"] and family["model.args.input_lr_factor"].tolist() == [1.0, 1.0]


def test_a_model_range_test_grid_stores_the_suggestions_and_the_curve(tmp_path):
    grid = model_grid("model_range_test", range_test={"steps": 30, "skip_start": 3, "skip_end": 2})
    frame = run_sweep(grid, tmp_path / "store", progress=False)
    assert len(frame) == 2 and {"range_steep", "range_valley", "range_steps_used"} <= set(frame.columns)
    assert (frame["range_steps_used"] <= 30).all()


@pytest.mark.parametrize("change, message", [
    ({"network": {"input_lr_factor": 1.0}}, "reads no network section"),
    ({"model": {"family": "resnet"}}, "unknown model family 'resnet'"),
    ({"model": {"family": "cnn", "args": {"heads": 2}}}, "takes no argument 'heads'"),
    ({"model": {"family": "torch.nn:Linear"}}, "takes no argument 'depth'"),
    ({"search": {"rtol": 0.1}, "kind": "model_range_test"}, "does not read the section"),
])  # fmt: skip
def test_bad_model_grids_are_refused(change, message):
    with pytest.raises(GridError, match=message):
        load_grid(model_grid() | change)


def test_a_range_test_of_any_module_runs_through_the_lr_finder():
    from milr_core.lr_finder import lr_range_test

    data = images(8, 3)
    model = ModuleReplicas(ConvNet, {"depth": 2, "width": 8, "in_dim": data.in_dim, "out_dim": 3, "patch": 2},
                           in_dim=data.in_dim, out_dim=3)  # fmt: skip
    tests = lr_range_test(Run(data, model, seeds=(0, 1)), TrainConfig(batch_size=16),
                          RangeTestConfig(lr_min=1e-4, lr_max=100.0, steps=30, skip_start=3, skip_end=2))  # fmt: skip
    assert [t.seed for t in tests] == [0, 1] and all(t.steps_used >= 5 for t in tests)


# ----------------------------------------------------------------------------------------------------------
# the command line


def test_eta_star_of_a_model_factory_on_the_command_line_is_our_mlps(capsys):
    """``milr eta-star --model milr_core.families:FullyConnected`` gives the seeds' eta* of our MLP's command."""
    from milr_core import cli

    common = ["eta-star", "--dataset", "gaussians", "--depth", "1", "--width", "8", "--seeds", "2", "--lr-bounds",
              "0.05", "20", "--rtol", "0.3", "--batch-size", "64", "--max-steps", "40", "--eval-every", "10", "--quiet",
              "--threads", "1"]  # fmt: skip
    results = []
    for extra in ([], ["--model", "milr_core.families:FullyConnected", "--model-arg", "input_lr_factor=0.1"]):
        assert cli.main(common + extra) == 0
        results.append(json.loads(capsys.readouterr().out))
    mlp, module = results
    assert [s["eta_star"] for s in mlp["seeds"]] == [s["eta_star"] for s in module["seeds"]]
    assert module["model"] == "milr_core.families:FullyConnected" and module["model_args"]["depth"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--depth", "1", "--width", "8", "--model", "milr_core.families:FullyConnected", "--input-lr-factor", "1"],
     "--input-lr-factor sets our MLP"),
    (["--width", "8"], r"required: --depth \(or --model\)"),
    (["--model", "milr_core.families:ConvNet", "--depth", "2", "--width", "8"], "not 3 square channels"),
    (["--model", "milr_core.families:Nope"], "no callable 'Nope'"),
    (["--model", "torch.nn:Linear", "--depth", "2"], "takes no argument 'depth'"),
    (["--model", "torch.nn:Linear", "--model-arg", "in_features=64", "--model-arg", "out_features=3"], r"needs \(2, 2\)"),
])  # fmt: skip
def test_bad_model_flags_end_in_one_line(capsys, argv, message):
    from milr_core import cli

    assert cli.main(["eta-star", "--dataset", "gaussians", "--threads", "1", *argv]) == 2
    assert re.search(message, capsys.readouterr().err)
