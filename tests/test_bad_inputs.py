"""Bad input, tried as a new user would: each is refused in one line on stderr, with exit status 2, before any data
is read or any network trained (sentinels in place of the loaders and trainers fail the test if they are called)."""

import gzip
from pathlib import Path

import pytest
import torch
import yaml

from milr_core import cli, data, datafiles, probe, reproduce, sharpness, store, sweep

REPOSITORY = Path(__file__).resolve().parents[1]
ETA = ["eta-star", "--dataset", "gaussians", "--depth", "2", "--width", "8", "--threads", "1"]
SHARP = ["sharpness", "--dataset", "gaussians", "--depth", "1", "--width", "8", "--threads", "1"]
PREDICT = ["predict", "--dataset", "mnist", "--depth", "2", "--width", "64"]
GRID = {
    "kind": "eta_star",
    "datasets": ["gaussians"],
    "dataset_options": {"gaussians": {"dim": 8, "n_train_per_class": 256, "n_val_per_class": 64}},
    "depths": [1],
    "widths": [8],
    "seeds": [0],
    "train": {"batch_size": 32, "max_steps": 20},
}


def grid(**changes) -> str:
    """The tiny grid's YAML with top-level keys changed (None removes one)."""
    return yaml.safe_dump({key: value for key, value in {**GRID, **changes}.items() if value is not None})


def sweep_case(text: str | None, *extra: str) -> tuple[list[str], str | None]:
    return ["sweep", "{tmp}/grid.yaml", "--store", "{tmp}/store", "--threads", "1", *extra], text


