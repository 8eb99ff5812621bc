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
digest, that its hash matches its file name and its cell, and its schema (``_check_schema``: a cell with
kind, dataset, depth, width and seed of the right types, a non-empty result, a ledger of dicts, ...). An
entry the store cannot use, *whatever the reason* (it does not parse, does not verify, is a folder, is
nested too deeply to decode, is not UTF-8), is never used and never stops a sweep: it is moved to
``<store>/quarantine/`` with a one-line warning naming it, so that a resumed sweep recomputes it. A file
where the store keeps a folder (``quarantine``, ``.claims``) is renamed aside the same way. Temporary
files of writers that no longer run are removed. ``put`` refuses a record that would not verify, and
writes only ``<store>/<hash>.json`` with the hash of the record's own cell: nothing outside the store.

**Sweeps share a store** through claims (``store_claims.py``): ``claimed(key)`` holds
``<store>/.claims/<key>.claim`` with a heartbeat; a claim whose owner's process is gone or whose heartbeat
stopped is taken over, so several processes, Ray workers or machines fill one store, each cell computed
once. ``describe_claim(key)`` says who a waiting sweep waits for.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import math
import os
import platform
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

from milr_core import ENGINE_VERSION
from milr_core.brief import brief, clip
from milr_core.store_claims import STALE_AFTER_S, Claims, ensure_folder, process_alive

FORMAT = 2
RECORD_KEYS = ("cell", "hash", "labels", "ledger", "provenance", "result")
KEY_COLUMNS = ("dataset", "depth", "width", "seed")  # the first columns of both frames, after hash and labels
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
CELL_TYPES = {"kind": str, "dataset": str, "depth": int, "width": int, "seed": int}  # what every cell holds
MAX_RECORD_BYTES = 64 << 20  # the largest record (a search trace with every curve) is well under 1 MiB
MACHINE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)  # out of files or memory: no entry is quarantined for them


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


