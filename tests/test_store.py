"""The result store: atomic one-file-per-cell records that diff well, read back as tidy frames."""

import json
import os

import pytest

from milr_core import ENGINE_VERSION
from milr_core.store import ResultStore, provenance


def record(cell_hash: str, depth: int, eta_star: float) -> dict:
    return {
        "hash": cell_hash,
        "cell": {"dataset": "gaussians", "depth": depth, "width": 16, "seed": 0, "train": {"batch_size": 32}},
        "labels": {"grid": "g", "variant": "base"},
        "result": {"eta_star": eta_star, "bracket": [eta_star, 1.1 * eta_star], "seed": 0},
        "ledger": [
            {"lr": 0.5, "outcome": "success", "seed": 0, "accuracy": [[10, 0.9]]},
            {"lr": 2.0, "outcome": "diverged", "seed": 0, "accuracy": []},
        ],
        "provenance": provenance("cpu", 1.25),
    }


def test_put_get_roundtrip_and_format(tmp_path):
    store = ResultStore(tmp_path / "store")
    path = store.put(record("aa", 1, 0.75))
    assert path.name == "aa.json" and store.has("aa") and not store.has("bb")
    assert store.get("aa") == record("aa", 1, 0.75) | {"provenance": store.get("aa")["provenance"]}
    text = path.read_text()
    assert text.startswith('{\n "cell": {\n  "dataset": "gaussians",')  # sorted keys, indent 1
    assert '  {"accuracy": [[10, 0.9]], "lr": 0.5, "outcome": "success", "seed": 0},\n' in text  # a probe per line
    assert json.loads(text)["hash"] == "aa"
    with pytest.raises(KeyError, match="no record bb"):
        store.get("bb")


def test_provenance_fields():
    origin = provenance("cpu", 1.25)
    assert set(origin) == {"device", "engine_version", "git_commit", "timestamp_utc", "torch", "wall_time_s"}
    assert origin["device"].startswith("cpu: ") and origin["engine_version"] == ENGINE_VERSION
    assert origin["timestamp_utc"].endswith("+00:00") and origin["git_commit"]


def test_put_refuses_incomplete_records(tmp_path):
    with pytest.raises(ValueError, match="missing: ledger, provenance"):
        ResultStore(tmp_path).put({"hash": "aa", "cell": {}, "labels": {}, "result": {}})


def test_crash_mid_write_leaves_only_whole_records(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.put(record("aa", 1, 0.75))
    (tmp_path / ".bb.x1y2.tmp").write_text('{"cell": {"dep')  # what a SIGKILL mid-write leaves behind

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.put(record("cc", 2, 0.5))
    assert store.hashes() == ["aa"] and [r["hash"] for r in store.records()] == ["aa"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bb.x1y2.tmp", "aa.json"]  # the failed put cleaned up


def test_frames(tmp_path):
    store = ResultStore(tmp_path)
    store.put(record("bb", 2, 0.5))
    store.put(record("aa", 1, 0.75))
    frame = store.to_frame()
    assert list(frame.columns[:7]) == ["hash", "grid", "variant", "dataset", "depth", "width", "seed"]
    assert frame["hash"].tolist() == ["aa", "bb"] and frame["eta_star"].tolist() == [0.75, 0.5]
    assert {"bracket", "train.batch_size", "provenance.git_commit", "provenance.wall_time_s"} <= set(frame.columns)
    assert "ledger" not in frame.columns
    assert store.to_frame(["bb"])["depth"].tolist() == [2]
    ledger = store.ledger_frame()
    assert len(ledger) == 4 and ledger.groupby("hash").size().to_dict() == {"aa": 2, "bb": 2}
    assert {"lr", "outcome", "accuracy", "depth", "width", "seed", "variant"} <= set(ledger.columns)
