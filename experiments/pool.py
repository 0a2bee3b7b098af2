"""Training processes: a pool of workers that die with their parent and stop cleanly.

``experiments.runs.prefetch`` trains several runs at once in spawned worker processes. Three rules keep a
stopped job from leaving anything behind:

- **Ctrl-C and SIGTERM reach the parent as one line.** In a worker, SIGINT, SIGTERM and SIGHUP stop
  a job at once (one arriving between jobs stops the next before it starts), except while its
  training loop runs, whose own handler saves a checkpoint and stops at the next step. The parent
  turns Ctrl-C or SIGTERM into :class:`Interrupted`, forwards SIGTERM to its workers, waits for
  their checkpoints and reports how many runs finished; rerunning the command reuses them.
- **Workers die with their parent.** Each worker asks the kernel for SIGTERM when its parent dies
  (Linux ``PR_SET_PDEATHSIG``) and a watchdog thread polls the parent's pid (everywhere), so a
  ``kill -9`` of the parent never leaves a worker training under PID 1 or holding a run folder's
  lock: a training worker saves its checkpoint and exits, an idle one exits at once.
- **Exceptions cross the process boundary intact**: every error the project raises pickles with
  its arguments (:class:`~deepfusion.errors.Interrupted` carries its signal).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Callable

from deepfusion.errors import Interrupted

_PARENT: int | None = None  # this worker's parent pid (None in the parent itself)
_BUSY = threading.Event()  # set while this worker runs a job


# ---------------------------------------------------------------- worker side
def _die_with_parent() -> None:
    """Linux: SIGTERM to this process when its parent exits (the training loop then saves and stops)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the watchdog below is enough
        pass


def _orphaned() -> bool:
    return _PARENT is not None and os.getppid() != _PARENT


def _watchdog(poll_s: float) -> None:
    """Once the parent is gone: a training worker is told to save and stop (:func:`job` then exits);
    any other (idle, evaluating, drawing) exits at once."""
    while not _orphaned():
        time.sleep(poll_s)
    if not _BUSY.is_set():
        os._exit(143)
    os.kill(os.getpid(), signal.SIGTERM)  # training: it saves a checkpoint and stops; else _on_signal stops it


_PENDING: list[int] = []  # a stop that arrived while no job ran: the next job stops before it starts


def _on_signal(signum, frame) -> None:
    """SIGINT/SIGTERM outside the training loop (whose own handler saves and stops): a job loading data
    or evaluating stops at once; between jobs the stop is kept for the next one."""
    if _BUSY.is_set():
        raise Interrupted(f"stopped by {signal.Signals(signum).name} outside training", signum)
    _PENDING.append(signum)


def init_worker(parent: int, poll_s: float = 0.2) -> None:
    """Pool initializer: signals as described in the module docstring, then the parent watch."""
    global _PARENT
    _PARENT = parent
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the training loop has its own while it trains
        signal.signal(s, _on_signal)
    _die_with_parent()
    if _orphaned():  # the parent died before the request above took effect
        os._exit(143)
    threading.Thread(target=_watchdog, args=(poll_s,), daemon=True, name="parent-watch").start()


def job(fn: Callable, *args):
    """Run ``fn(*args)`` in a worker; with no parent left to report to, exit instead of returning."""
    _BUSY.set()
    try:
        if _PENDING:
            raise Interrupted(f"stopped by {signal.Signals(_PENDING[0]).name} before it started", _PENDING[0])
        return fn(*args)
    finally:
        _BUSY.clear()
        if _orphaned():
            os._exit(143)


# ---------------------------------------------------------------- parent side
class _Stop(Exception):
    """SIGTERM of the parent, raised where the parent waits."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _sigterm_raises():
    """SIGTERM and SIGHUP raise :class:`_Stop` in the main thread for the ``with`` block (as Ctrl-C does)."""
    if not _main():
        yield
        return

    def handler(signum, frame):
        raise _Stop(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stop_workers(pool) -> None:
    """SIGTERM to every live worker (busy ones stop, training ones after saving; idle ones ignore it), then wait."""
    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signal.SIGTERM)
        except (ProcessLookupError, TypeError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def run_jobs(
    fn: Callable,
    jobs: list[tuple],
    workers: int,
    describe: Callable[[tuple], str],
    log: Callable[[str], None] | None = None,
    what: str = "figures",
) -> None:
    """``fn(*args)`` for each ``args`` of ``jobs``, ``workers`` spawned processes at a time.

    A failed job stops the others and raises its own error; Ctrl-C, SIGTERM or a worker's
    :class:`Interrupted` stop every worker (each saves its checkpoint) and raise one
    :class:`Interrupted` that says how many jobs finished.
    """
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no inherited threads or locks
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker, initargs=(os.getpid(),))
    done, signum = 0, None
    try:
        with _sigterm_raises():
            futures = {pool.submit(job, fn, *args): args for args in jobs}
            for future in as_completed(futures):
                future.result()  # a failed run stops the figures with its own error
                done += 1
                if log:
                    log(f"  trained {done}/{len(jobs)} {describe(futures[future])}")
    except KeyboardInterrupt:
        signum = signal.SIGINT
    except _Stop as stop:
        signum = stop.signum
    except Interrupted as err:  # a worker was stopped by a signal of its own
        signum = err.signum
    finally:
        # a second SIGTERM while the workers save must not kill the parent and orphan them
        old = signal.signal(signal.SIGTERM, signal.SIG_IGN) if _main() else None
        try:
            _stop_workers(pool)
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)
    if signum is not None:
        raise interrupted(what, signum, f"{done} of {len(jobs)} runs finished, the others saved a checkpoint")


def interrupted(what: str, signum: int, detail: str) -> Interrupted:
    """The one line a stopped ``figures``/``reproduce`` ends with: what was kept and how to go on."""
    return Interrupted(
        f"{what} stopped by {signal.Signals(signum).name}: {detail}; rerun the same command: it "
        "reuses every finished run and resumes the others from their checkpoints",
        signum,
    )


@contextmanager
def stopped(what: str):
    """For a command: Ctrl-C (outside training too) or an :class:`Interrupted` ends in one line on
    stderr, ``deepfusion WHAT: stopped by SIG...; rerun ...``, and ``outcome["exit"]`` = 128 + signal."""
    outcome = {"exit": 0}
    try:
        yield outcome
    except KeyboardInterrupt:
        err = interrupted(what, signal.SIGINT, "every finished run is kept")
        print(f"deepfusion {what}: {err}", file=sys.stderr, flush=True)
        outcome["exit"] = err.exit_code
    except Interrupted as err:
        if "rerun the same command" not in str(err):
            err = interrupted(what, err.signum, "the run in training saved a checkpoint")
        print(f"deepfusion {what}: {err}", file=sys.stderr, flush=True)
        outcome["exit"] = err.exit_code