# (argv, grid text or None, what the one line must say); "{tmp}" is the test's temporary folder
CASES = {
    # eta-star: each flag of the network, train and search sections, the task and the run options
    "eta unknown dataset": (["eta-star", "--dataset", "imagenet", "--depth", "2", "--width", "8"], "invalid choice"),
    "eta depth 0": ([*ETA, "--depth", "0"], "--depth must be an integer in [1, 1024], got 0"),
    "eta width -1": ([*ETA, "--width", "-1"], "--width must be an integer in [1, 65536], got -1"),
    "eta width abc": ([*ETA, "--width", "abc"], "invalid int value: 'abc'"),
    "eta no depth": (["eta-star", "--dataset", "gaussians", "--width", "8"], "required: --depth"),
    "eta inverted lr bounds": ([*ETA, "--lr-bounds", "1", "0.1"], "inverted"),
    "eta negative lr bounds": ([*ETA, "--lr-bounds", "-1", "10"], "--lr-bounds must be two numbers in [1e-10, 1e6]"),
    "eta one lr bound": ([*ETA, "--lr-bounds", "1"], "expected 2 arguments"),
    "eta threshold 1.5": ([*ETA, "--threshold", "1.5"], "threshold must lie in (0, 1), got 1.5"),
    "eta threshold 0": ([*ETA, "--threshold", "0"], "threshold must lie in (0, 1)"),
    "eta threshold abc": ([*ETA, "--threshold", "abc"], "invalid float value: 'abc'"),
    "eta seeds 0": ([*ETA, "--seeds", "0"], "--seeds: must be an integer >= 1"),
    "eta batch size 0": ([*ETA, "--batch-size", "0"], "--batch-size must be an integer in [1, 1048576], got 0"),
    "eta batch above data": ([*ETA, "--batch-size", "100000"], "batch_size 100000 exceeds the 18000 training examples"),
    "eta epochs -1": ([*ETA, "--epochs", "-1"], "--epochs must lie in (0, 10000], got -1.0"),
    "eta max steps 0": ([*ETA, "--max-steps", "0"], "--max-steps must be an integer in [1, 100000000], got 0"),
    "eta eval every 0": ([*ETA, "--eval-every", "0"], "--eval-every must be an integer in [1, 100000000], got 0"),
    "eta max loss nan": ([*ETA, "--max-loss", "nan"], "--max-loss must lie in (0, 1e+30], got nan"),
    "eta unknown loss": ([*ETA, "--loss", "hinge"], "invalid choice: 'hinge'"),
    "eta unknown method": ([*ETA, "--method", "golden"], "invalid choice: 'golden'"),
    "eta rtol 0": ([*ETA, "--rtol", "0"], "--rtol must lie in [1e-06, 100], got 0.0"),
    "eta widenings -1": ([*ETA, "--max-widenings", "-1"], "--max-widenings must be an integer in [0, 64], got -1"),
    "eta lrs per round 1": ([*ETA, "--lrs-per-round", "1"], "--lrs-per-round must be an integer in [2, 1024], got 1"),
    "eta probe above 0.5": ([*ETA, "--probe-above", "0.5"], "--probe-above must be a list of factors in (1, 1000], got (0.5,)"),
    "eta input lr factor 0": ([*ETA, "--input-lr-factor", "0"], "--input-lr-factor must lie in (0, 1e+06]"),
    "eta unknown parameterisation": ([*ETA, "--parameterisation", "xavier"], "invalid choice: 'xavier'"),
    "eta unknown dtype": ([*ETA, "--dtype", "float16"], "invalid choice: 'float16'"),
    "eta speculation 7": ([*ETA, "--speculation", "7"], "speculation must be an integer in [1, 6]"),
    "eta threads 0": ([*ETA, "--threads", "0"], "--threads must be an integer in [1, 1024], got 0"),
    "eta workers": ([*ETA, "--workers", "2"], "unrecognized arguments: --workers 2 (see milr eta-star --help)"),
    "eta unknown flag": ([*ETA, "--lr-min", "0.1"], "unrecognized arguments: --lr-min"),
    "eta out is a folder": ([*ETA, "--out", "{tmp}"], "is a folder"),
    # --device, on every command that computes
    "eta device tpu": ([*ETA, "--device", "tpu"], "unknown device 'tpu'; known: auto, cpu, cuda, cuda:N"),
    "eta device cuda without cuda": ([*ETA, "--device", "cuda"], "torch sees 0 CUDA device(s)"),
    "sharpness device cuda:x": ([*SHARP, "--device", "cuda:x"], "unknown device 'cuda:x'"),
    "sharpness device cuda:0 without cuda": ([*SHARP, "--device", "cuda:0"], "torch sees 0 CUDA device(s)"),
    "sweep device tpu": (*sweep_case(grid(), "--device", "tpu"), "unknown device 'tpu'"),
    "sweep device cuda without cuda": (*sweep_case(grid(), "--device", "cuda"), "torch sees 0 CUDA device(s)"),
    "experiment device tpu": (["experiment", "power_law", "--device", "tpu"], "unknown device 'tpu'"),
    # sharpness
    "sharpness subset 0": ([*SHARP, "--subset-size", "0"], "--subset-size must be an integer in [1, 10000000], got 0"),
    "sharpness subset above data": ([*SHARP, "--subset-size", "50000"], "subset_size 50000 exceeds the 18000 training"),
    "sharpness tol 0": ([*SHARP, "--tol", "0"], "--tol must lie in [1e-14, 0.5], got 0.0"),
    "sharpness tol 1": ([*SHARP, "--tol", "1"], "--tol must lie in [1e-14, 0.5], got 1.0"),
    "sharpness unknown method": ([*SHARP, "--method", "arnoldi"], "invalid choice: 'arnoldi'"),
    "sharpness unknown matrix": ([*SHARP, "--matrix", "fisher"], "invalid choice: 'fisher'"),
    "sharpness bounds with mse": ([*SHARP, "--bounds", "--loss", "mse"], "bounds needs loss cross_entropy"),
    "sharpness max iter 0": ([*SHARP, "--max-iter", "0"], "--max-iter must be an integer in [1, 100000], got 0"),
    "sharpness chunk 0": ([*SHARP, "--chunk-size", "0"], "--chunk-size must be an integer in [1, 1000000], got 0"),
    "sharpness subset seed -1": ([*SHARP, "--subset-seed", "-1"], "--subset-seed must be an integer in [0, 2147483647], got -1"),
    "sharpness speculation": ([*SHARP, "--speculation", "2"], "unrecognized arguments: --speculation"),
    # sweep: bad grids of every kind
    "grid depth 0": (*sweep_case(grid(depths=[0])), "depths: every entry must be an integer in [1, 1024], got 0"),
    "grid width -1": (*sweep_case(grid(widths=[-1])), "widths: every entry must be an integer in [1, 65536], got -1"),
    "grid width abc": (*sweep_case(grid(widths=["abc"])), "widths[0] must be int, got 'abc'"),
    "grid threshold 1.5": (*sweep_case(grid(threshold=1.5)), "threshold must lie in (0, 1)"),
    "grid inverted lr bounds": (*sweep_case(grid(search={"lr_bounds": [1.0, 0.1]})), "inverted"),
    "grid negative lr bounds": (*sweep_case(grid(search={"lr_bounds": [-1.0, 1.0]})), "search.lr_bounds must be two numbers"),
    "grid unknown dataset": (*sweep_case(grid(datasets=["imagenet"], dataset_options=None)), "unknown dataset(s) imagenet"),
    "grid empty seeds": (*sweep_case(grid(seeds=[])), "seeds is empty"),
    "grid duplicate seeds": (*sweep_case(grid(seeds=[0, 0])), "seeds has duplicates"),
    "grid typo'd key": (*sweep_case(grid(widht=[8])), "unknown key(s) 'widht'"),
    "grid typo'd section key": (*sweep_case(grid(train={"batch_sise": 32})), "unknown key(s) 'batch_sise'"),
    "grid section not read": (*sweep_case(grid(kind="sharpness", train=None, search={"rtol": 0.1})),
                              "kind sharpness does not read the section(s) search"),  # fmt: skip
    "grid unknown kind": (*sweep_case(grid(kind="eta_stra")), "kind must be one of"),
    "grid missing widths": (*sweep_case(grid(widths=None)), "lacks the required key(s) widths"),
    "grid not yaml": (*sweep_case("datasets: [gaussians\ndepths: {1"), "is not valid YAML"),
    "grid not a mapping": (*sweep_case("- gaussians\n- mnist\n"), "must be a mapping of settings, got list"),
    "grid empty file": (*sweep_case(""), "is empty"),
    "grid missing file": (["sweep", "{tmp}/nothing.yaml"], None, "cannot read grid"),
    "grid is a folder": (["sweep", "{tmp}"], None, "cannot read grid"),
    "grid bad variant": (*sweep_case(grid(variants=[{"name": "x", "train": {"batch_size": 0}}])), "variants[0] (x)"),
    "grid variant without name": (*sweep_case(grid(variants=[{"threshold": 0.7}])), "needs a name"),
    "grid variant unknown key": (*sweep_case(grid(variants=[{"name": "x", "treshold": 0.7}])), "unknown key(s) 'treshold'"),
    "grid duplicate variant names": (*sweep_case(grid(variants=[{"name": "x"}, {"name": "x", "threshold": 0.7}])),
                                     "variant names must be distinct"),  # fmt: skip
    "grid twin variants": (*sweep_case(grid(variants=[{"name": "x"}, {"name": "y"}])), "have identical settings"),
    "grid unknown dataset option": (*sweep_case(grid(dataset_options={"gaussians": {"colour": 1}})),
                                    "unknown option(s) colour"),  # fmt: skip
    "grid bad preprocessing": (*sweep_case(grid(datasets=["mnist"], dataset_options={"mnist": {"preprocessing": "fancy"}})),
                               "preprocessing must be one of global, per_feature"),  # fmt: skip
    "grid options of another dataset": (*sweep_case(grid(dataset_options={"mnist": {}})), "unknown key(s) 'mnist'"),
    "grid bad dtype": (*sweep_case(grid(dtype="float16")), "dtype must be one of float32, float64, tf32"),
    "grid batch above data": (*sweep_case(grid(train={"batch_size": 1024})), "batch_size 1024 exceeds the 512 training"),
    "grid unknown data key": (*sweep_case(grid(data={"rooot": "/tmp"})), "unknown key(s) 'rooot'"),
    "sweep unknown executor": (*sweep_case(grid(), "--executor", "dask"), "unknown executor 'dask'; known: local, ray"),
    "sweep store is a file": (["sweep", "{tmp}/grid.yaml", "--store", "{tmp}/grid.yaml"], grid(), "is a file"),
    "sweep workers 0": (*sweep_case(grid(), "--workers", "0"), "--workers must be an integer in [1, 256], got 0"),
    # experiment
    "experiment unknown": (["experiment", "power_lw"], "unknown experiment 'power_lw'; known: algorithm, "),
    "experiment part matches no cell": (["experiment", "power_law", "--widths", "3"], "no cell of experiment 'power_law'"),
    "experiment unknown variant": (["experiment", "sensitivity", "--variants", "nope"], "no cell of experiment"),
    "experiment bad profile": (["experiment", "power_law", "--profile", "huge"], "unknown profile 'huge'; known: smoke"),
    "experiment depths abc": (["experiment", "power_law", "--depths", "abc"], "invalid int value: 'abc'"),
    "experiment unknown executor": (["experiment", "sensitivity", "--profile", "smoke", "--executor", "dask", "--threads",
                                     "1"], "unknown executor 'dask'"),  # fmt: skip
    # predict: arguments checked before the store is read
    "predict depth 0": ([*PREDICT, "--depth", "0"], "--depth must be an integer in [1, 1024], got 0"),
    "predict width abc": ([*PREDICT, "--width", "abc"], "invalid int value: 'abc'"),
    "predict ci 1.5": ([*PREDICT, "--ci", "1.5"], "--ci: must be a number in (0, 1)"),
    "predict ci 0": ([*PREDICT, "--ci", "0"], "--ci: must be a number in (0, 1)"),
    "predict unknown dataset": (["predict", "--dataset", "imagenet", "--depth", "2", "--width", "8"], "invalid choice"),
    "predict unknown parameterisation": ([*PREDICT, "--parameterisation", "xavier"], "invalid choice: 'xavier'"),
    "predict input lr factor -1": ([*PREDICT, "--input-lr-factor", "-1"], "--input-lr-factor must lie in (0, 1e+06]"),
    "predict d/w 0": ([*PREDICT, "--max-depth-over-width", "0"], "must be a positive number"),
    "predict no store": ([*PREDICT, "--store", "{tmp}/nothing"], "no result store at"),
    # reproduce and the command itself
    "reproduce unknown notebook": (["reproduce", "--only", "typo"], "no notebook 'typo' in notebooks; known: 01_algorithm"),
    "reproduce bad profile": (["reproduce", "--profile", "huge"], "unknown profile 'huge'"),
    "no command": ([], "required: COMMAND"),
    "unknown command": (["etastar"], "invalid choice: 'etastar'"),
}


