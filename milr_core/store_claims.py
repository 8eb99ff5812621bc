"""Claims on a shared result store: which process computes a seed group, so that each is computed once.

(Not to be confused with ``claims.py``, the table of the paper's claims.)

A claim is a file ``<store>/.claims/<key>.claim`` naming its owner: host, pid, the process's start time
(``/proc/<pid>/stat`` field 22, clock ticks since boot), a random token and since when. Its modification
time is the owner's **heartbeat**, refreshed every ``HEARTBEAT_S`` while it computes.

- **Created whole.** The content is written to a temporary file first, then hard-linked to the claim's
  name; the link fails if the name exists (O_EXCL semantics), so a reader never sees an empty claim.
- **Stale**, and so taken over: a claim whose owner is gone (on this host: no process with that pid *and*
  start time, so a recycled pid or an unrelated live process is not the owner; a zombie is gone), whose
  heartbeat is older than ``STALE_AFTER_S`` (any host: the owner died elsewhere, or hangs), or that is not
  a claim at all (a pid of -1 or "abc", a JSON list, binary): such a file belongs to no one.
- **Taken over once.** Judging a claim stale and replacing it happen under an ``flock`` of
  ``.claims/.lock`` (held for microseconds; the kernel drops it if its holder dies), so two takers never
  both win. Where ``fcntl`` is missing (Windows) the link alone decides.
- **Released only by its owner**: a claim is removed only if it still holds the owner's token.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from milr_core.brief import brief

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

HEARTBEAT_S = 20.0  # how often a claim's owner refreshes it
STALE_AFTER_S = 300.0  # a claim not refreshed for this long is stale, whoever holds it
MAX_CLAIM_BYTES = 4096  # a claim is a few dozen bytes; anything longer is not one
PID_LIMIT = 1 << 22  # Linux's largest pid (PID_MAX_LIMIT)


# ----------------------------------------------------------------------------------------------------------
# processes


def _process_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` from /proc; None if there is no such process.

    Any other failure to read (too many open files, a busy /proc) raises OSError: a claim is never judged dead
    because its owner could not be looked at.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        fields = text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` (field 22 of /proc/<pid>/stat), None where /proc does not say."""
    stat = _process_stat(pid)
    return None if stat is None else stat[1]


def _valid_pid(pid: object) -> bool:
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < PID_LIMIT


def process_alive(pid: object, start: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, if ``start`` is given, is the process that started then."""
    if not _valid_pid(pid):
        return False  # -1 or 0 would ask os.kill about a whole process group
    stat = _process_stat(pid)
    if stat is not None:
        state, started = stat
        return state not in "ZXx" and (start is None or started == start)
    if os.path.exists("/proc/self/stat"):
        return False  # Linux, and no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# ----------------------------------------------------------------------------------------------------------
# folders


def ensure_folder(path: Path) -> Path:
    """``path`` as a folder; a file in its place is renamed aside (``<name>.not-a-folder``) with a warning."""
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        aside, n = path.with_name(f"{path.name}.not-a-folder"), 1
        while aside.exists() or aside.is_symlink():
            aside, n = path.with_name(f"{path.name}.not-a-folder.{n}"), n + 1
        try:
            os.replace(path, aside)
            warnings.warn(f"{path} was a file where the store keeps a folder; renamed to {aside.name}", stacklevel=3)
        except FileNotFoundError:  # another process moved it first
            pass
    path.mkdir(exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# claims


def _read_owner(path: Path) -> dict | None:
    """The claim's owner {host, pid, start, token, since}, or None if the file is not a claim (or is gone).

    A failure to read that says nothing of the file (too many open files, an I/O error) raises OSError, so that a
    live claim is never taken for a stale one.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a pipe in its place must not block
        try:
            data = os.read(fd, MAX_CLAIM_BYTES + 1)
        finally:
            os.close(fd)
        owner = json.loads(data.decode())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, BlockingIOError, ValueError, RecursionError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("host"), str) or not _valid_pid(owner.get("pid")):
        return None
    if len(data) > MAX_CLAIM_BYTES or not isinstance(owner.get("start", None), (int, type(None))):
        return None
    return owner


