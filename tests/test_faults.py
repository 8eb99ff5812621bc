"""Fault injection: hostile or broken input of every kind ends in one line, in bounded time, with the store intact.

Kinds: bounded messages, YAML, claims, quarantine, paths, supervision, preflight, and the command line end to end.
Every case runs under a deadline (SIGALRM here, a subprocess timeout where a regression could hang in C code,
which no signal interrupts), so a case can fail but never hang. Cases that need ``workers.run_workers`` wired into
the sweep are marked xfail until it is.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from milr_core import cli, preflight, safe_yaml
from milr_core.brief import LIMIT, brief
from milr_core.grid import GridError, default_store, load_grid
from milr_core.store import FORMAT, ResultStore, content_hash, digest_of, dumps, encode
from milr_core.workers import WorkerError, run_workers

REPOSITORY = Path(__file__).resolve().parents[1]
DEADLINE_S = 45
GRID = {
    "name": "tiny",
    "datasets": ["gaussians"],
    "dataset_options": {"gaussians": {"dim": 8, "n_train_per_class": 256, "n_val_per_class": 64}},
    "depths": [1, 2, 3],
    "widths": [8, 12],
    "seeds": [0],
    "train": {"batch_size": 32, "max_steps": 30, "eval_every": 10},
    "search": {"lr_bounds": [0.01, 10.0], "rtol": 0.5},
}
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
) + "datasets: [gaussians]\ndepths: *i\nwidths: [8]\nseeds: [0]\n"  # 9^9 strings from 600 bytes


@pytest.fixture(autouse=True)
def deadline():
    """Fail (never hang) a case that runs past DEADLINE_S."""

    def expire(number, frame):
        raise TimeoutError(f"the case ran past its {DEADLINE_S} s deadline: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(DEADLINE_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def grid_text(**changes) -> str:
    return yaml.safe_dump({key: value for key, value in {**GRID, **changes}.items() if value is not None})


def record(depth: int) -> dict:
    cell = {"kind": "eta_star", "dataset": "gaussians", "depth": depth, "width": 16, "seed": 0}
    return {"hash": content_hash(cell), "cell": cell, "labels": {"grid": "g", "variant": "base"}, "result": {"eta_star": 0.5},
            "ledger": [{"lr": 0.5, "outcome": "success"}], "provenance": {"device": "cpu"}}  # fmt: skip


def snapshot(store: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(store.glob("*.json")) if path.is_file()}


@pytest.fixture
def store(tmp_path) -> Path:
    """A store holding two good records; the test checks they are byte-identical at its end."""
    results = ResultStore(tmp_path / "store")
    for depth in (1, 2):
        results.put(record(depth))
    before = snapshot(results.path)
    yield results.path
    after = snapshot(results.path)
    assert {name: after.get(name) for name in before} == before, "a good record was changed or lost"


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def refused(capsys, argv: list[str], status: int = 2) -> str:
    """Run the command line in this process: the exit status, and the one line it printed."""
    assert cli.main([str(arg) for arg in argv]) == status
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ")
    return line


def milr(argv: list, cwd: Path, timeout: float = 25) -> subprocess.CompletedProcess:
    """The command line in a fresh process, killed past ``timeout`` (a hang fails the test, it does not hang it)."""
    env = os.environ | {"PYTHONPATH": str(REPOSITORY)}
    try:
        return subprocess.run([sys.executable, "-m", "milr_core.cli", *map(str, argv)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"milr {' '.join(map(str, argv))} hung for {timeout} s")


def grid_error(text: str, tmp_path: Path, name: str = "grid.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(GridError) as caught:
        load_grid(path)
    return one_line(str(caught.value))


# ----------------------------------------------------------------------------------------------------------
# bounded messages


def nested_bomb(levels: int = 9) -> list:
    value = ["lol"] * 9
    for _ in range(levels - 1):
        value = [value] * 9  # shared, so cheap to build; 9^9 strings to walk
    return value


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("value, says", [
    ("x" * 1_000_000, "(1000000 characters)"),
    (nested_bomb(), "(9 items)"),
    (10**5000, "an integer of about 5001 digits"),
    (Unprintable(), "Unprintable"),
    (list(range(10**6)), "(1000000 items)"),
], ids=["long string", "alias bomb", "huge int", "failing repr", "long list"])  # fmt: skip
def test_brief_is_bounded_in_length_and_work(value, says):
    started = time.perf_counter()
    text = brief(value)
    assert says in text and len(text) <= LIMIT + 30 and time.perf_counter() - started < 0.1


@pytest.mark.parametrize("changes", [
    {"kind": "k" * 100_000},
    {"widths": [[1] * 10_000]},
    {"w" * 100_000: 1},
    {"name": "n" * 100_000},
    {"variants": [{"name": "v\n" * 1000}]},
], ids=["long kind", "long list", "long key", "long name", "long variant name"])  # fmt: skip
def test_a_grid_quoting_a_huge_value_says_so_in_one_short_line(tmp_path, changes):
    line = grid_error(grid_text(**changes), tmp_path)
    assert len(line) < 400 and "..." in line


# ----------------------------------------------------------------------------------------------------------
# YAML


@pytest.mark.parametrize("text, says", [
    (BOMB, "expands to more than 100000 values through its aliases"),
    ("a: &a {k: [x, x, x, x, x, x, x, x, x]}\n" + "".join(f"{b}: &{b} {{{', '.join(f'k{i}: *{a}' for i in range(9))}}}\n"
     for a, b in zip("abcdefgh", "bcdefghi")), "expands to more than"),
    ("datasets: &d [gaussians, *d]\n", "holds an alias inside its own anchor"),
    ("depths: [1]\nwidths: [8]\ndepths: [2]\n", "repeats the key 'depths' on line 3 (first on line 1)"),
    ("train: {batch_size: 8, batch_size: 16}\n", "repeats the key 'batch_size' on line 1"),
    pytest.param("[" * 5000 + "]" * 5000, "nested more than 32 levels deep", id="deep"),
    pytest.param("seeds: [" + "9" * 5000 + "]\n", "holds a value YAML cannot read", id="5000 digits"),
    ("name: !!python/object/apply:os.system [echo]\n", "is not valid YAML: could not determine a constructor"),
    ("datasets: [gaussians\ndepths: {1", "is not valid YAML"),
])  # fmt: skip
def test_hostile_yaml_is_refused_in_one_line_naming_the_file(tmp_path, text, says):
    line = grid_error(text, tmp_path)
    assert str(tmp_path / "grid.yaml") in line and says in line


@pytest.mark.parametrize("data, says", [
    ("name: caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 9)"),
    ("name: x\n".encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    ("name: x\n".encode("utf-16-le"), "holds NUL bytes"),
    (bytes(range(256)) * 4, "is not UTF-8 text"),
    (b"\x1f\x8b\x08\x00" + os.urandom(64), "is not UTF-8 text"),
    (b"#" * (safe_yaml.MAX_BYTES + 1), f"a settings file is at most {safe_yaml.MAX_BYTES} bytes"),
], ids=["latin-1", "utf-16", "utf-16 without BOM", "binary", "gzip", "over 1 MiB"])  # fmt: skip
def test_a_grid_that_is_not_utf8_text_is_refused_naming_the_file(tmp_path, data, says):
    (tmp_path / "grid.yaml").write_bytes(data)
    with pytest.raises(GridError, match="grid .*grid.yaml") as caught:
        load_grid(tmp_path / "grid.yaml")
    assert says in one_line(str(caught.value))


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_pipe_or_device_is_refused_without_reading_it(tmp_path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "grid.yaml"
        os.mkfifo(path)  # opening it would block until a writer came
    with pytest.raises(GridError, match="is not a regular file"):
        load_grid(path)


def test_anchors_and_merge_keys_of_the_book_still_work(tmp_path):
    from milr_core import experiments

    text = "base: &base\n  datasets: [gaussians]\n  depths: [1]\n  widths: [8]\n  seeds: [0]\n" \
           "grid:\n  <<: *base\n  depths: [2]\n"
    (tmp_path / "g.yaml").write_text(text)
    assert safe_yaml.load(tmp_path / "g.yaml")["grid"]["depths"] == [2]  # an explicit key beats a merged one
    grids = [grid for name in experiments.experiments() for p in experiments.PROFILES
             for grid in experiments.experiment_grids(name, p)]  # fmt: skip
    assert len(grids) > 30 and all(grid.n_cells for grid in grids)


# ----------------------------------------------------------------------------------------------------------
# claims


@pytest.mark.parametrize("content", [
    b'{"host": "HOST", "pid": -1}', b'{"host": "HOST", "pid": "abc"}', b'[1, 2, 3]', b"", b"\x00\xff\xfe" * 20,
    b'{"host": "HOST", "pid": 0}', b'{"host": "HOST", "pid": 99999999999}', b'{"pid": 1}', b"[" * 100_000,
], ids=["pid -1", "pid abc", "a list", "empty", "binary", "pid 0", "pid too large", "no host", "deep"])  # fmt: skip
def test_a_malformed_claim_is_stale_not_an_error(store, content):
    import socket

    results = ResultStore(store)
    results.claims.folder.mkdir(exist_ok=True)
    results.claim_file("g").write_bytes(content.replace(b"HOST", socket.gethostname().encode()))
    assert results.describe_claim("g") is None and results.try_claim("g")


def test_a_claim_that_is_a_pipe_is_stale_without_blocking(store):
    results = ResultStore(store)
    results.claims.folder.mkdir()
    os.mkfifo(results.claim_file("g"))
    assert results.describe_claim("g") is None and results.try_claim("g")


def test_the_claims_folder_existing_as_a_file_is_renamed_aside(store):
    (store / ".claims").write_text("not a folder")
    with pytest.warns(UserWarning, match="renamed to .claims.not-a-folder") as caught:
        assert ResultStore(store).try_claim("g")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert (store / ".claims.not-a-folder").read_text() == "not a folder"


def test_a_claim_key_that_is_a_path_is_refused(store):
    with pytest.raises(ValueError, match="a claim's key is a plain name"):
        ResultStore(store).try_claim("../../escape")


# ----------------------------------------------------------------------------------------------------------
# quarantine


def sealed(record_: dict) -> dict:
    """A record with a valid format and digest, whatever its content."""
    sealed_ = {**record_, "format": FORMAT}
    return {**sealed_, "digest": digest_of(sealed_)}


def odd_cell() -> dict:
    return record(3)["cell"] | {"depth": "3"}


def damage_cases() -> dict:
    good = record(3)
    odd = good | {"cell": odd_cell(), "hash": content_hash(odd_cell())}
    return {
        "a folder": lambda path: path.mkdir(),
        "a pipe": lambda path: os.mkfifo(path),  # reading it would block
        "a link to /dev/zero": lambda path: path.symlink_to("/dev/zero"),  # reading it would never end
        "deep JSON": lambda path: path.write_text("[" * 100_000 + "]" * 100_000),
        "Latin-1 bytes": lambda path: path.write_bytes("{\"cell\": \"caf\xe9\"}".encode("latin-1")),
        "binary": lambda path: path.write_bytes(os.urandom(256)),
        "a JSON list": lambda path: path.write_text("[1, 2]"),
        "empty result": lambda path: path.write_text(dumps(encode(sealed(good | {"result": {}})))),
        "result a list": lambda path: path.write_text(dumps(encode(sealed(good | {"result": [1]})))),
        "depth a string": lambda path: path.write_text(dumps(encode(sealed(odd)))),
        "ledger of numbers": lambda path: path.write_text(dumps(encode(sealed(good | {"ledger": [1, 2]})))),
        "provenance a list": lambda path: path.write_text(dumps(encode(sealed(good | {"provenance": []})))),
    }


@pytest.mark.parametrize("damage", list(damage_cases()))
def test_an_unreadable_entry_is_quarantined_in_one_line_and_never_counted(store, damage):
    results = ResultStore(store)
    name = content_hash(odd_cell() if damage == "depth a string" else record(3)["cell"])
    damage_cases()[damage](results.file(name))
    with pytest.warns(UserWarning, match=f"record .*{name}.json is damaged") as caught:
        assert not results.has(name)
    assert len(caught) == 1 and "\n" not in str(caught[0].message) and len(str(caught[0].message)) < 600
    assert (store / "quarantine" / f"{name}.json").exists() and not results.file(name).exists()
    assert len(results.records()) == 2  # the good ones, read past the damage


def test_the_quarantine_folder_existing_as_a_file_is_renamed_aside(store):
    (store / "quarantine").write_text("mine")
    results = ResultStore(store)
    results.file("f" * 64).write_text("{")
    with pytest.warns(UserWarning) as caught:
        assert not results.has("f" * 64)
    assert (store / "quarantine.not-a-folder").read_text() == "mine" and (store / "quarantine" / f"{'f' * 64}.json").exists()
    assert len(caught) == 2  # the folder renamed, the record moved


def test_a_second_damaged_copy_keeps_the_first_in_quarantine(store):
    results = ResultStore(store)
    for text in ("{", "[}"):
        results.file("e" * 64).write_text(text)
        with pytest.warns(UserWarning, match="damaged"):
            results.has("e" * 64)
    kept = sorted(path.read_text() for path in (store / "quarantine").iterdir())
    assert kept == ["[}", "{"]


@pytest.mark.parametrize("bad", [{"result": {}}, {"hash": "../../escape"}, {"ledger": "none"}, {"cell": {"kind": "x"}}])
def test_a_record_that_would_not_verify_is_never_written(store, bad):
    with pytest.raises(ValueError):
        ResultStore(store).put(record(5) | bad)
    assert not (store.parent / "escape.json").exists() and len(list(store.glob("*.json"))) == 2


def test_leftovers_that_are_folders_do_not_stop_a_store(store):
    (store / ".abc.host.1.tmp").mkdir()
    assert len(ResultStore(store).records()) == 2


# ----------------------------------------------------------------------------------------------------------
# paths


@pytest.mark.parametrize("name", ["../../escape", "/tmp/escape", "", ".", "..", ".hidden", "a/b", "x" * 101, "a b", "a\nb"])
def test_a_grid_name_that_is_not_a_name_is_refused(tmp_path, name):
    assert "name must be letters, digits" in grid_error(grid_text(name=name), tmp_path)


def test_a_file_stem_that_is_not_a_name_needs_a_name_key(tmp_path):
    assert "got 'my grid'" in grid_error(grid_text(name=None), tmp_path, "my grid.yaml")


def test_the_default_store_is_a_folder_directly_in_results():
    assert default_store("power_law-v2.1") == Path("results") / "power_law-v2.1"
    with pytest.raises(GridError):
        default_store("../x")


def test_the_command_line_writes_nothing_outside_results(tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "grid.yaml").write_text(grid_text(name="../../escape"))
    run = milr(["sweep", "grid.yaml", "--threads", "1"], cwd=work)
    assert run.returncode == 2 and "name must be" in one_line(run.stderr)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "grid.yaml"]


# ----------------------------------------------------------------------------------------------------------
# supervision


def give(value):
    return value


def fail(message):
    raise ValueError(message)


def die(code):
    if os.environ.get("MILR_TEST_WORKER_SLEEP") and code == 0:
        time.sleep(60)  # the other worker: still running when its sibling dies
    if code < 0:
        os.kill(os.getpid(), -code)
    os._exit(code)


def hold_claim_then_die(store_path):
    results = ResultStore(store_path)
    assert results.try_claim("group")
    os.kill(os.getpid(), signal.SIGKILL)


def test_workers_return_their_values():
    assert run_workers(give, (7,), 2) == [7, 7]


@pytest.mark.parametrize("target, args, says", [
    (fail, ("bad\nsecond line",), "of 2 (pid "),
    (die, (-signal.SIGKILL,), "was killed by SIGKILL"),
    (die, (-signal.SIGSEGV,), "was killed by SIGSEGV"),
    (die, (3,), "ended with exit status 3 and no result"),
])  # fmt: skip
def test_a_failing_worker_is_reported_in_one_line_within_seconds(target, args, says):
    started = time.monotonic()
    with pytest.raises(WorkerError) as caught:
        run_workers(target, args, 2, grace_s=2)
    assert says in one_line(str(caught.value)) and time.monotonic() - started < 15
    assert "second line" not in str(caught.value)


def test_a_killed_workers_claim_is_stale_at_once(store):
    with pytest.raises(WorkerError, match="SIGKILL"):
        run_workers(hold_claim_then_die, (str(store),), 1)
    assert ResultStore(store).try_claim("group")


def test_an_error_in_on_tick_stops_the_workers(monkeypatch):
    monkeypatch.setenv("MILR_TEST_WORKER_SLEEP", "1")

    def tick():
        raise RuntimeError("the progress bar broke")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="progress bar"):
        run_workers(die, (0,), 2, on_tick=tick, grace_s=2)
    assert time.monotonic() - started < 15


DRIVER = textwrap.dedent("""
    import os, sys, time
    from milr_core.workers import Stopped, run_workers

    def sleep(folder):
        open(os.path.join(folder, str(os.getpid())), "w").close()
        time.sleep(120)

    if __name__ == "__main__":
        try:
            run_workers(sleep, (sys.argv[1],), 2, grace_s=3)
        except Stopped as stop:
            print(f"error: {stop}", file=sys.stderr)
            sys.exit(130)
