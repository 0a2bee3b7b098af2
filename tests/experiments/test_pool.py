"""The figures' worker pool: interrupts arrive as one line, workers never outlive their parent."""

from __future__ import annotations

import fcntl
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.experiments.test_runs import TINY

ROOT = Path(__file__).resolve().parents[2]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _gone(pids, timeout=30.0) -> list[int]:
    """The pids still alive after ``timeout`` seconds."""
    end = time.time() + timeout
    alive = list(pids)
    while alive and time.time() < end:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.05)
    return alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of the test's own child counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_training_interrupt_survives_the_trip_to_the_parent():
    from deepfusion.errors import Interrupted
    from deepfusion.model.runs.loop import TrainingInterrupted

    err = pickle.loads(pickle.dumps(TrainingInterrupted("stopped by SIGTERM at step 3/9", signal.SIGTERM)))
    assert isinstance(err, TrainingInterrupted) and err.exit_code == 143 and "step 3/9" in str(err)
    assert pickle.loads(pickle.dumps(Interrupted("x", signal.SIGINT))).exit_code == 130


def stoppable(seconds: float) -> None:
    """A worker's job that stops on SIGTERM/SIGINT the way the training loop does (no training)."""
    from deepfusion.errors import Interrupted
    from deepfusion.model.runs.controls import stop_on_signals

    with stop_on_signals() as stop:
        end = time.time() + seconds
        while time.time() < end and stop["signum"] is None:
            time.sleep(0.02)
    if stop["signum"] is not None:
        raise Interrupted("stopped", stop["signum"])


# A parent whose workers wait (no training): how the pool behaves when the parent is stopped or killed.
SLEEPERS = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever started the test
    from deepfusion.errors import DeepFusionError
    from deepfusion.experiments.pool import run_jobs
    from tests.experiments.test_pool import stoppable
    try:
        run_jobs(stoppable, [(600,), (600,)], 2, describe=str)
    except DeepFusionError as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_code)
""")


def _sleepers():
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPERS],
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=ROOT,
    )
    end = time.time() + 60
    while len(_children(proc.pid)) < 2 and time.time() < end:  # two workers (and the resource tracker)
        time.sleep(0.05)
    time.sleep(1.0)  # the workers' initializer has run
    return proc, _children(proc.pid)


@pytest.mark.slow  # interpreter start-ups, about 3 s; the default run keeps the Ctrl-C case below
def test_workers_die_with_a_killed_parent():
    proc, workers = _sleepers()
    assert len(workers) >= 2
    proc.kill()
    proc.wait(timeout=10)
    assert _gone(workers, timeout=10) == []


# SIGTERM takes the same path as Ctrl-C and costs seconds more: it runs with the slow tests.
@pytest.mark.parametrize("signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_stopped_parent_reports_one_line_and_leaves_no_worker(signum):
    proc, workers = _sleepers()
    proc.send_signal(signum)  # the parent alone: it forwards the stop to its workers
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signum, err
    assert len(err.strip().splitlines()) == 1 and "rerun the same command" in err
    assert _gone(workers, timeout=10) == []


# ---------------------------------------------------------------- real training workers (prefetch)
PREFETCH = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever started the test
    from deepfusion.errors import DeepFusionError
    from deepfusion.experiments import runs
    specs = [runs.RunSpec("synthetic", tuple(sys.argv[2:]) + (f"train.seed={s}",)) for s in (0, 1)]
    try:
        runs.prefetch(specs, sys.argv[1], workers=2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except DeepFusionError as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_code)
""")


def _training(tmp_path):
    args = [a for a in TINY if not a.startswith("train.epochs")] + [
        "train.epochs=400",
        "train.checkpoint_every=1",
        "train.log_every=1",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", PREFETCH, str(tmp_path), *args],
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    end = time.time() + 120
    while time.time() < end and proc.poll() is None:
        if len([m for m in tmp_path.glob("*/metrics.jsonl") if m.read_text().count("\n") >= 2]) == 2:
            break
        time.sleep(0.05)
    return proc, _children(proc.pid)


def _locks_free(root: Path) -> bool:
    for lock in root.glob("*/.lock"):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
    return True


@pytest.mark.slow
def test_ctrl_c_of_training_workers_is_one_line_and_saves(tmp_path):
    from deepfusion.model.runs.checkpoint import latest_checkpoint

    proc, workers = _training(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _gone(workers) == [] and _locks_free(tmp_path)
    assert all(latest_checkpoint(d / "checkpoints")["step"] >= 2 for d in tmp_path.iterdir() if d.is_dir())


@pytest.mark.slow
def test_kill_9_of_the_parent_leaves_no_training_worker(tmp_path):
    proc, workers = _training(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    assert _gone(workers, timeout=60) == [], "workers outlived their parent"
    assert _locks_free(tmp_path)
