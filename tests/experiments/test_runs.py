"""The one way to get a finished run: trains a config once, reuses it, and trains anew when the config changes."""

from __future__ import annotations

import json

import pytest

from deepfusion.errors import DataError, RunError
from deepfusion.experiments import runs
from deepfusion.experiments.runs import RunSpec, get_run, is_finished, run_dir_for
from deepfusion.model.runs import run_name
from deepfusion.model.runs.config import load_config
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.run_record import Run
from tests.experiments.run_fixtures import CountingTrain, write_finished

TINY = (
    "train.epochs=1",
    "train.batch_size=64",
    "model.depth=1",
    "eval.linear_epochs=2",
    "eval.head_batch=32",
    "data.options={samples_per_class: 40}",
    "train.device=cpu",
)


def test_trains_once_then_loads(tmp_path):
    train = CountingTrain()
    cfg = load_config("digits", ["train.epochs=1"])
    first = get_run(cfg, tmp_path, train_fn=train)
    second = get_run(load_config("digits", ["train.epochs=1"]), tmp_path, train_fn=train)
    assert first.run_dir == second.run_dir and first.eval == second.eval
    assert len(train.calls) == 1
    assert isinstance(second, Run) and second.eval.knn == 0.5 and second.cfg.train.epochs == 1


def test_changed_config_reruns(tmp_path):
    train = CountingTrain()
    a = get_run(load_config("digits", ["train.epochs=1"]), tmp_path, train_fn=train)
    b = get_run(load_config("digits", ["train.epochs=2"]), tmp_path, train_fn=train)
    c = get_run(load_config("digits", ["train.epochs=1", "loss.temperature=0.3"]), tmp_path, train_fn=train)
    assert len({a.run_dir, b.run_dir, c.run_dir}) == 3
    assert len(train.calls) == 3


def test_output_location_keys_do_not_rerun(tmp_path):
    train = CountingTrain()
    get_run(load_config("digits", ["train.epochs=1"]), tmp_path, train_fn=train)
    get_run(load_config("digits", ["train.epochs=1", "train.out_dir=elsewhere"]), tmp_path, train_fn=train)
    assert len(train.calls) == 1


def test_salt_and_version_rerun(tmp_path, monkeypatch):
    train = CountingTrain()
    cfg = load_config("digits", ["train.epochs=1"])
    get_run(cfg, tmp_path, train_fn=train)
    get_run(cfg, tmp_path, salt="loss-fix", train_fn=train)
    monkeypatch.setattr(run_name, "CACHE_VERSION", run_name.CACHE_VERSION + 1)
    get_run(cfg, tmp_path, train_fn=train)
    assert len(train.calls) == 3


def test_unfinished_run_resumes(tmp_path):
    train = CountingTrain()
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    assert get_run(cfg, tmp_path, train_fn=train).run_dir == run_dir
    assert train.calls == [(run_dir, True)]


def test_training_without_eval_is_an_error(tmp_path):
    cfg = load_config("digits", ["train.epochs=1"])
    with pytest.raises(RunError, match="eval.json"):
        get_run(cfg, tmp_path, train_fn=lambda cfg, run_dir=None, **_: Run(run_dir, cfg, EvalResult()))


def test_real_tiny_run_is_cached(tmp_path):
    """One real training run on the synthetic preset, then a cache hit that does not train."""
    for module in ("deepfusion.model.runs.loop", "deepfusion.model.data.augment", "deepfusion.model.runs.evaluate"):
        pytest.importorskip(module)  # the training stack lands piece by piece
    overrides = ["train.epochs=1", "train.device=cpu", "eval.linear_epochs=2"]
    run = get_run(load_config("synthetic", overrides), tmp_path)
    run_dir = run.run_dir
    assert {"knn", "linear", "head_loo1nn", "random_knn", "random_linear"} <= set(run.eval.measured())
    assert run.eval == EvalResult.load(run_dir / "eval.json")  # what training returned is what it wrote
    mtime = (run_dir / "eval.json").stat().st_mtime_ns

    def refuse(*a, **k):
        raise AssertionError("a finished run was trained again")

    assert get_run(RunSpec("synthetic", tuple(overrides)), tmp_path, train_fn=refuse) == run
    assert (run_dir / "eval.json").stat().st_mtime_ns == mtime