""")


def gone(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_to_the_parent_stops_every_worker(tmp_path, sig):
    (tmp_path / "driver.py").write_text(DRIVER)
    marks = tmp_path / "workers"
    marks.mkdir()
    env = os.environ | {"PYTHONPATH": str(REPOSITORY)}
    parent = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(marks)], env=env, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        while len(list(marks.iterdir())) < 2:
            assert parent.poll() is None, parent.stderr.read()
            time.sleep(0.05)
        pids = [int(path.name) for path in marks.iterdir()]
        parent.send_signal(sig)
        err = parent.communicate(timeout=15)[1]
        if sig != signal.SIGKILL:
            assert parent.returncode == 130 and one_line(err) == f"error: stopped by {sig.name}"
        deadline = time.monotonic() + 5
        while not all(map(gone, pids)):
            assert time.monotonic() < deadline, "orphaned workers"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        for path in marks.iterdir():
            if not gone(int(path.name)):
                os.kill(int(path.name), signal.SIGKILL)


# ----------------------------------------------------------------------------------------------------------
# preflight


@pytest.mark.parametrize("changes, says", [
    ({"seeds": [2**31]}, "seeds: 2147483648 is not an integer in [0, 2^31)"),
    pytest.param({"seeds": list(range(10_001))}, "seeds asks for 10001 seeds", id="10001 seeds"),
    ({"widths": [1_000_000]}, "widths: every entry must be an integer in [1, 65536], got 1000000"),
    ({"depths": [100_000]}, "depths: every entry must be an integer in [1, 1024]"),
    ({"search": {"rtol": 1e-20}}, "search.rtol must lie in [1e-06, 100], got 1e-20"),
    ({"search": {"lr_bounds": [1e-300, 1.0]}}, "search.lr_bounds must be two numbers in [1e-10, 1e6]"),
    ({"network": {"input_lr_factor": 1e300}}, "input_lr_factor must lie in (0, 1e+06]"),
    ({"train": {"batch_size": 32, "max_steps": 10**12}}, "train.max_steps must be an integer in [1, 100000000]"),
    ({"dataset_options": {"gaussians": {"dim": 10**9}}}, "dim must be an integer in [1, 100000]"),
])  # fmt: skip
def test_an_out_of_range_grid_value_is_refused_naming_its_key(tmp_path, changes, says):
    assert says in grid_error(grid_text(**changes), tmp_path)


def test_every_range_is_declared_once_on_its_config_field():
    """Issue 27: the ranges live in the config dataclasses' metadata (no second table of limits anywhere)."""
    import dataclasses

    from milr_core.config import SECTIONS, RunOptions
    from milr_core.constraints import Constraint
    from milr_core.network import NetworkSpec

    for cls in (*SECTIONS.values(), NetworkSpec, RunOptions):
        for field in dataclasses.fields(cls):
            check = field.metadata.get("check")
            if field.type not in ("bool", bool) and (cls, field.name) != (RunOptions, "device"):  # checked by name
                assert isinstance(check, Constraint.__args__), f"{cls.__name__}.{field.name} declares no range"
    assert not hasattr(preflight, "LIMITS")


