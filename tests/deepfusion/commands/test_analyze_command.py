"""``deepfusion analyze`` on a tiny trained run: the per-layer table, the verdict, one-line errors."""

import json

import pytest

from deepfusion import cli
from deepfusion.model.runs.devices import limit_threads

TINY = ["data.options={samples_per_class: 40}", "train.epochs=1", "train.batch_size=64", "model.depth=3",
        "eval.linear_epochs=2", "eval.head_batch=32", "train.device=cpu"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.loop import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    with limit_threads(1):
        train(load_config("synthetic", TINY), run_dir=run_dir, progress=False)
    return run_dir


def test_analyze_prints_one_row_per_layer_and_the_verdict(tiny_run, capsys):
    code = cli.main(["analyze", "--run", str(tiny_run), "--batches", "2", "--per-class", "4", "--n-boot", "200"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "same-class"])
    rows = [line.split() for line in lines[header + 2: header + 5]]
    assert [r[0] for r in rows] == ["0", "1", "2"]  # model.depth=3
    verdict = [line for line in lines if line.startswith("verdict: ")]
    assert len(verdict) == 1 and verdict[0].split(": ", 1)[1] in ("Deep Fusion observed", "Deep Fusion not observed")
    record = json.loads((tiny_run / "analysis.json").read_text())
    assert record["verdict"] == verdict[0].split(": ", 1)[1]
    # the table shows the record's numbers: same-class mass of layer 0, averaged over heads
    mass0 = sum(record["layers"][0]["same_class_mass"]) / record["num_heads"]
    assert float(rows[0][1]) == pytest.approx(mass0, abs=5e-5)
    assert record["settings"]["batches"] == 2 and record["settings"]["per_class"] == 4


@pytest.mark.parametrize("make_bad", ["missing", "empty", "not_a_run"])
def test_bad_run_folder_gives_one_line_error(tmp_path, capsys, make_bad):
    bad = tmp_path / "run"
    if make_bad == "empty":
        bad.mkdir()
    elif make_bad == "not_a_run":
        bad.mkdir()
        (bad / "config.yaml").write_text("model: {head: transformer}\n")  # no checkpoint
    code = cli.main(["analyze", "--run", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("deepfusion analyze: error:")


def test_bad_counts_are_rejected(tiny_run, capsys):
    assert cli.main(["analyze", "--run", str(tiny_run), "--batches", "0"]) != 0
    assert "--batches" in capsys.readouterr().err