# ---------------------------------------------------------------- what counts as finished; one process per key
def test_a_run_stopped_half_way_is_not_cached(tmp_path):
    """eval.json beside a checkpoint whose finished flag is false (a stopped run, then deepfusion eval)."""
    train = CountingTrain()
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    write_finished(run_dir, {"knn": 0.1}, step=3, finished=False, cfg=cfg)
    assert not is_finished(run_dir)
    get_run(cfg, tmp_path, train_fn=train)
    assert train.calls == [(run_dir, True)]  # resumed, not reported as cached


def test_an_eval_of_another_step_is_not_cached(tmp_path):
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    write_finished(run_dir, {"knn": 0.1}, step=3)
    ev = json.loads((run_dir / "eval.json").read_text())
    (run_dir / "eval.json").write_text(json.dumps(dict(ev, step=2)))
    assert not is_finished(run_dir)


def test_a_start_that_died_before_its_first_checkpoint_is_begun_again(tmp_path):
    train = CountingTrain()
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("x")
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    (run_dir / "checkpoints" / ".last.pt.abc.tmp").write_bytes(b"half")
    get_run(cfg, tmp_path, train_fn=train)
    assert train.calls == [(run_dir, False)]
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "checkpoints" / ".last.pt.abc.tmp").exists()


def test_a_key_trained_by_another_process_is_refused(tmp_path):
    from tests.model.runs.test_run_folder import Holder

    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    run_dir.mkdir(parents=True)
    train = CountingTrain()
    with Holder(run_dir) as proc:
        with pytest.raises(RunError, match=f"in use by process {proc.pid}"):
            get_run(cfg, tmp_path, train_fn=train)
    assert train.calls == []
    get_run(cfg, tmp_path, train_fn=train)
    assert len(train.calls) == 1


def test_the_lock_is_held_while_the_cache_trains(tmp_path):
    from deepfusion.model.runs.lock import holds_lock

    seen = []

    def train(cfg, run_dir=None, resume=False, progress=False):
        seen.append(holds_lock(run_dir))
        return Run(run_dir, cfg, write_finished(run_dir, {"knn": 0.5}, cfg=cfg))

    get_run(load_config("digits", ["train.epochs=1"]), tmp_path, train_fn=train)
    assert seen == [True]


# ---------------------------------------------------------------- a folder's name against its content
def test_a_cached_run_trained_with_other_settings_is_refused_not_reported(tmp_path):
    """The folder of the 1-epoch config holds a run resumed to 2 epochs: not cached, not credited."""
    train = CountingTrain()
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    write_finished(run_dir, {"knn": 0.9}, cfg=load_config("digits", ["train.epochs=2"]))
    assert is_finished(run_dir) and not is_finished(run_dir, cfg)
    lines = []
    with pytest.raises(RunError, match="train.epochs differ.*move the folder away"):
        get_run(cfg, tmp_path, train_fn=train, log=lines.append)
    assert train.calls == [] and not any("cached" in line for line in lines)


def test_output_keys_of_a_cached_run_may_differ(tmp_path):
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    write_finished(
        run_dir,
        {"knn": 0.9},
        cfg=load_config("digits", ["train.epochs=1", "train.log_every=3", "train.out_dir=elsewhere", "train.name=x"]),
    )
    assert get_run(cfg, tmp_path, train_fn=CountingTrain()).run_dir == run_dir


def test_a_cache_folder_that_is_a_link_is_not_trained_into(tmp_path):
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path / "cache")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir.parent.mkdir()
    run_dir.symlink_to(elsewhere)
    train = CountingTrain()
    with pytest.raises(RunError, match="symbolic link"):
        get_run(cfg, tmp_path / "cache", train_fn=train)
    assert train.calls == [] and list(elsewhere.iterdir()) == []


@pytest.mark.slow
def test_a_real_cached_run_resumed_to_more_epochs_is_not_reported_cached(tmp_path):
    from deepfusion.cli import main

    cfg = load_config("synthetic", list(TINY))
    run_dir = get_run(cfg, tmp_path).run_dir
    assert main(["train", "--no-progress", "--resume", str(run_dir), "train.epochs=2"]) == 0
    with pytest.raises(RunError, match="train.epochs differ"):
        get_run(cfg, tmp_path)


def test_a_run_whose_eval_json_predates_the_record_is_still_cached(tmp_path):
    """An eval.json written before EvalResult had a version (step only as train_steps) still counts."""
    cfg = load_config("digits", ["train.epochs=1"])
    run_dir = run_dir_for(cfg, tmp_path)
    write_finished(run_dir, {"knn": 0.9}, step=5, cfg=cfg)
    (run_dir / "eval.json").write_text(json.dumps({"knn": 0.9, "linear": 0.8, "train_steps": 5}))
    train = CountingTrain()
    run = get_run(cfg, tmp_path, train_fn=train)
    assert (
        train.calls == [] and run.run_dir == run_dir and (run.eval.knn, run.eval.linear, run.eval.step) == (0.9, 0.8, 5)
    )