@pytest.mark.parametrize("flags, says", [
    (["--rtol", "1e-20"], "--rtol must lie in [1e-06, 100], got 1e-20"),
    (["--depth", "5000"], "--depth must be an integer in [1, 1024], got 5000"),
    (["--seeds", "100000000"], "--seeds asks for 100000000 seeds; allowed: 1 to 10000"),
    (["--max-steps", "0"], "--max-steps must be an integer in [1, 100000000], got 0"),
])  # fmt: skip
def test_flags_are_named_as_the_command_line_spells_them(capsys, flags, says):
    from milr_core import cli

    argv = ["eta-star", "--dataset", "gaussians", "--depth", "2", "--width", "8", "--threads", "1", *flags]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {says}"


def test_a_cell_larger_than_memory_is_refused_naming_it():
    grid = load_grid(GRID | {"widths": [65_536], "depths": [1024], "seeds": list(range(100))})
    with pytest.raises(preflight.PreflightError) as caught:
        preflight.check_grid_memory(grid, "cpu", available=16 * 2**30)
    line = one_line(str(caught.value))
    assert "the cell gaussians depth 1024 width 65536 (100 seeds batched)" in line and "16 GiB available" in line


def test_a_small_grid_fits_and_memory_grows_with_width():
    grid = load_grid(GRID)
    preflight.check_grid_memory(grid, "cpu", available=2**30)
    from milr_core.network import NetworkSpec

    sections = grid.variants[0].sections
    small, large = (preflight.cell_memory("eta_star", sections, NetworkSpec(4, w, 8, 2), 1, "float32") for w in (2048, 4096))
    assert 3.5 < large / small < 4.1  # w^2 parameters dominate
    assert preflight.available_memory("cpu") > 0


