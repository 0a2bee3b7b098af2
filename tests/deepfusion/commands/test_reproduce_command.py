"""The main job's summary: built from the records the steps return (no file read back), printed,
written and read again; which findings fail the job; options it refuses."""

import json
import math

import numpy as np
import pytest

from deepfusion.cli import main
from deepfusion.commands import reproduce
from deepfusion.errors import DataError
from deepfusion.experiments.pooling import pool_files
from deepfusion.experiments.sanity_record import Idealised, IdealisedRow, SanityResult
from deepfusion.experiments.studies.deep_fusion import SeedStudy
from deepfusion.paper_figures.record import FigureRecord


def pooled_record(tmp_path, seeds=2):
    """A pooled verdict over ``seeds`` attention files with class-structured attention."""
    rng = np.random.default_rng(0)
    paths = []
    for s in range(seeds):
        labels = np.repeat(np.arange(2), 4)[None].repeat(2, 0)  # 2 batches, 2 classes x 4 samples, one view
        instance = np.stack([np.arange(8), np.arange(8, 16)])
        same = (labels[:, :, None] == labels[:, None, :]).astype(float)
        A = same[:, None, None] * (2.0 + np.arange(3)[None, :, None, None, None]) + rng.uniform(0, 0.2, (2, 3, 1, 8, 8))
        A /= A.sum(-1, keepdims=True)
        paths.append(tmp_path / f"seed{s}.npz")
        np.savez(paths[-1], attention=A, labels=labels, instance=instance)
    return pool_files(paths)


def sanity_record(passed=True):
    row = IdealisedRow(
        "fast",
        0,
        8.0,
        1.0,
        0.5,
        0.001,
        0.002,
        0.001,
        0.001,
        [0.9],
        [0.9],
        [0.5],
        [0.5],
        passed,
        [] if passed else ["max |m_sim - m_mf| = 0.2 >= 0.02"],
    )
    return SanityResult(
        True, Idealised({"C": 4, "n": 64, "d": 2048, "layers": 10}, 0.02, 0.02, [row], passed), None, 1.0, passed
    )


def figure_records(tmp_path, pooled):
    out = tmp_path / "figures"
    rows = [("digits", "transformer", "linear", [97.0, 96.0, 98.0]), ("digits", "ffn", "knn", [90.5])]
    study = SeedStudy("digits", ["digits train.seed=0", "digits train.seed=1"], pooled)
    return [
        FigureRecord("F2", "ratio", [out / "f2_block_mass.png"], "", "", study.runs, study),
        FigureRecord("F4", "heads", [out / "f4_head_comparison.png", out / "f4_head_comparison.csv"], "", "", [], rows),
    ]


def test_summary_comes_from_the_figure_records_not_from_files(tmp_path):
    pooled = pooled_record(tmp_path)
    theory = reproduce.TheorySummary(21, 21, [])
    # the records' files were never written: a summary that read them back would fail here
    summary = reproduce.summarize_records(
        True, theory, sanity_record(), figure_records(tmp_path, pooled), tmp_path / "figures", 12.0
    )
    assert summary.deep_fusion is pooled
    assert summary.files == ["f2_block_mass.png", "f4_head_comparison.csv", "f4_head_comparison.png"]
    transformer, ffn = summary.heads
    assert (transformer.mean, transformer.std, transformer.n) == (pytest.approx(97.0), pytest.approx(1.0), 3)
    assert ffn.n == 1 and math.isnan(ffn.std)
    md = reproduce.summary_markdown(summary)
    v = pooled.verdict
    assert (
        "| theory checks | 21/21 passed |" in md
        and "| sanity (b): synthetic transformer head, 1 seed | not run |" in md
    )
    assert f"Deep Fusion, digits train.seed=0 and 1 more seed(s) | {v.label}: last layer {v.effect:.2f}x" in md
    assert "| digits | transformer | linear | 97.00 | 1.00 | 3 |" in md


def test_summary_without_f2_or_f4_is_refused(tmp_path):
    records = figure_records(tmp_path, pooled_record(tmp_path))[:1]
    with pytest.raises(DataError, match="F2 or F4"):
        reproduce.summarize_records(True, reproduce.TheorySummary(1, 1, []), sanity_record(), records, tmp_path, 1.0)