# ---------------------------------------------------------------- the config's own folder (deepfusion train)
def test_without_a_root_the_run_lives_in_the_configs_own_folder(tmp_path):
    train = CountingTrain()
    cfg = load_config("digits", ["train.epochs=1", f"train.out_dir={tmp_path}", "train.name=mine"])
    assert get_run(cfg, train_fn=train).run_dir == tmp_path / "mine"
    assert not (tmp_path / "mine" / runs.CACHE_FILE).exists()  # a folder the user names gets no cache record


def test_a_folder_it_made_is_removed_when_the_data_is_refused(tmp_path):
    def refuse(*a, **k):
        raise DataError("no such data")

    cfg = load_config("digits", ["train.epochs=1", f"train.out_dir={tmp_path}"])
    with pytest.raises(DataError):
        get_run(cfg, train_fn=refuse)
    assert list(tmp_path.iterdir()) == []


def test_the_out_parents_it_made_are_removed_when_the_data_is_refused(tmp_path):
    def refuse(*a, **k):
        raise DataError("no such data")

    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "other").mkdir()  # a parent that held something before stays
    cfg = load_config("digits", ["train.epochs=1", f"train.out_dir={tmp_path / 'keep' / 'a' / 'b'}"])
    with pytest.raises(DataError):
        get_run(cfg, train_fn=refuse)
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]
    assert [p.name for p in (tmp_path / "keep").iterdir()] == ["other"]


def test_only_what_it_made_is_removed_through_dot_dot(tmp_path):
    def refuse(*a, **k):
        raise DataError("no such data")

    (tmp_path / "runs").mkdir()  # exists before, empty: "new/../runs" names it through a folder made now
    cfg = load_config("digits", ["train.epochs=1", f"train.out_dir={tmp_path / 'new' / '..' / 'runs'}"])
    with pytest.raises(DataError):
        get_run(cfg, train_fn=refuse)
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    assert list((tmp_path / "runs").iterdir()) == []


def test_leftovers_beside_a_users_file_in_a_named_folder_are_kept(tmp_path):
    """A folder the user names is left to the training loop, which refuses it without deleting a file."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("notes.txt", "metrics.jsonl", "config.yaml", "eval.json"):
        (folder / name).write_text("x")
    cfg = load_config("synthetic", ["train.epochs=1", f"train.out_dir={tmp_path}", "train.name=mine"])
    with pytest.raises(RunError, match="exists and is not empty"):
        get_run(cfg)
    assert {"notes.txt", "metrics.jsonl", "config.yaml", "eval.json"} <= {p.name for p in folder.iterdir()}


@pytest.mark.parametrize(
    "change, resume_suggested", [("train.epochs=2", True), ("loss.temperature=0.3", False)], ids=["epochs", "loss"]
)
def test_a_run_of_other_settings_is_refused_with_a_fix_that_works(tmp_path, change, resume_suggested):
    first = load_config("digits", ["train.epochs=1", f"train.out_dir={tmp_path}", "train.name=r"])
    write_finished(tmp_path / "r", {"knn": 0.5}, cfg=first)
    other = load_config("digits", ["train.epochs=1", change, f"train.out_dir={tmp_path}", "train.name=r"])
    with pytest.raises(RunError, match=change.split("=")[0]) as err:
        get_run(other, train_fn=CountingTrain())
    assert ("--resume" in str(err.value)) == resume_suggested  # a resume may not change the loss (check_trajectory)


def test_a_finished_run_whose_data_file_changed_is_refused(tmp_path, capsys):
    import numpy as np

    from deepfusion.cli import main

    x, y = np.random.default_rng(0).normal(size=(90, 4)), np.repeat([0, 1, 2], 30)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    argv = ["train", "--out", str(tmp_path / "runs"), "--no-progress", "data.name=npz"]
    argv += [f"data.root={tmp_path / 'mine.npz'}", "train.epochs=1", "eval.linear_epochs=2", "model.depth=1"]
    assert main(argv) == 0
    assert main(argv) == 0  # the same data: the finished run is shown
    capsys.readouterr()
    np.savez(tmp_path / "mine.npz", x=x + 1, y=y)
    assert main(argv) == 2
    assert "is not what the finished run" in capsys.readouterr().err
