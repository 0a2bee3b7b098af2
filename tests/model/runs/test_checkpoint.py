"""Checkpoints: atomic writes, round trips, and every kind of bad file -> CheckpointError."""

import errno
import os
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfusion.errors import CheckpointError
from deepfusion.model.runs import checkpoint as ck


def _state(value=1.0):
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, value)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return dict(
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        rng=ck.capture_rng(),
        epoch=2,
        position=3,
        step=11,
        skipped=0,
        elapsed=1.5,
        finished=False,
        config={"model": {"head": "mlp"}, "train": {"name": None}},
    )


def test_round_trip_keeps_everything(tmp_path):
    state = _state()
    ck.save_checkpoint(state, tmp_path)
    back = ck.load_checkpoint(tmp_path / "last.pt")
    assert back["step"] == 11 and back["config"] == state["config"]
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)
    assert back["optimizer"]["param_groups"][0]["lr"] == 0.1


def test_rng_states_restore_exactly():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    saved = ck.capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5)
    np.random.rand(5)
    random.random()
    ck.restore_rng(saved)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_previous_checkpoint_is_kept(tmp_path):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)
    assert ck.load_checkpoint(tmp_path / "last.pt")["step"] == 2
    assert ck.load_checkpoint(tmp_path / "prev.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]  # no temp files left


def test_failed_write_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)

    def crash(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", crash)
    with pytest.raises(OSError):
        ck.save_checkpoint(dict(_state(), step=2), tmp_path)
    monkeypatch.undo()
    assert ck.load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_write_keeps_last_and_prev_two_checkpoints(tmp_path, monkeypatch):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)
    _fail_writes(monkeypatch)
    with pytest.raises(OSError):
        ck.save_checkpoint(dict(_state(), step=3), tmp_path)
    monkeypatch.undo()
    last, prev = tmp_path / "last.pt", tmp_path / "prev.pt"
    assert ck.load_checkpoint(last)["step"] == 2 and ck.load_checkpoint(prev)["step"] == 1
    assert not os.path.samefile(last, prev)  # not two names of one file: damage to one spares the other
    ck.save_checkpoint(dict(_state(), step=4), tmp_path)  # the next save rotates as usual
    assert ck.load_checkpoint(last)["step"] == 4 and ck.load_checkpoint(prev)["step"] == 2


def test_without_hard_links_prev_is_a_copy_made_after_the_write(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported", str(dst))

    monkeypatch.setattr(ck.os, "link", no_links)
    for step in (1, 2, 3):
        ck.save_checkpoint(dict(_state(), step=step), tmp_path)
    last, prev = tmp_path / "last.pt", tmp_path / "prev.pt"
    assert ck.load_checkpoint(last)["step"] == 3 and ck.load_checkpoint(prev)["step"] == 2
    assert not os.path.samefile(last, prev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]  # no temporary left


def test_temp_file_of_a_killed_write_is_cleared_only_by_the_lock_holder(tmp_path):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)
    for name in (".last.pt.abc123.tmp", ".prev.pt.def456.link"):  # as SIGKILL mid-write leaves them
        (tmp_path / name).write_bytes(b"PK\x03\x04 half")
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)  # no lock: could be another process's live file
    assert (tmp_path / ".last.pt.abc123.tmp").exists() and (tmp_path / ".prev.pt.def456.link").exists()
    ck.save_checkpoint(dict(_state(), step=3), tmp_path, clear_stale=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]