def test_a_million_cell_grid_is_announced_and_needs_the_flag_in_well_under_a_second():
    grid = load_grid(GRID | {"depths": list(range(1, 101)), "widths": list(range(1, 101)), "seeds": list(range(100))})
    started = time.perf_counter()
    cost = preflight.grid_cost(grid, "cpu")
    assert cost.cells == 10**6 and cost.large and time.perf_counter() - started < 1
    with pytest.raises(preflight.PreflightError, match=f"grid tiny: 1000000 cells .* runs only with {preflight.LARGE_FLAG}"):
        preflight.check_size(cost)
    assert preflight.check_size(cost, allowed=True).startswith("grid tiny: 1000000 cells in 10000 seed groups, about ")


def test_the_smoke_grids_are_small():
    from milr_core import experiments

    for name in experiments.experiments():
        for grid in experiments.experiment_grids(name, "smoke"):
            assert not preflight.grid_cost(grid, "cpu").large, grid.name


# ----------------------------------------------------------------------------------------------------------
# the command line, end to end


def test_a_yaml_bomb_through_the_command_line_is_one_line_in_seconds(tmp_path, store):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    run = milr(["sweep", "bomb.yaml", "--store", store, "--threads", "1"], cwd=tmp_path)
    assert run.returncode == 2 and "expands to more than" in one_line(run.stderr)


