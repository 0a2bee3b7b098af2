"""Training loop: a tiny end-to-end run, exact resume, NaN stop, SIGKILL/SIGTERM in real processes."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deepfusion.errors import CheckpointError, ConfigError, RunError
from deepfusion.model.runs import run_setup, run_state
from deepfusion.model.runs.checkpoint import load_checkpoint
from deepfusion.model.runs.checksum import with_checksum
from deepfusion.model.runs.config import load_config

# A few seconds on CPU: synthetic clusters, MLP backbone, 2-layer transformer head.
TINY = [
    "train.epochs=3",
    "data.options.num_classes=4",
    "data.options.samples_per_class=80",
    "data.test_fraction=0.25",
    "train.batch_size=32",
    "train.log_every=1",
    "train.device=cpu",
    "model.dim=16",
    "model.depth=1",
    "model.heads=2",
    "model.ffn_dim=16",
    "model.out_dim=8",
    "eval.linear_epochs=2",
    "eval.head_batch=32",
    "eval.knn_k=5",
]


def tiny(tmp_path, *extra):
    return load_config("synthetic", TINY + [f"train.out_dir={tmp_path}", *extra])


def weights(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")["model"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_run_writes_every_file(tmp_path):
    from deepfusion.model.runs.loop import train

    run_dir = train(tiny(tmp_path, "train.name=t"), progress=False).run_dir
    assert run_dir == tmp_path / "t"
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "eval.json"):
        assert (run_dir / name).is_file(), name
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "epoch", "loss", "lr", "images_per_s", "time"} <= set(lines[0])
    assert [l["step"] for l in lines] == list(range(1, len(lines) + 1))
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["step"] == lines[-1]["step"] and ckpt["finished"]
    assert load_config(run_dir / "config.yaml") == tiny(tmp_path, "train.name=t")
    results = json.loads((run_dir / "eval.json").read_text())
    assert "skipped" not in results


def test_default_run_folder_is_the_cache_scheme(tmp_path):
    from deepfusion.model.runs.run_name import default_run_dir, run_dir_for

    cfg = tiny(tmp_path)
    assert default_run_dir(cfg) == run_dir_for(cfg, tmp_path)
    assert default_run_dir(cfg).name.startswith(f"synthetic-{cfg.model.head}-s{cfg.train.seed}-")
    assert default_run_dir(tiny(tmp_path, "train.name=mine")) == tmp_path / "mine"


def test_resume_continues_exactly(tmp_path, monkeypatch):
    import deepfusion.model.runs.loop as T

    full = T.train(tiny(tmp_path, "train.name=full", "eval.linear_epochs=0"), progress=False).run_dir
    cfg = tiny(tmp_path, "train.name=cut", "train.checkpoint_every=1", "eval.linear_epochs=0")
    real, calls = run_setup.nt_xent, {"n": 0}

    def crash_at_step_5(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # stands in for a crash between checkpoints
        return real(*a, **k)

    monkeypatch.setattr(run_setup, "nt_xent", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 4
    monkeypatch.setattr(run_setup, "nt_xent", real)
    T.train(cfg, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert same(weights(full), weights(tmp_path / "cut"))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import deepfusion.model.runs.loop as T

    real, calls = run_setup.nt_xent, {"n": 0}

    def nan_at_step_9(*a, **k):  # the 9th step has index 8; checkpoints were written at steps 2, 4, 6, 8
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 9 else loss

    monkeypatch.setattr(run_setup, "nt_xent", nan_at_step_9)
    cfg = tiny(tmp_path, "train.name=nan", "train.log_every=100", "train.checkpoint_every=2")
    with pytest.raises(RunError, match="step 8") as info:
        T.train(cfg, progress=False)
    assert "\n" not in str(info.value)
    ckpt = load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 8 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_skip_nonfinite_skips_bounded_number_of_steps(tmp_path, monkeypatch):
    import deepfusion.model.runs.loop as T

    real, calls = run_setup.nt_xent, {"n": 0}

    def nan_once(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(run_setup, "nt_xent", nan_once)
    run_dir = T.train(
        tiny(tmp_path, "train.name=skip", "train.skip_nonfinite=1", "eval.linear_epochs=0"), progress=False
    ).run_dir
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["skipped"] == 1 and ckpt["finished"]


@pytest.mark.parametrize(
    "override, error, match",
    [
        ("train.device=cuda", RunError, "CUDA"),
        ("train.batch_size=100000", ConfigError, "batch_size"),
    ],
)
def test_bad_setups_fail_before_work(tmp_path, override, error, match):
    from deepfusion.model.runs.loop import train

    if override.startswith("train.device=cuda") and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(error, match=match):
        train(tiny(tmp_path, override), progress=False)
    assert not list(tmp_path.rglob("last.pt"))


def test_batch_share_too_small_for_scope_under_data_parallel(tmp_path):
    from deepfusion.model.runs.batch import check_batch as _check_batch

    cfg = tiny(tmp_path, "model.scope=per_view", "train.batch_size=2")
    _check_batch(cfg, 100, world=1)  # one process: the head sees both instances
    with pytest.raises(ConfigError, match="each of 2 processes 1 samples.*per_view.*at least 4"):
        _check_batch(cfg, 100, world=2)
    _check_batch(tiny(tmp_path, "model.scope=per_view", "train.batch_size=2", "train.attend=global"), 100, world=2)


def test_checkpoint_write_failure_is_a_run_error(tmp_path, monkeypatch):
    import deepfusion.model.runs.loop as T

    def disk_full(state, folder, **_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_state, "save_checkpoint", disk_full)
    with pytest.raises(RunError, match="cannot write a checkpoint.*No space left.*--resume") as info:
        T.train(tiny(tmp_path, "train.name=full"), progress=False)
    assert "\n" not in str(info.value)


def test_torch_write_error_is_a_run_error(tmp_path, monkeypatch):
    """torch reports a full disk as RuntimeError ("unexpected pos"), not OSError."""
    import deepfusion.model.runs.checkpoint as ck
    import deepfusion.model.runs.loop as T

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(ck.torch, "save", full)
    with pytest.raises(
        RunError, match="cannot write a checkpoint.*unexpected pos.*free on that disk.*--resume"
    ) as info:
        T.train(tiny(tmp_path, "train.name=full"), progress=False)
    assert "\n" not in str(info.value)


@pytest.mark.slow  # a real training process (about 5 s)
def test_disk_filling_up_during_a_real_run_is_one_line(tmp_path):
    """A real process whose files may not grow past 20 kB (RLIMIT_FSIZE, no root needed): the kernel refuses the
    checkpoint write as a full disk would, torch raises its RuntimeError, the user gets one line."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = subprocess.run(
        _cli(tmp_path, "full"), env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=limit
    )
    assert out.returncode == 3, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write a checkpoint" in lines[0] and "torch could not write" in lines[0], lines


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("optimizer", None, "'optimizer' must be an optimiser state"),
        ("rng", {"torch": "x"}, "'rng' must hold torch's RNG state"),
        ("step", 5, "impossible position"),
        ("optimizer", {"state": {}, "param_groups": []}, "its optimizer state does not fit"),
    ],
)
def test_a_damaged_checkpoint_field_stops_resume_with_one_line(tmp_path, field, value, words):
    from deepfusion.model.runs.loop import train

    run = train(tiny(tmp_path, "train.name=f", "train.epochs=1", "eval.linear_epochs=0"), progress=False).run_dir
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt[field] = value
    torch.save(with_checksum(ckpt), run / "checkpoints" / "last.pt")  # damaged as written, not on disk
    (run / "checkpoints" / "prev.pt").unlink(missing_ok=True)
    with pytest.raises((RunError, ConfigError, CheckpointError)) as info:
        train(
            tiny(tmp_path, "train.name=f", "train.epochs=2", "eval.linear_epochs=0"),
            run_dir=run,
            resume=True,
            progress=False,
        )
    assert words in str(info.value) and "\n" not in str(info.value)