def test_atomic_save_uses_replace_in_same_folder(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(ck.os, "replace", lambda a, b: (seen.append((str(a), str(b))), real(a, b)))
    ck.atomic_save({"x": 1}, tmp_path / "f.pt")
    src, dst = seen[-1]
    assert os.path.dirname(src) == str(tmp_path) and dst == str(tmp_path / "f.pt")


def test_truncated_file(tmp_path):
    ck.save_checkpoint(_state(), tmp_path)
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ck.load_checkpoint(tmp_path / "last.pt")


def test_latest_falls_back_to_previous(tmp_path):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04garbage")
    assert ck.latest_checkpoint(tmp_path)["step"] == 1


def test_corrupt_file(tmp_path):
    ck.save_checkpoint(_state(), tmp_path)
    path = tmp_path / "last.pt"
    data = bytearray(path.read_bytes())
    # flip bytes inside the stored tensors but keep the zip directory intact
    for i in range(200, min(len(data) - 400, 1200)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt|truncated|not a deepfusion"):
        ck.load_checkpoint(path)


@pytest.mark.parametrize("content", [b"hello world", b""])
def test_foreign_file(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="not a deepfusion checkpoint"):
        ck.load_checkpoint(tmp_path / "x.pt")


def test_foreign_torch_file(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="foreign"):
        ck.load_checkpoint(tmp_path / "x.pt")


def test_pickled_code_is_refused(tmp_path):
    torch.save({"format": ck.FORMAT, "version": ck.VERSION, "obj": object()}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="corrupt"):
        ck.load_checkpoint(tmp_path / "x.pt")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ck.latest_checkpoint(tmp_path)


def test_mismatched_model(tmp_path):
    ck.save_checkpoint(_state(), tmp_path)
    state = ck.load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="does not match the model"):
        ck.load_model_state(torch.nn.Linear(4, 2), state["model"])
    with pytest.raises(CheckpointError, match="does not match the model"):
        ck.load_model_state(torch.nn.Sequential(torch.nn.Linear(3, 2)), state["model"])


def test_mismatched_config(tmp_path):
    with pytest.raises(CheckpointError, match="model.head"):
        ck.check_config_matches({"model": {"head": "mlp"}}, {"model": {"head": "transformer"}})
    ck.check_config_matches(
        {"model": {"head": "mlp"}, "train": {"epochs": 1}}, {"model": {"head": "mlp"}, "train": {"epochs": 9}}
    )


def test_errors_are_one_line(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    with pytest.raises(CheckpointError) as info:
        ck.load_checkpoint(tmp_path / "x.pt")
    assert "\n" not in str(info.value)


_FUZZ_BLOB = {}


def _checkpoint_bytes(tmp_path_factory) -> bytes:
    if "blob" not in _FUZZ_BLOB:
        folder = tmp_path_factory.mktemp("ckpt")
        ck.save_checkpoint(_state(), folder)
        _FUZZ_BLOB["blob"] = (folder / "last.pt").read_bytes()
    return _FUZZ_BLOB["blob"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_damaged_checkpoints_raise_only_checkpoint_error(data, tmp_path_factory):
    """Cut and flipped checkpoint files either load (a harmless flip) or raise CheckpointError, one line."""
    blob = bytearray(_checkpoint_bytes(tmp_path_factory))
    blob = blob[: data.draw(st.integers(0, len(blob)), label="cut")]
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("fuzz") / "last.pt"
    path.write_bytes(bytes(blob))
    try:
        ck.load_checkpoint(path)
    except CheckpointError as err:
        assert "\n" not in str(err)


# ---------------------------------------------------------------- rotation and failed writes
TORCH_FULL_DISK = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def _fail_writes(monkeypatch):
    def full(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise TORCH_FULL_DISK  # what torch raises when the disk fills (seen on a 6 MB tmpfs)

    monkeypatch.setattr(ck.torch, "save", full)


def test_corrupt_last_and_a_failing_write_leave_prev_loadable(tmp_path, monkeypatch, capsys):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04garbage")  # last.pt goes bad; prev.pt holds step 1
    _fail_writes(monkeypatch)
    with pytest.raises(OSError, match="torch could not write the file: .*unexpected pos.*free on that disk"):
        ck.save_checkpoint(dict(_state(), step=3), tmp_path)
    monkeypatch.undo()
    assert ck.load_checkpoint(tmp_path / "prev.pt")["step"] == 1  # never overwritten by the corrupt last.pt
    assert ck.latest_checkpoint(tmp_path, quiet=True)["step"] == 1
    assert [p.name.startswith("last.corrupt-") for p in tmp_path.iterdir()].count(True) == 1
    assert "does not load" in capsys.readouterr().err


def test_resume_sets_a_corrupt_last_aside(tmp_path, capsys):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04garbage")
    assert ck.latest_checkpoint(tmp_path, set_aside_bad=True)["step"] == 1
    assert not (tmp_path / "last.pt").exists() and "does not load" in capsys.readouterr().err
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)  # the next save cannot rotate garbage over prev.pt
    assert ck.load_checkpoint(tmp_path / "prev.pt")["step"] == 1


def test_fallback_to_prev_is_announced(tmp_path, capsys):
    ck.save_checkpoint(dict(_state(), step=1), tmp_path)
    ck.save_checkpoint(dict(_state(), step=2), tmp_path)
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04garbage")
    assert ck.latest_checkpoint(tmp_path)["step"] == 1
    err = capsys.readouterr().err
    assert "warning" in err and "using prev.pt (step 1)" in err and (tmp_path / "last.pt").exists()  # read-only: kept


FILL_DISK = """
import resource, signal, sys, torch
from deepfusion.model.runs import checkpoint as ck
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    ck.save_checkpoint({"model": {"w": torch.zeros(200_000)}, "config": {}, "step": 2, "finished": False}, sys.argv[1])
except OSError as err:
    print("OSError", err)
"""


def test_a_real_failed_write_is_an_oserror_and_keeps_the_old_checkpoint(tmp_path):
    """No monkeypatching: a file-size limit makes the kernel refuse the write, as a full disk does."""
    import subprocess
    import sys

    ck.save_checkpoint({"model": {"w": torch.zeros(10)}, "config": {}, "step": 1, "finished": False}, tmp_path)
    out = subprocess.run([sys.executable, "-c", FILL_DISK, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.startswith("OSError") and "torch could not write the file" in out.stdout, out.stdout
    assert ck.load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert not (tmp_path / "prev.pt").exists()  # nothing rotated: the write failed before the rename
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- every field checked
@pytest.mark.parametrize(
    "change, words",
    [
        (dict(optimizer=None), "'optimizer' must be an optimiser state"),
        (dict(step="x"), "'step' must be an integer >= 0"),
        (dict(step=-3), "'step' must be an integer >= 0"),
        (dict(epoch=1.5), "'epoch' must be an integer"),
        (dict(finished="yes"), "'finished' must be true or false"),
        (dict(elapsed=float("nan")), "'elapsed' must be a finite number"),
        (dict(rng={"torch": torch.zeros(3)}), "'rng' must hold torch's RNG state"),
        (dict(config=[1, 2]), "'config' must map config sections"),
        (dict(model={"w": 3}), "'model' must map parameter names to tensors"),
    ],
)
def test_a_malformed_field_is_named(tmp_path, change, words):
    ck.save_checkpoint(dict(_state(), **change), tmp_path)
    with pytest.raises(CheckpointError) as info:
        ck.load_checkpoint(tmp_path / "last.pt", resume=True)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("field", ["optimizer", "config", "rng", "step", "model", "scheduler"])
def test_a_missing_field_is_named(tmp_path, field):
    state = _state()
    del state[field]
    ck.save_checkpoint(state, tmp_path)
    with pytest.raises(CheckpointError, match=f"has no '{field}' field"):
        ck.load_checkpoint(tmp_path / "last.pt", resume=True)


def test_an_older_checkpoint_with_a_scaler_field_still_resumes(tmp_path):
    ck.save_checkpoint(dict(_state(), scaler={}), tmp_path)  # older versions saved a disabled GradScaler's state
    assert ck.load_checkpoint(tmp_path / "last.pt", resume=True)["step"] == 11
    ck.save_checkpoint(dict(_state(), scaler=[1]), tmp_path)  # present, it is still checked
    with pytest.raises(CheckpointError, match="field 'scaler'"):
        ck.load_checkpoint(tmp_path / "last.pt", resume=True)


def test_evaluation_needs_only_model_config_and_progress(tmp_path):
    state = {k: v for k, v in _state().items() if k in ("model", "config", "step", "finished")}
    ck.save_checkpoint(state, tmp_path)
    assert ck.load_checkpoint(tmp_path / "last.pt")["step"] == 11
    with pytest.raises(CheckpointError, match="has no 'optimizer' field"):
        ck.load_checkpoint(tmp_path / "last.pt", resume=True)


def test_files_get_the_mode_open_would_give(tmp_path):
    from deepfusion.model.runs.layout import write_json

    mask = os.umask(0o022)
    os.umask(mask)
    ck.save_checkpoint(_state(), tmp_path)
    write_json(tmp_path / "eval.json", {"x": 1})
    for name in ("last.pt", "eval.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_cuda_rng_states_pass_the_field_check(tmp_path):
    """What capture_rng stores once CUDA is in use (checked here without a GPU)."""
    rng = dict(ck.capture_rng(), cuda=[torch.zeros(16, dtype=torch.uint8)])
    ck.save_checkpoint(dict(_state(), rng=rng, rng_ranks=[rng, rng]), tmp_path)
    assert len(ck.load_checkpoint(tmp_path / "last.pt", resume=True)["rng"]["cuda"]) == 1
    ck.save_checkpoint(dict(_state(), rng=dict(rng, cuda=[torch.zeros(3)])), tmp_path)
    with pytest.raises(CheckpointError, match="CUDA RNG states"):
        ck.load_checkpoint(tmp_path / "last.pt", resume=True)
