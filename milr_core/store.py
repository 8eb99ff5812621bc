"""A result store: a directory holding one JSON file per finished sweep cell, ``<cell hash>.json``.

Why files and not a database: a record is written once and never changed, so a directory of small,
sorted-key JSON files diffs, merges and commits well, and needs no server. Each file is written
atomically (a temporary file in the same directory, flushed and fsynced, then ``os.replace``), so a
crash at any instant leaves only whole records; temporary files a crash leaves behind start with a dot
and are ignored by every reader.

A record is a dict with these keys (``sweep.py`` builds them):

- ``hash``: the cell's content hash, also the file name;
- ``cell``: everything that determines the result (what the hash is taken of);
- ``labels``: names that do not change the result (grid and variant name), as first written;
- ``result``: the summary of the computation (eta*, bracket, ... or the sharpness);
- ``ledger``: one compact dict per probe, ``ProbeOutcome.to_dict`` (the ends of its curves; empty for sharpness cells);
- ``provenance``: git commit, torch version, device name, wall time, UTC timestamp, engine version (and,
  from a sweep, ``seeds_batched``: the wall time is that of the one call that computed that many seeds).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pandas as pd
import torch

from milr_core import ENGINE_VERSION

RECORD_KEYS = ("cell", "hash", "labels", "ledger", "provenance", "result")
KEY_COLUMNS = ("dataset", "depth", "width", "seed")  # the first columns of both frames, after hash and labels


def dumps(value, indent: int = 0) -> str:
    """Sorted-key JSON, indent 1, one line per dict entry; list items holding dicts or lists take one line each.

    A probe of the ledger (or a curve) is then one line, so records stay small and diff line by line.
    """
    pad = " " * (indent + 1)
    if isinstance(value, dict) and value:
        lines = [f"{pad}{json.dumps(str(key))}: {dumps(value[key], indent + 1)}" for key in sorted(value)]
        return "{\n" + ",\n".join(lines) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        lines = [pad + json.dumps(item, sort_keys=True) for item in value]
        return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"
    return json.dumps(value, sort_keys=True)


@cache
def git_commit() -> str:
    """HEAD of the repository this package lives in, "+dirty" if tracked files changed; "unknown" outside git."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def device_name(device: str | torch.device) -> str:
    """The accelerator's name ("NVIDIA H100 80GB HBM3"), or "cpu: <processor>"."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: {platform.processor() or platform.machine()}"


def provenance(device: str | torch.device, wall_time_s: float) -> dict:
    """Where, when and by what code a record was computed; never part of the cell hash."""
    return {
        "device": device_name(device),
        "engine_version": ENGINE_VERSION,
        "git_commit": git_commit(),
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "wall_time_s": round(wall_time_s, 3),
    }


def flatten(value: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested dicts become dotted columns, lists stay values."""
    flat = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            flat.update(flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


class ResultStore:
    """A directory of ``<hash>.json`` records, written atomically, read in hash order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, cell_hash: str) -> Path:
        return self.path / f"{cell_hash}.json"

    def has(self, cell_hash: str) -> bool:
        return self.file(cell_hash).is_file()

    def get(self, cell_hash: str) -> dict:
        try:
            return json.loads(self.file(cell_hash).read_text())
        except FileNotFoundError:
            raise KeyError(f"no record {cell_hash} in {self.path}") from None

    def put(self, record: dict) -> Path:
        """Write one record atomically; a record already present is replaced by the new one."""
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"a record needs the keys {', '.join(RECORD_KEYS)}; missing: {', '.join(missing)}")
        target = self.file(record["hash"])
        fd, temp = tempfile.mkstemp(dir=self.path, prefix=f".{record['hash']}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide records from the rest of a team
            with os.fdopen(fd, "w") as f:
                f.write(dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    def hashes(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("[!.]*.json"))

    def records(self, hashes: Iterable[str] | None = None) -> list[dict]:
        """Every record (or those of ``hashes``, in that order)."""
        return [self.get(h) for h in (self.hashes() if hashes is None else hashes)]

    def to_frame(self, hashes: Iterable[str] | None = None) -> pd.DataFrame:
        """One tidy row per cell: hash, labels, key columns, result fields, settings (dotted), ``provenance.*``."""
        rows = []
        for record in self.records(hashes):
            row = {"hash": record["hash"], **record["labels"], **{key: record["cell"][key] for key in KEY_COLUMNS}}
            row.update({key: value for key, value in record["result"].items() if key not in row})
            row.update(flatten(record["cell"]))
            row.update(flatten(record["provenance"], "provenance."))
            rows.append(row)
        return pd.DataFrame(rows)

    def ledger_frame(self, hashes: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per probe: the cell's hash, labels, dataset, depth, width and seed, then the probe's fields."""
        rows = []
        for record in self.records(hashes):
            cell = record["cell"]
            key = {"hash": record["hash"], **record["labels"]}
            key.update({name: cell[name] for name in KEY_COLUMNS})
            rows += [{**key, **{k: v for k, v in probe.items() if k not in key}} for probe in record["ledger"]]
        return pd.DataFrame(rows)
