"""Supervised worker processes: start N, notice any that dies, stop them all on a signal, never hang.

``multiprocessing.Pool`` does none of this: a worker killed by a signal leaves its task pending forever (the
parent hangs), and SIGTERM to the parent leaves the workers running as orphans. ``run_workers`` instead:

- starts ``n`` processes (the ``spawn`` context: no fork of a parent holding threads or a GPU context)
  running ``target(*args)``, and waits on their sentinels, so a worker that ends (returns, raises, or dies
  by a signal) is noticed within ``tick_s``;
- on the first failure stops the others (SIGTERM, then SIGKILL after ``grace_s``) and raises one
  ``WorkerError`` whose message is one line: which worker, its pid, and how it ended (the signal's name,
  the exit status, or its exception's type and first line);
- forwards SIGINT and SIGTERM to every worker, waits for them (no orphans) and raises ``Stopped`` (a
  ``KeyboardInterrupt``, which the command line prints as one line);
- in each worker: SIGINT is ignored (the parent decides), SIGTERM raises ``Stopped`` so that ``finally``
  blocks run (a claim is released), warnings print as one line, no traceback is printed, and a worker
  whose parent disappears (killed with SIGKILL) stops itself within a second.

A worker's claims in a result store go stale as soon as its process is gone (``store_claims``), so the
cells it held are computed again by the next sweep.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait

from milr_core.brief import clip

TICK_S = 0.5  # how often the parent looks at its workers (and calls on_tick)
GRACE_S = 10.0  # how long a stopped worker may take to finish its ``finally`` blocks before SIGKILL


class WorkerError(RuntimeError):
    """A worker that failed: raised in the parent, one line."""


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM: in a worker, raised to unwind it; in the parent, after every worker has stopped."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# ----------------------------------------------------------------------------------------------------------
# in the worker


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _stop_on_signal(number, frame) -> None:
    raise Stopped(_signal_name(number))


def _watch_parent(parent: int) -> None:
    """Stop this worker if its parent is gone (it was killed and cannot stop us itself)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main(target: Callable, args: tuple, parent: int, report) -> None:
    """A worker's entry: run ``target(*args)`` and send ("ok", value) or ("error", one line) to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    warnings.showwarning = _one_line_warning
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        outcome = ("ok", target(*args))
    except Stopped:
        outcome = ("stopped", None)
    except BaseException as error:  # noqa: BLE001 - reported to the parent as one line, never as a traceback
        outcome = ("error", f"{type(error).__name__}: {clip(str(error))}")
    try:
        report.send(outcome)
    except OSError:  # the parent is gone: no one to tell
        pass
    except Exception as error:  # noqa: BLE001 - a result that does not pickle
        outcome = ("error", f"its result cannot be sent back: {type(error).__name__}: {clip(str(error))}")
        report.send(outcome)
    if outcome[0] != "ok":
        sys.exit(1 if outcome[0] == "error" else 128 + signal.SIGTERM)


# ----------------------------------------------------------------------------------------------------------
# in the parent


@dataclass
class Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    report: object  # the receiving end of the worker's pipe
    outcome: tuple | None = None
    done: bool = False

    def receive(self) -> None:
        try:
            while self.report.poll():
                self.outcome = self.report.recv()
        except (EOFError, OSError):
            pass

    def failure(self, n: int) -> str | None:
        """One line if the worker ended badly, None if it returned."""
        code, name = self.process.exitcode, f"worker {self.index + 1} of {n} (pid {self.process.pid})"
        if self.outcome is not None and self.outcome[0] == "ok" and code == 0:
            return None
        if self.outcome is not None and self.outcome[0] == "error":
            return f"{name} failed: {self.outcome[1]}"
        if code is not None and code < 0:
            return f"{name} was killed by {_signal_name(-code)}"
        return f"{name} ended with exit status {code} and no result"


def stop(workers: list[Worker], grace_s: float) -> None:
    """SIGTERM to every live worker, SIGKILL to those still running after ``grace_s``; all joined."""
    for worker in workers:
        if worker.process.is_alive():
            worker.process.terminate()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.report.close()


def run_workers(target: Callable, args: tuple, n: int, *, on_tick: Callable[[], None] | None = None,
                tick_s: float = TICK_S, grace_s: float = GRACE_S) -> list:  # fmt: skip
    """Run ``target(*args)`` in ``n`` supervised processes; returns their return values, in worker order.

    Args:
        target: a module-level function (the spawn context pickles it by name), as are ``args``.
        n: the number of workers, >= 1.
        on_tick: called every ``tick_s`` while the workers run (a progress bar); an error in it stops them.
        grace_s: how long stopped workers may take to unwind before they are killed.

    Raises:
        WorkerError: a worker raised, exited non-zero or died by a signal (the others are stopped first).
        Stopped: SIGINT or SIGTERM reached this process (every worker is stopped first).
    """
    context = multiprocessing.get_context("spawn")
    received: list[int] = []

    def record(number, frame) -> None:
        received.append(number)

    previous = {}
    if threading.current_thread() is threading.main_thread():  # only there can handlers be set
        previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGTERM, record)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the workers as they start: a Ctrl-C while they
        # import prints no traceback; they ignore it from then on too (the parent decides, and forwards SIGTERM)
    workers: list[Worker] = []
    try:
        for index in range(n):
            receiving, sending = context.Pipe(duplex=False)
            process = context.Process(target=worker_main, args=(target, args, os.getpid(), sending), daemon=False)
            process.start()
            sending.close()
            workers.append(Worker(index, process, receiving))
        if previous:
            signal.signal(signal.SIGINT, record)
        while not all(worker.done for worker in workers):
            if received:
                raise Stopped(f"stopped by {_signal_name(received[0])}")
            running = [w for w in workers if not w.done]
            wait([w.process.sentinel for w in running] + [w.report for w in running], timeout=tick_s)
            for worker in running:
                worker.receive()
                if worker.process.exitcode is not None:
                    worker.process.join()
                    worker.receive()
                    worker.done = True
                    failure = worker.failure(n)
                    if failure is not None:
                        raise WorkerError(failure)
            if on_tick is not None:
                on_tick()
        return [worker.outcome[1] for worker in workers]
    finally:
        stop(workers, grace_s)  # every worker ended and joined, whatever ended the loop
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
