"""The result store: atomic, strict-JSON records that verify themselves, and claims that let sweeps share it."""

import json
import math
import os
import subprocess
import sys
import time

import pytest

from milr_core import ENGINE_VERSION
from milr_core.store import CorruptRecord, ResultStore, content_hash, decode, encode, provenance


def record(depth: int, eta_star: float, loss: float = float("nan")) -> dict:
    cell = {"kind": "eta_star", "dataset": "gaussians", "depth": depth, "width": 16, "seed": 0, "train": {"batch_size": 32}}
    return {
        "hash": content_hash(cell),
        "cell": cell,
        "labels": {"grid": "g", "variant": "base"},
        "result": {"eta_star": eta_star, "bracket": [eta_star, 1.1 * eta_star], "seed": 0},
        "ledger": [
            {"lr": 0.5, "outcome": "success", "seed": 0, "final_loss": 0.3},
            {"lr": 2.0, "outcome": "diverged", "seed": 0, "final_loss": loss},
        ],
        "provenance": provenance("cpu", 1.25),
    }


def test_put_get_roundtrip_strict_json_and_format(tmp_path):
    store = ResultStore(tmp_path / "store")
    given = record(1, 0.75, loss=float("inf"))
    path = store.put(given)
    assert path.name == f"{given['hash']}.json" and store.has(given["hash"])
    back = store.get(given["hash"])
    assert back["ledger"][1]["final_loss"] == math.inf and back["result"] == given["result"]
    assert back["format"] == 2 and len(back["digest"]) == 64
    text = path.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert '{"$float": "Infinity"}' in text and text.startswith('{\n "cell": {\n')
    assert '  {"final_loss": 0.3, "lr": 0.5, "outcome": "success", "seed": 0},\n' in text  # one probe per line
    with pytest.raises(KeyError, match="no valid record"):
        store.get("0" * 64)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1.5, [1.0, float("nan")], {"a": None}])
def test_non_finite_numbers_survive_encoding(value):
    back = decode(json.loads(json.dumps(encode(value), allow_nan=False)))
    assert json.dumps(back) == json.dumps(value)  # NaN prints as NaN on both sides


@pytest.mark.parametrize("damage", ["edit", "truncate", "empty", "rename"])
def test_a_damaged_record_is_named_moved_aside_and_never_used(tmp_path, damage):
    store = ResultStore(tmp_path / "store")
    good = record(1, 0.75)
    path = store.put(good)
    if damage == "edit":  # eta* x 1000 by hand
        path.write_text(path.read_text().replace('"eta_star": 0.75', '"eta_star": 750.0'))
    elif damage == "truncate":
        path.write_text(path.read_text()[:198])
    elif damage == "empty":
        path.write_text("")
    else:  # a valid record under another cell's name
        path.rename(store.file("f" * 64))
        path = store.file("f" * 64)
    name = path.stem
    with pytest.warns(UserWarning, match=f"record .*{name}.json is damaged"):
        assert not store.has(name)
    assert not path.exists() and (store.path / "quarantine" / path.name).exists()
    assert store.records() == []


def test_verification_names_what_is_wrong():
    from milr_core.store import digest_of, verified

    good = record(1, 0.75) | {"format": 2}
    good["digest"] = digest_of(good)
    assert verified(good, good["hash"]) is good
    with pytest.raises(CorruptRecord, match="digest"):
        verified(good | {"result": {}}, good["hash"])
    with pytest.raises(CorruptRecord, match="lacks digest"):
        verified({k: v for k, v in good.items() if k != "digest"}, good["hash"])


def test_frames_flatten_settings_and_probes(tmp_path):
    store = ResultStore(tmp_path)
    for depth, eta in ((1, 0.75), (2, 0.5)):
        store.put(record(depth, eta))
    frame = store.to_frame()
    assert list(frame.columns[:7]) == ["hash", "grid", "variant", "dataset", "depth", "width", "seed"]
    assert set(frame["eta_star"]) == {0.75, 0.5} and "train.batch_size" in frame and "provenance.torch" in frame
    assert len(store.ledger_frame()) == 4


def test_provenance_fields():
    origin = provenance("cpu", 1.25, seeds_batched=3)
    assert origin["engine_version"] == ENGINE_VERSION and origin["device"].startswith("cpu")
    assert origin["wall_time_s"] == 1.25 and origin["seeds_batched"] == 3 and "git_commit" in origin


def test_leftover_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    leftover = tmp_path / f".abc.{socket.gethostname()}.{int(dead.stdout)}.tmp"
    alive = tmp_path / f".abd.{socket.gethostname()}.{os.getpid()}.tmp"
    leftover.write_text("{")
    alive.write_text("{")
    ResultStore(tmp_path)
    assert not leftover.exists() and alive.exists()


def test_claims_exclude_others_and_stale_claims_are_taken_over(tmp_path):
    store = ResultStore(tmp_path)
    with store.claimed("group") as mine:
        assert mine and store.claim_file("group").exists()
        assert not store.try_claim("group")  # held by a live process (this one)
    assert not store.claim_file("group").exists()
    # A claim left by a process that died on this machine is stale: taken over at once.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    store.claim_file("other").parent.mkdir(exist_ok=True)
    store.claim_file("other").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "since": 0}))
    assert store.try_claim("other")
    # Another machine's claim is stale once its heartbeat stops.
    store.claim_file("remote").write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0}))
    assert not store.try_claim("remote")
    old = time.time() - 3600
    os.utime(store.claim_file("remote"), (old, old))
    assert store.try_claim("remote")


def test_records_of_an_earlier_engine_are_ignored_not_moved(tmp_path):
    old = record(3, 0.2)  # format 1: no format, no digest
    path = tmp_path / f"{old['hash']}.json"
    path.write_text(json.dumps(old))
    with pytest.warns(UserWarning, match="earlier engine"):
        assert ResultStore(tmp_path).read(old["hash"]) is None
    assert path.exists() and not (tmp_path / "quarantine").exists()