def _is_a(value: object, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _check_schema(record: dict) -> None:
    """CorruptRecord unless every part of the record has its type: a digest proves a record untouched, not sound."""
    cell = record["cell"]
    if not isinstance(cell, dict):
        raise CorruptRecord(f"its cell is {brief(cell)}, not a mapping")
    for key, kind in CELL_TYPES.items():
        if not _is_a(cell.get(key), kind) or (kind is int and cell[key] < (0 if key == "seed" else 1)):
            raise CorruptRecord(f"its cell's {key} is {brief(cell.get(key))}")
    if not isinstance(record["result"], dict) or not record["result"]:
        raise CorruptRecord(f"its result is {brief(record['result'])}, not a non-empty mapping")
    if not isinstance(record["ledger"], list) or not all(isinstance(probe, dict) for probe in record["ledger"]):
        raise CorruptRecord(f"its ledger is {brief(record['ledger'])}, not a list of mappings")
    for key in ("labels", "provenance"):
        if not isinstance(record[key], dict):
            raise CorruptRecord(f"its {key} is {brief(record[key])}, not a mapping")
    if not _is_a(record["hash"], str):
        raise CorruptRecord(f"its hash is {brief(record['hash'])}, not a string")


def verified(record: object, name: str) -> dict:
    """The record if it is whole, untouched and well formed, else CorruptRecord saying what is wrong."""
    if not isinstance(record, dict):
        raise CorruptRecord(f"is {type(record).__name__}, not a record (a JSON object)")
    missing = [key for key in (*RECORD_KEYS, "digest", "format") if key not in record]
    if missing:
        raise CorruptRecord(f"lacks {', '.join(missing)}")
    if record["format"] != FORMAT:
        raise CorruptRecord(f"has format {brief(record['format'])}, this engine reads {FORMAT}")
    if record["digest"] != digest_of(record):
        raise CorruptRecord("does not match its digest (edited by hand or damaged)")
    if record["hash"] != name or content_hash(record["cell"]) != name:
        raise CorruptRecord("its cell does not hash to its file name")
    _check_schema(record)
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
def _warn_older_format(store: Path) -> None:
    """Once per store: records of an earlier engine (format 1) are left where they are and never used."""
    warnings.warn(f"{store} holds records written by an earlier engine (record format 1): they are ignored", stacklevel=4)


# ----------------------------------------------------------------------------------------------------------
# the store


class ResultStore:
    """A directory of ``<hash>.json`` records, written atomically, verified on read, shared through claims."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(20, "a file, not a result store folder", str(self.path))
        self.path.mkdir(parents=True, exist_ok=True)
        self.claims = Claims(self.path / ".claims")
        self.remove_stale_temporaries()

    def file(self, cell_hash: str) -> Path:
        """``<store>/<cell_hash>.json``; a name that is not a plain file name (a path, "..") is refused."""
        if not isinstance(cell_hash, str) or not cell_hash or Path(cell_hash).name != cell_hash or cell_hash.startswith("."):
            raise ValueError(f"a record's name is a plain file name, got {brief(cell_hash)}")
        return self.path / f"{cell_hash}.json"

    def read(self, cell_hash: str) -> dict | None:
        """The verified record, or None if absent; an entry that cannot be used, whatever the reason, is quarantined."""
        path = self.file(cell_hash)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a folder, a pipe (which would block), a device
                raise CorruptRecord("is not a regular file")
            if info.st_size > MAX_RECORD_BYTES:
                raise CorruptRecord(f"is {info.st_size} bytes, more than any record")
            record = decode(json.loads(path.read_bytes().decode("utf-8")))
            if isinstance(record, dict) and record.get("format", 1) != FORMAT and "digest" not in record:
                _warn_older_format(self.path)  # not damaged: written by an earlier engine; never matches a cell of this one
                return None
            return verified(record, cell_hash)
        except FileNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - unreadable for any reason: set aside, never fatal
            if isinstance(error, MemoryError) or getattr(error, "errno", None) in MACHINE_ERRORS:
                raise  # the machine's trouble, not the entry's
            why = str(error) if isinstance(error, CorruptRecord) else f"{type(error).__name__}: {error}"
            self.quarantine(path, clip(why))
            return None

    def quarantine(self, path: Path, why: str) -> None:
        """Move ``path`` (a file or a folder) to ``<store>/quarantine/`` under a free name, with one warning line."""
        folder = ensure_folder(self.path / "quarantine")
        target, n = folder / path.name, 1
        while target.exists() or target.is_symlink():
            target, n = folder / f"{path.name}.{n}", n + 1
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another reader moved it first
            return
        except OSError as error:
            warnings.warn(f"record {path} cannot be used ({why}) nor moved aside ({error.strerror}); skipped", stacklevel=3)
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
        """Write one record atomically (with its format and digest); a record already present is replaced.

        A record that would not verify on reading (missing keys, a hash not of its cell, a wrong schema) is
        refused with ValueError, so that nothing unreadable, and nothing outside the store, is ever written.
        """
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"a record needs the keys {', '.join(RECORD_KEYS)}; missing: {', '.join(missing)}")
        record = decode(encode({**record, "format": FORMAT}))  # what a reader will see, digest included
        if record["hash"] != content_hash(record["cell"]):
            raise ValueError(f"a record's hash must be that of its cell, got {brief(record['hash'])}")
        _check_schema(record)
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
        """Temporary files left by writers that died on this machine (others' are theirs to finish), and claims' drafts."""
        for draft in self.path.glob(".claims/.*.tmp"):
            try:
                if time.time() - draft.stat().st_mtime > STALE_AFTER_S:
                    draft.unlink()
            except OSError:
                continue
        host = socket.gethostname()
        for temp in self.path.glob(".*.tmp"):
            parts = temp.name.split(".")
            try:
                if len(parts) >= 5 and parts[-3] == host and parts[-2].isdigit() and process_alive(int(parts[-2])):
                    continue
                if len(parts) >= 5 and parts[-3] != host and time.time() - temp.stat().st_mtime < STALE_AFTER_S:
                    continue
                temp.unlink(missing_ok=True)
            except OSError:  # a folder by that name, or gone meanwhile: not ours to clear
                continue

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
    # claims (store_claims.py)

    def claim_file(self, key: str) -> Path:
        return self.claims.file(key)

    def try_claim(self, key: str) -> bool:
        """Take the claim on ``key`` if no live process holds it (a stale claim is taken over)."""
        return self.claims.try_claim(key)

    def release(self, key: str) -> None:
        self.claims.release(key)

    def claimed_by_others(self, key: str) -> bool:
        return self.claims.held_by_others(key)

    def describe_claim(self, key: str) -> str | None:
        """One line saying who holds ``key`` and when it will be taken over if they stop; None if no one holds it."""
        return self.claims.describe(key)

    def claimed(self, key: str) -> Iterator[bool]:
        """``with store.claimed(key) as mine:`` computes only if ``mine``; the claim is refreshed meanwhile."""
        return self.claims.held(key)
