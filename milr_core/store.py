"""A result store: a directory holding one JSON file per finished sweep cell, ``<cell hash>.json``.

Why files and not a database: a record is written once and never changed, so a directory of small,
sorted-key JSON files diffs, merges and commits well, and needs no server. Each file is written
atomically (a temporary file in the same directory, flushed and fsynced, then ``os.replace``), so a
crash at any instant leaves only whole records.

A record (format 2) is a dict with these keys (``sweep.py`` builds them):

- ``hash``: the cell's content hash, also the file name;
- ``cell``: everything that determines the result (what the hash is taken of);
- ``labels``: names that do not change the result (grid and variant name), as first written;
- ``result``: the summary of the computation (eta*, bracket, ... or the sharpness);
- ``ledger``: one compact dict per probe (empty for sharpness cells);
- ``provenance``: git commit, torch version, device name, wall time, UTC timestamp, engine version;
- ``format`` (2) and ``digest``: the sha256 of the canonical JSON of everything else.

**A store checks itself.** Files are strict JSON: a non-finite float is written as ``{"$float": "NaN"}``
(or ``"Infinity"``, ``"-Infinity"``) and read back as the float. Every read verifies the record's
digest and that its hash matches its file name and its cell; a record that fails to parse or verify is
never used: it is moved to ``<store>/quarantine/`` with a warning naming the file, so that a resumed sweep
recomputes it. Temporary files of writers that no longer run are removed.

**Sweeps share a store.** ``claim(key)`` creates ``<store>/.claims/<key>.claim`` atomically; while its
owner computes, a heartbeat refreshes it. A claim whose owner died (same machine, process gone) or whose
heartbeat stopped (another machine on a shared folder) is stale and can be taken over, so several
processes, Ray workers or machines can fill one store, each cell computed once.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from milr_core import ENGINE_VERSION

FORMAT = 2
RECORD_KEYS = ("cell", "hash", "labels", "ledger", "provenance", "result")
KEY_COLUMNS = ("dataset", "depth", "width", "seed")  # the first columns of both frames, after hash and labels
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
HEARTBEAT_S = 20.0  # how often a claim's owner refreshes it
STALE_AFTER_S = 300.0  # a claim not refreshed for this long is stale (its owner died on another machine)


class CorruptRecord(ValueError):
    """A record file that does not parse, lacks keys, or does not match its digest, hash or file name."""


# ----------------------------------------------------------------------------------------------------------
# strict JSON


def encode(value):
    """Non-finite floats as {"$float": name}, recursively, so that the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value):
    if isinstance(value, dict):
        if value.keys() == {"$float"} and value["$float"] in NON_FINITE:
            return NON_FINITE[value["$float"]]
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def canonical(value) -> str:
    """Sorted keys, no whitespace, strict: the text hashes and digests are taken of."""
    return json.dumps(encode(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(value) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def dumps(value, indent: int = 0) -> str:
    """Strict, sorted-key JSON with one line per dict entry; list items holding dicts or lists take one line each.

    A probe of the ledger is then one line, so records stay small and diff line by line.
    """
    pad = " " * (indent + 1)
    if isinstance(value, dict) and value and value.keys() != {"$float"}:
        lines = [f"{pad}{json.dumps(str(key))}: {dumps(value[key], indent + 1)}" for key in sorted(value)]
        return "{\n" + ",\n".join(lines) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        lines = [pad + json.dumps(item, sort_keys=True, allow_nan=False) for item in value]
        return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"
    return json.dumps(value, sort_keys=True, allow_nan=False)


def digest_of(record: dict) -> str:
    return content_hash({key: value for key, value in record.items() if key != "digest"})


def verified(record: dict, name: str) -> dict:
    """The record if it is whole and untouched, else CorruptRecord saying what is wrong."""
    missing = [key for key in (*RECORD_KEYS, "digest", "format") if key not in record]
    if missing:
        raise CorruptRecord(f"lacks {', '.join(missing)}")
    if record["format"] != FORMAT:
        raise CorruptRecord(f"has format {record['format']!r}, this engine reads {FORMAT}")
    if record["digest"] != digest_of(record):
        raise CorruptRecord("does not match its digest (edited by hand or damaged)")
    if record["hash"] != name or content_hash(record["cell"]) != name:
        raise CorruptRecord("its cell does not hash to its file name")
    return record


# ----------------------------------------------------------------------------------------------------------
# provenance


@cache
def git_commit() -> str:
    """HEAD of the repository this package lives in, "+dirty" if tracked files changed; "unknown" outside git.

    ``$MILR_GIT_COMMIT`` overrides it, for a copy of the checkout without its ``.git`` (the device session).
    """
    if os.environ.get("MILR_GIT_COMMIT"):
        return os.environ["MILR_GIT_COMMIT"]
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


def device_name(device) -> str:
    """The accelerator's name ("NVIDIA H200"), or "cpu: <processor>"."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: {platform.processor() or platform.machine()}"


def provenance(device, wall_time_s: float, **extra) -> dict:
    """Where, when and by what code a record was computed; never part of the cell hash."""
    import torch

    return {
        "device": device_name(device),
        "engine_version": ENGINE_VERSION,
        "git_commit": git_commit(),
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "wall_time_s": round(wall_time_s, 3),
        **extra,
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


@cache
def warn_older_format(store: Path) -> None:
    """Once per store: records of an earlier engine (format 1) are left where they are and never used."""
    warnings.warn(f"{store} holds records written by an earlier engine (record format 1): they are ignored", stacklevel=4)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------------------
# the store


class ResultStore:
    """A directory of ``<hash>.json`` records, written atomically, verified on read, shared through claims."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temporaries()

    def file(self, cell_hash: str) -> Path:
        return self.path / f"{cell_hash}.json"

    def read(self, cell_hash: str) -> dict | None:
        """The verified record, or None if absent; a damaged record is quarantined (and None returned)."""
        path = self.file(cell_hash)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            record = decode(json.loads(text))
            if isinstance(record, dict) and record.get("format", 1) != FORMAT and "digest" not in record:
                warn_older_format(self.path)  # not damaged: written by an earlier engine; never matches a cell of this one
                return None
            return verified(record, cell_hash)
        except (ValueError, TypeError, AttributeError) as error:
            self.quarantine(path, str(error))
            return None

    def quarantine(self, path: Path, why: str) -> None:
        target = self.path / "quarantine" / path.name
        target.parent.mkdir(exist_ok=True)
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another reader moved it first
            return
        warnings.warn(f"record {path} is damaged ({why}); moved to {target}, it will be recomputed", stacklevel=3)

    def has(self, cell_hash: str) -> bool:
        return self.read(cell_hash) is not None

    def get(self, cell_hash: str) -> dict:
        record = self.read(cell_hash)
        if record is None:
            raise KeyError(f"no valid record {cell_hash} in {self.path}")
        return record

    def put(self, record: dict) -> Path:
        """Write one record atomically (with its format and digest); a record already present is replaced."""
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"a record needs the keys {', '.join(RECORD_KEYS)}; missing: {', '.join(missing)}")
        record = decode(encode({**record, "format": FORMAT}))  # what a reader will see, digest included
        record["digest"] = digest_of(record)
        target = self.file(record["hash"])
        temp = self.path / f".{record['hash']}.{socket.gethostname()}.{os.getpid()}.tmp"
        try:
            with open(temp, "w") as f:
                f.write(dumps(encode(record)) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return target

    def remove_stale_temporaries(self) -> None:
        """Temporary files left by writers that died on this machine (others' are theirs to finish)."""
        host = socket.gethostname()
        for temp in self.path.glob(".*.tmp"):
            parts = temp.name.split(".")
            if len(parts) >= 5 and parts[-3] == host and parts[-2].isdigit() and process_alive(int(parts[-2])):
                continue
            if len(parts) >= 5 and parts[-3] != host and time.time() - temp.stat().st_mtime < STALE_AFTER_S:
                continue
            temp.unlink(missing_ok=True)

    def hashes(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("[!.]*.json"))

    def records(self, hashes: Iterable[str] | None = None) -> list[dict]:
        """Every valid record (or those of ``hashes`` that are valid, in that order)."""
        found = (self.read(h) for h in (self.hashes() if hashes is None else hashes))
        return [record for record in found if record is not None]

    def to_frame(self, hashes: Iterable[str] | None = None):
        """One tidy row per cell: hash, labels, key columns, result fields, settings (dotted), ``provenance.*``."""
        import pandas as pd

        rows = []
        for record in self.records(hashes):
            row = {"hash": record["hash"], **record["labels"], **{key: record["cell"][key] for key in KEY_COLUMNS}}
            row.update({key: value for key, value in record["result"].items() if key not in row})
            row.update(flatten(record["cell"]))
            row.update(flatten(record["provenance"], "provenance."))
            rows.append(row)
        return pd.DataFrame(rows)

    def ledger_frame(self, hashes: Iterable[str] | None = None):
        """One row per probe: the cell's hash, labels, dataset, depth, width and seed, then the probe's fields."""
        import pandas as pd

        rows = []
        for record in self.records(hashes):
            cell = record["cell"]
            key = {"hash": record["hash"], **record["labels"]}
            key.update({name: cell[name] for name in KEY_COLUMNS})
            rows += [{**key, **{k: v for k, v in probe.items() if k not in key}} for probe in record["ledger"]]
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------------------------------------------
    # claims

    def claim_file(self, key: str) -> Path:
        return self.path / ".claims" / f"{key}.claim"

    def claim_is_stale(self, path: Path) -> bool:
        try:
            owner = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return True  # unreadable or half-written by a process that died at once
        if owner.get("host") == socket.gethostname():
            return not process_alive(int(owner.get("pid", -1)))
        return age > STALE_AFTER_S

    def try_claim(self, key: str) -> bool:
        """Take the claim on ``key`` if no live process holds it (a stale claim is taken over)."""
        path = self.claim_file(key)
        path.parent.mkdir(exist_ok=True)
        mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self.claim_is_stale(path):
                    return False
                try:  # take over: move the stale claim aside atomically, so only one taker wins
                    os.replace(path, path.with_suffix(f".stale.{os.getpid()}"))
                    path.with_suffix(f".stale.{os.getpid()}").unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            return True
        return False

    def release(self, key: str) -> None:
        self.claim_file(key).unlink(missing_ok=True)

    def claimed_by_others(self, key: str) -> bool:
        path = self.claim_file(key)
        return path.exists() and not self.claim_is_stale(path)

    @contextmanager
    def claimed(self, key: str) -> Iterator[bool]:
        """``with store.claimed(key) as mine:`` computes only if ``mine``; the claim is refreshed meanwhile."""
        if not self.try_claim(key):
            yield False
            return
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(HEARTBEAT_S):
                try:
                    os.utime(self.claim_file(key))
                except OSError:
                    return

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            yield True
        finally:
            stop.set()
            self.release(key)