def forbid(monkeypatch, *targets: tuple[object, str]) -> None:
    """Replace each (module, name) with a function that fails the test when called."""
    for owner, name in targets:
        message = f"{name} started before the input was checked"
        monkeypatch.setattr(owner, name, lambda *a, _message=message, **k: pytest.fail(_message))


TRAINING = ((probe, "train_replicas"), (probe.LanePool, "run"), (sweep, "run_group"), (sharpness, "sharpness_at_init"))
READING = ((data, "load_dataset"), (sweep, "load_datasets"), (store.ResultStore, "to_frame"),
           (reproduce, "sync_ipynb"), (reproduce.papermill, "execute_notebook"))  # fmt: skip


@pytest.fixture(autouse=True)
def no_cuda_and_one_thread(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path / "results"))
    monkeypatch.chdir(REPOSITORY)
    yield
    torch.set_num_threads(1)


def refused(capsys, argv: list[str]) -> str:
    """The one line the CLI printed, after checking the status and that nothing else was printed."""
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), (status, err)
    return lines[0]


@pytest.mark.parametrize("argv, grid_text, message", [
    pytest.param(*case if len(case) == 3 else (case[0], None, case[1]), id=name) for name, case in CASES.items()
])  # fmt: skip
def test_bad_input_is_one_line_before_any_data_or_training(capsys, monkeypatch, tmp_path, argv, grid_text, message):
    forbid(monkeypatch, *TRAINING, *READING)
    if grid_text is not None:
        (tmp_path / "grid.yaml").write_text(grid_text)
    line = refused(capsys, [arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    assert message in line


def test_the_table_is_large():
    assert len(CASES) >= 60


def mnist_files(folder: Path, content: bytes, suffix: str = "") -> Path:
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datafiles.IDX_FILES["mnist"]:
        (raw / f"{name}{suffix}").write_bytes(content)
    return raw


@pytest.mark.parametrize(
    "files, argv, message",
    [
        ("none", ["eta-star", "--dataset", "mnist", "--depth", "1", "--width", "8"], "mnist not found; looked, in order"),
        ("none", ["sharpness", "--dataset", "mnist", "--depth", "1", "--width", "8"], "To get it: set MILR_DATA"),
        ("none", ["sweep", "{tmp}/grid.yaml", "--store", "{tmp}/store"], "mnist not found"),
        ("junk", ["eta-star", "--dataset", "mnist", "--depth", "1", "--width", "8"], "train-images-idx3-ubyte: SHA-256"),
        ("truncated", ["eta-star", "--dataset", "mnist", "--depth", "1", "--width", "8"], "corrupt or truncated"),
    ],
)
def test_a_data_problem_is_one_line_naming_the_file_and_the_fix(capsys, monkeypatch, tmp_path, files, argv, message):
    forbid(monkeypatch, *TRAINING)
    root = tmp_path / "data"
    root.mkdir()
    if files == "junk":
        mnist_files(root, b"not an idx file")
    if files == "truncated":
        mnist_files(root, gzip.compress(b"\0" * 10000)[:-10], ".gz")  # cut before its end
    monkeypatch.setenv("MILR_DATA", str(root))
    monkeypatch.setenv("MILR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MILR_OFFLINE", "1")
    (tmp_path / "grid.yaml").write_text(grid(datasets=["mnist"], dataset_options=None))
    line = refused(capsys, [arg.replace("{tmp}", str(tmp_path)) for arg in [*argv, "--threads", "1"]])
    assert message in line
    if files != "none":
        assert str(root / "MNIST" / "raw") in line and "delete it and put an intact copy there" in line


@pytest.mark.parametrize("argv", [["--debug", "sweep", "{tmp}/nothing.yaml"], ["sweep", "{tmp}/nothing.yaml", "--debug"]])
def test_debug_shows_the_traceback(capsys, tmp_path, argv):
    assert cli.main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.splitlines()[-1].startswith("error: cannot read grid")
