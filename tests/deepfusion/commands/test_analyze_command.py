"""``deepfusion analyze`` on tiny trained runs: the per-layer table with nulls and the v2 verdict over
seeds, the calibration, and one-line errors for bad input that leave the run folders untouched."""

import json

import pytest

from deepfusion import cli
from deepfusion.experiments.record import RECORD_VERSION
from deepfusion.model.runs.devices import limit_threads

TINY = ["data.options={samples_per_class: 40}", "train.epochs=1", "train.batch_size=64", "model.depth=3",
        "eval.linear_epochs=2", "eval.head_batch=32", "train.device=cpu"]
FAST = ["--batches", "2", "--per-class", "4", "--n-boot", "200"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.loop import train

    root = tmp_path_factory.mktemp("runs")
    dirs = []
    with limit_threads(1):
        for seed in (1, 2):
            dirs.append(train(load_config("synthetic", TINY + [f"train.seed={seed}"]), run_dir=root / f"s{seed}",
                              progress=False))
        train(load_config("synthetic", TINY + ["model.depth=2"]), run_dir=root / "other", progress=False)
    return root, dirs


def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "same-class"])
    return [line.split() for line in lines[header + 2: header + 5]]


def test_two_seeds_print_one_row_per_layer_nulls_and_the_verdict(tiny_runs, capsys, tmp_path):
    root, dirs = tiny_runs
    out_file = tmp_path / "pooled.json"
    code = cli.main(["analyze", "--run", str(root / "s*"), *FAST, "--out", str(out_file)])
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(out)
    assert [r[0] for r in rows] == ["0", "1", "2"]  # model.depth=3
    assert all(r[3].endswith("x") for r in rows)  # the ratio to chance
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1 and "(2 seeds; rule v2)" in verdict[0]
    assert any(word in verdict[0] for word in ("observed", "inconclusive"))
    assert "permutation q975" in out and "untrained" in out
    pooled = json.loads(out_file.read_text())
    assert pooled["train_seeds"] == [1, 2] and pooled["verdict"]["seeds"] == 2
    assert float(rows[0][1]) == pytest.approx(pooled["layers"][0]["same_class_mass"], abs=5e-5)
    for d in dirs:
        record = json.loads((d / "analysis.json").read_text())
        assert record["version"] == RECORD_VERSION and record["settings"]["batches"] == 2 and record["step"] > 0


def test_one_run_is_labelled_one_seed(tiny_runs, capsys):
    root, _ = tiny_runs
    assert cli.main(["analyze", "--run", str(root / "s1"), *FAST]) == 0
    assert "(1 seed; rule v2)" in capsys.readouterr().out


def _one_line_error(args, capsys):
    code = cli.main(["analyze", *args])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith("deepfusion analyze: error:"), err
    return err


def test_the_same_folder_twice_is_refused(tiny_runs, capsys):
    root, _ = tiny_runs
    assert "given twice" in _one_line_error(["--run", str(root / "s1"), "--run", str(root / "s1"), *FAST], capsys)


def test_folders_of_different_configs_name_the_keys(tiny_runs, capsys):
    root, _ = tiny_runs
    err = _one_line_error(["--run", str(root / "s1"), "--run", str(root / "other"), *FAST], capsys)
    assert "model.depth" in err and "train.seed" in err


def test_a_split_too_small_says_what_fits(tiny_runs, capsys):
    root, _ = tiny_runs
    err = _one_line_error(["--run", str(root / "s1"), "--batches", "5", "--per-class", "30"], capsys)
    assert "the largest that fit" in err and "--per-class" in err


def test_other_settings_do_not_overwrite_an_analysis_without_force(tiny_runs, capsys):
    root, _ = tiny_runs
    assert cli.main(["analyze", "--run", str(root / "s2"), *FAST]) == 0
    before = (root / "s2" / "analysis.json").read_text()
    capsys.readouterr()
    err = _one_line_error(["--run", str(root / "s2"), "--batches", "2", "--per-class", "3", "--n-boot", "200"], capsys)
    assert "--force" in err
    assert (root / "s2" / "analysis.json").read_text() == before


@pytest.mark.parametrize("make_bad", ["missing", "empty", "not_a_run", "glob"])
def test_bad_run_folder_gives_one_line_error(tmp_path, capsys, make_bad):
    bad = tmp_path / "run"
    if make_bad == "empty":
        bad.mkdir()
    elif make_bad == "not_a_run":
        bad.mkdir()
        (bad / "config.yaml").write_text("model: {head: transformer}\n")  # never trained: no checkpoint
    target = str(tmp_path / "nothing*") if make_bad == "glob" else str(bad)
    _one_line_error(["--run", target], capsys)


def test_bad_counts_are_rejected(tiny_runs, capsys):
    root, _ = tiny_runs
    assert "--batches" in _one_line_error(["--run", str(root / "s1"), "--batches", "0"], capsys)
    assert "200" in _one_line_error(["--run", str(root / "s1"), *FAST, "--n-perm", "50"], capsys)
    assert "--run" in _one_line_error([], capsys)


def test_calibration_prints_the_rates(capsys):
    assert cli.main(["analyze", "--calibrate", "--draws", "2"]) == 0
    out = capsys.readouterr().out
    assert "planted" in out and "none" in out and "observed" in out