def _heartbeat_age(path: Path) -> float | None:
    """Seconds since the claim's heartbeat touched it; None if it is gone (other failures raise OSError)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


class Claims:
    """The claims of one store: ``folder`` is ``<store>/.claims``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = socket.gethostname()
        self.tokens: dict[str, str] = {}  # key -> the token of the claim this process holds on it

    def file(self, key: str) -> Path:
        if not isinstance(key, str) or not key or "/" in key or os.sep in key or key.startswith("."):
            raise ValueError(f"a claim's key is a plain name, got {brief(key)}")
        return self.folder / f"{key}.claim"

    def is_stale(self, path: Path) -> bool:
        """No one holds this claim: not a claim, heartbeat too old, or (this host) its owner's process is gone. Where
        the claim or its owner cannot be looked at now (too many open files), it is held: a sweep waits, never
        takes a live claim."""
        try:
            owner, age = _read_owner(path), _heartbeat_age(path)
            if owner is None or age is None or age > STALE_AFTER_S:
                return True
            return owner["host"] == self.host and not process_alive(owner["pid"], owner.get("start"))
        except OSError:
            return False

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The store's claim lock (an flock, so the kernel drops it with its holder); no lock where flock is missing."""
        if fcntl is None:
            yield
            return
        try:
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # an unusable lock file (a folder in its place): the link alone decides
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def try_claim(self, key: str) -> bool:
        """Take the claim on ``key`` unless a live owner holds it (a stale claim is taken over)."""
        path = self.file(key)
        ensure_folder(self.folder)
        token = uuid.uuid4().hex
        mine = {"host": self.host, "pid": os.getpid(), "start": process_start(os.getpid()), "token": token,
                "since": time.time()}  # fmt: skip
        temp = self.folder / f".{key}.{token}.tmp"
        temp.write_text(json.dumps(mine))
        try:
            with self.locked():
                for _ in range(2):
                    try:
                        os.link(temp, path)
                    except FileExistsError:
                        if not self.is_stale(path):
                            return False
                        path.unlink(missing_ok=True)  # stale: under the lock, no other taker judges it meanwhile
                        continue
                    self.tokens[key] = token
                    return True
            return False
        finally:
            temp.unlink(missing_ok=True)

    def mine(self, key: str) -> bool:
        """Whether this process holds the claim on ``key`` (False where it cannot be read now: nothing is released)."""
        try:
            owner = _read_owner(self.file(key))
        except OSError:
            return False
        return owner is not None and key in self.tokens and owner.get("token") == self.tokens[key]

    def release(self, key: str) -> None:
        """Remove this process's claim on ``key``; a claim someone else took over is left to them."""
        path = self.file(key)
        with self.locked():
            if self.mine(key):
                path.unlink(missing_ok=True)
        self.tokens.pop(key, None)

    def held_by_others(self, key: str) -> bool:
        path = self.file(key)
        return path.exists() and not self.is_stale(path) and not self.mine(key)

    def describe(self, key: str) -> str | None:
        """Who holds the claim on ``key`` and how fresh its heartbeat is; None if no one does."""
        path = self.file(key)
        try:
            owner, age = _read_owner(path), _heartbeat_age(path)
        except OSError as error:
            return f"group {key[:12]}: its claim cannot be read just now ({error.strerror or error})"
        if owner is None or age is None or self.is_stale(path):
            return None
        return (f"group {key[:12]} is held by pid {owner['pid']} on {brief(owner['host'], 40)}, heartbeat {age:.0f} s ago "
                f"(taken over if its process ends or its heartbeat is {STALE_AFTER_S:.0f} s old)")  # fmt: skip

    @contextmanager
    def held(self, key: str) -> Iterator[bool]:
        """``with claims.held(key) as mine:`` compute only if ``mine``; the heartbeat runs meanwhile."""
        if not self.try_claim(key):
            yield False
            return
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(HEARTBEAT_S):
                try:
                    owner = _read_owner(self.file(key))
                    if owner is None or owner.get("token") != self.tokens.get(key):
                        return  # gone, or taken over (our heartbeat had stopped): the new owner's to refresh
                    os.utime(self.file(key))
                except OSError:
                    continue  # cannot be read or touched just now: try again at the next beat

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            yield True
        finally:
            stop.set()
            self.release(key)