def test_out_of_memory_names_the_step(tmp_path, monkeypatch):
    import deepfusion.model.runs.loop as T

    real, calls = run_setup.nt_xent, {"n": 0}

    def oom_at_step_3(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(*a, **k)

    monkeypatch.setattr(run_setup, "nt_xent", oom_at_step_3)
    with pytest.raises(RunError, match="out of cpu memory at step 2.*--resume"):
        T.train(tiny(tmp_path, "train.name=oom"), progress=False)


def test_unwritable_output_folder(tmp_path):
    from deepfusion.model.runs.loop import train

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match="cannot write"):
        train(tiny(tmp_path, f"train.out_dir={blocker}"), progress=False)


def test_existing_run_needs_resume(tmp_path):
    from deepfusion.model.runs.loop import train

    cfg = tiny(tmp_path, "train.name=x", "train.epochs=1", "eval.linear_epochs=0")
    train(cfg, progress=False)
    with pytest.raises(RunError, match="--resume"):
        train(cfg, progress=False)


# ---------------------------------------------------------------- real processes
def _cli(tmp_path, name, *extra):
    return [
        sys.executable,
        "-m",
        "deepfusion.cli",
        "train",
        "--config",
        "synthetic",
        "--no-progress",
        "--out",
        str(tmp_path),
        *TINY,
        "train.epochs=4",
        "train.checkpoint_every=1",
        "eval.linear_epochs=0",
        f"train.name={name}",
        *extra,
    ]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _wait_for_step(proc, metrics: Path, step: int, timeout=120.0):
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= step:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow  # trains twice with a kill between (about 10 s)
def test_sigkill_at_random_step_then_resume_matches_uninterrupted(tmp_path):
    full = subprocess.run(_cli(tmp_path, "full"), env=_env(), capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    kill_step = random.Random().randint(1, 24)  # 4 epochs x 7 steps
    proc = subprocess.Popen(_cli(tmp_path, "cut"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reached = _wait_for_step(proc, tmp_path / "cut" / "metrics.jsonl", kill_step)
    proc.send_signal(signal.SIGKILL) if proc.poll() is None else None
    proc.communicate(timeout=60)
    assert reached, f"run ended before step {kill_step}"
    resumed = subprocess.run(
        _cli(tmp_path, "ignored")[:4] + ["--resume", str(tmp_path / "cut"), "--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert same(weights(tmp_path / "full"), weights(tmp_path / "cut")), f"differs after kill at step {kill_step}"


@pytest.mark.slow  # a real training process per signal (5-6 s each)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_sigterm_saves_and_exits_cleanly(tmp_path, signum):
    proc = subprocess.Popen(
        _cli(tmp_path, "term", "train.epochs=50", "train.checkpoint_every=0"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _wait_for_step(proc, tmp_path / "term" / "metrics.jsonl", 3)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "--resume" in out + err
    ckpt = load_checkpoint(tmp_path / "term" / "checkpoints" / "last.pt")
    assert ckpt["step"] >= 3 and not ckpt["finished"]


@pytest.mark.slow
def test_digits_preset_reaches_target_accuracy(tmp_path):
    from deepfusion.model.runs.loop import train

    run_dir = train(load_config("digits", [f"train.out_dir={tmp_path}"]), progress=False).run_dir
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["linear"] >= 0.95 and results["knn"] >= 0.92, results
