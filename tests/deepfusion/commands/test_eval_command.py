"""``deepfusion eval`` on a tiny trained run: table, eval.json, overrides and errors."""

import json

import pytest

from deepfusion.cli import main
from deepfusion.model.runs.config import load_config
from deepfusion.model.runs.eval_result import SCORES, EvalResult

TINY = [
    "train.epochs=1",
    "data.options.num_classes=3",
    "data.options.samples_per_class=40",
    "data.test_fraction=0.25",
    "train.batch_size=30",
    "train.device=cpu",
    "model.dim=16",
    "model.depth=1",
    "model.heads=2",
    "model.ffn_dim=16",
    "model.out_dim=8",
    "model.mlp_hidden=16",
    "eval.linear_epochs=10",
    "eval.head_batch=15",
    "eval.knn_k=5",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from deepfusion.model.runs.loop import train

    out = tmp_path_factory.mktemp("runs")
    return train(load_config("synthetic", TINY + [f"train.out_dir={out}", "train.name=tiny"]), progress=False).run_dir


def test_eval_prints_table_and_rewrites_eval_json(run_dir, capsys):
    before = EvalResult.load(run_dir / "eval.json")
    assert main(["eval", "--run", str(run_dir), "--device", "cpu", "eval.linear_fraction=0.5"]) == 0
    out = capsys.readouterr().out
    assert "random backbone" in out and "head leave-one-out 1-NN" in out and "50% of train" in out
    after = EvalResult.load(run_dir / "eval.json")
    assert after.measured() == list(SCORES)
    assert after.linear_fraction == 0.5 and before.linear_fraction == 1.0
    # the training record survives re-evaluation
    assert (after.step, after.finished, after.train_wall_s) == (before.step, True, before.train_wall_s)
    assert after.knn == before.knn and after.head_loo1nn == before.head_loo1nn  # deterministic
    assert f"{after.knn:.4f}" in out  # the table printed is the record written


def test_eval_json_elsewhere_and_no_write(run_dir, tmp_path):
    target = tmp_path / "sub" / "e.json"
    mtime = (run_dir / "eval.json").stat().st_mtime_ns
    assert main(["eval", "--run", str(run_dir), "--device", "cpu", "--json", str(target), "eval.knn_k=3"]) == 0
    assert json.loads(target.read_text())["knn_k"] == 3
    assert main(["eval", "--run", str(run_dir), "--device", "cpu", "--no-write"]) == 0
    assert (run_dir / "eval.json").stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "argv,message",
    [
        (["model.depth=3"], "only eval"),
        (["eval.head_batch=1"], "head_batch"),
        (["eval.nope=1"], "nope"),
    ],
)
def test_eval_rejects_bad_overrides(run_dir, capsys, argv, message):
    assert main(["eval", "--run", str(run_dir), "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err


def test_eval_missing_run_folder(tmp_path, capsys):
    assert main(["eval", "--run", str(tmp_path / "absent")]) == 3
    assert "does not exist" in capsys.readouterr().err