def test_summary_json_round_trip(tmp_path):
    summary = reproduce.summarize_records(
        True,
        reproduce.TheorySummary(20, 21, ["S1 numeric eps_max"]),
        sanity_record(),
        figure_records(tmp_path, pooled_record(tmp_path)),
        tmp_path / "figures",
        3.0,
    )
    back = reproduce.ReproduceSummary.from_json(json.loads(json.dumps(summary.to_json())))
    assert reproduce.summary_markdown(back) == reproduce.summary_markdown(summary)
    assert back.deep_fusion.verdict == summary.deep_fusion.verdict
    with pytest.raises(DataError, match="version"):
        reproduce.ReproduceSummary.from_json({**summary.to_json(), "version": 0})


@pytest.mark.parametrize(
    "theory_failed, sanity_passed, expected",
    [
        ([], True, []),
        (["S1 numeric eps_max"], True, ["S1 numeric eps_max"]),
        ([], False, ["sanity (a)"]),
    ],
)
def test_failed_checks_or_sanity_fail_the_job(tmp_path, theory_failed, sanity_passed, expected):
    summary = reproduce.summarize_records(
        True,
        reproduce.TheorySummary(21 - len(theory_failed), 21, theory_failed),
        sanity_record(sanity_passed),
        figure_records(tmp_path, pooled_record(tmp_path)),
        tmp_path / "figures",
        1.0,
    )
    assert reproduce.failures(summary) == expected


def test_quick_with_data_is_refused(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--quick" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["reproduce", "--skip-ablations"], ["--skip-ablations", "--paper"]),
        (["reproduce", "--paper", "--quick"], ["--paper", "--quick"]),
    ],
)
def test_paper_options_out_of_place_are_one_line(argv, words, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_reproduce_paper_writes_its_record_and_f7_and_a_second_call_trains_nothing(tmp_path):
    from tests.experiments.studies.test_paper_regime import DESIGN, TINY

    lines = []
    record = reproduce.reproduce_paper(tmp_path, workers=1, log=lines.append, base=TINY, design=DESIGN)
    assert "5 runs, 5 still to train" in lines[0]
    assert json.loads((tmp_path / "paper" / "paper_regime.json").read_text())["base"] == record.base
    assert (tmp_path / "paper" / "f7_paper_regime.png").is_file()
    assert "F7" in (tmp_path / "paper" / "index.md").read_text()
    lines.clear()
    reproduce.reproduce_paper(tmp_path, workers=1, log=lines.append, base=TINY, design=DESIGN)
    assert "5 runs, 0 still to train" in lines[0]


@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")  # nothing numpy mutters reaches the user's terminal
def test_reproduce_paper_on_a_cifar10_folder_runs_the_paper_preset_end_to_end(tmp_path):
    """The GPU version's plumbing on a CPU: the cifar10 preset (ResNet-18, the paper's head layout,
    SGD, temperature 0.02) read from a CIFAR-10 folder, shrunk only in size and length."""
    from deepfusion.experiments.studies import paper_regime as study
    from tests.model.data.data_files import write_cifar10

    data, out = tmp_path / "datasets", tmp_path / "out"
    write_cifar10(data / "cifar-10-batches-py", per_batch=100, test_batch=200, balanced=True)  # 20 test images a class
    small = ("train.epochs=1", "train.batch_size=50", "model.dim=32", "model.depth=2", "model.heads=2")
    small += ("model.ffn_dim=32", "model.out_dim=16", "optim.warmup_epochs=0", "eval.linear_epochs=2")
    base = study.base_spec(data).with_overrides(*small, "train.device=cpu")
    design = study.Design(arms={"as is": ()}, arm_seeds=(1,), sweeps=(), ablation_seeds=())
    lines = []
    record = reproduce.reproduce_paper(out, data, False, workers=1, log=lines.append, base=base, design=design)
    cfg = base.config()
    paper = (cfg.preset, cfg.model.backbone, cfg.loss.temperature, cfg.optim.name, cfg.model.scope)
    assert paper == ("cifar10", "resnet18", 0.02, "sgd", "both_views")
    assert "1 runs, 1 still to train" in lines[0] and "hours" not in lines[0]  # the CPU estimate is paper_cpu's
    (arm,) = record.arms
    assert arm.pooled.verdict.seeds == 1 and arm.pooled.verdict.outcome == "exploratory"
    assert arm.pooled.num_layers == 2 and arm.pooled.num_classes == 10
    assert record.ablations is None and record.base.startswith("cifar10 data.root=")
    assert (out / "paper" / "f7_paper_regime.png").is_file()
    assert "--data" in (out / "paper" / "index.md").read_text()