@pytest.mark.parametrize("changes, says", [
    ({"seeds": [2**40]}, "is not an integer in [0, 2^31)"),
    ({"name": "../../x"}, "name must be letters"),
    ({"widths": [10**6]}, "widths: every entry must be an integer in [1, 65536]"),
])  # fmt: skip
def test_a_bad_grid_leaves_the_store_as_it_was(capsys, tmp_path, store, changes, says):
    (tmp_path / "grid.yaml").write_text(grid_text(**changes))
    assert says in refused(capsys, ["sweep", tmp_path / "grid.yaml", "--store", store, "--threads", "1"])


def sweep_processes(parent: int) -> list[int]:
    """The worker processes of a sweep: children of ``parent`` started by multiprocessing's spawn."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in (
                    stat.parent / "cmdline").read_bytes():  # fmt: skip
                workers.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return workers


def claimant(claims: Path, workers: list[int]) -> int | None:
    """The pid of a worker that holds a claim (so is computing a group), if any does."""
    for path in claims.glob("*.claim"):
        try:
            pid = json.loads(path.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            continue
        if pid in workers:
            return pid
    return None


def two_worker_sweep(tmp_path: Path) -> tuple[subprocess.Popen, list[int], int]:
    """A sweep with two workers, once one of them computes a group: (the sweep, its workers, that worker)."""
    (tmp_path / "grid.yaml").write_text(grid_text())
    env = os.environ | {"PYTHONPATH": str(REPOSITORY)}
    argv = ["sweep", "grid.yaml", "--store", "store", "--workers", "2", "--threads", "1", "--device", "cpu"]
    parent = subprocess.Popen([sys.executable, "-m", "milr_core.cli", *argv], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 15
    while len(workers := sweep_processes(parent.pid)) < 2 or not (busy := claimant(tmp_path / "store" / ".claims", workers)):
        if parent.poll() is not None or time.monotonic() > deadline:
            os.killpg(parent.pid, signal.SIGKILL)
            pytest.fail(f"the sweep's workers never started a group: {parent.communicate()[1][-500:]}")
        time.sleep(0.05)
    return parent, workers, busy


def stop_all(parent: subprocess.Popen) -> None:
    """Whatever the outcome, nothing of the sweep outlives the test."""
    try:
        os.killpg(parent.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    parent.communicate()


def ended(parent: subprocess.Popen, workers: list[int], timeout: float) -> tuple[int, str]:
    """The sweep's status and stderr once it ended; fails if it hangs or leaves orphans (``stop_all`` cleans up)."""
    try:
        err = parent.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        pytest.fail(f"the sweep hung for {timeout} s")
    deadline = time.monotonic() + 5
    while not all(map(gone, workers)):
        assert time.monotonic() < deadline, "workers outlived their sweep"
        time.sleep(0.1)
    return parent.returncode, err


def test_kill_9_of_a_worker_ends_the_sweep_in_one_line(tmp_path):
    parent, workers, busy = two_worker_sweep(tmp_path)
    try:
        os.kill(busy, signal.SIGKILL)  # in the middle of its group
        status, err = ended(parent, workers, timeout=8)
        assert status in (0, 1) and (status == 0 or "was killed by SIGKILL" in one_line(err))
    finally:
        stop_all(parent)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_a_two_worker_sweep_stops_all_in_one_line(tmp_path, sig):
    parent, workers, _ = two_worker_sweep(tmp_path)
    try:
        os.killpg(parent.pid, sig) if sig == signal.SIGINT else parent.send_signal(sig)  # Ctrl-C reaches the group
        status, err = ended(parent, workers, timeout=8)
        assert status == 130 and one_line(err).startswith("error: interrupted; what was finished is in the store")
    finally:
        stop_all(parent)
    records = ResultStore(tmp_path / "store")
    assert all(records.read(name) for name in records.hashes())  # whatever was written is whole
