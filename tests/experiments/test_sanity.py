"""``deepfusion sanity``: (a) agrees with the theory and fails when the recursion is perturbed;
(b) on a tiny budget writes every field."""

import dataclasses
import json

import numpy as np
import pytest

from deepfusion import cli
from deepfusion.errors import CheckFailed, DataError
from deepfusion.experiments import sanity
from deepfusion.experiments.sanity_record import SANITY_FILE, SANITY_VERSION, SanityResult
from deepfusion.experiments.studies import sanity as study
from deepfusion.model.runs.devices import limit_threads
from deepfusion.theory import fusion

TINY = {
    "overrides": [
        "data.options={samples_per_class: 40}",
        "train.epochs=1",
        "train.batch_size=64",
        "eval.linear_epochs=2",
        "eval.head_batch=32",
    ],
    "batches": 2,
    "per_class": 4,
}


@pytest.fixture
def perturbed_recursion(monkeypatch):
    """The recursion run at a 30% higher inverse temperature: a wrong theory the check must catch."""
    true = fusion.mean_field

    def wrong(C, n, beta, alpha, r0, layers, *args, **kwargs):
        return true(C, n, np.asarray(beta) * 1.3, alpha, r0, layers, *args, **kwargs)

    monkeypatch.setattr(fusion, "mean_field", wrong)


def test_idealised_layers_agree_with_mean_field():
    with limit_threads(1):
        a = sanity.idealised_layers(quick=True)
    assert a.passed, [r.failures for r in a.rows]
    assert {r.regime for r in a.rows} == {"fast", "slow", "stall"}
    fast = next(r for r in a.rows if r.regime == "fast")
    stall = next(r for r in a.rows if r.regime == "stall")
    assert fast.r_ratio_sim < 0.01 and stall.r_ratio_sim > 0.99


def test_perturbed_recursion_fails_and_still_writes_json(tmp_path, perturbed_recursion):
    with limit_threads(1), pytest.raises(CheckFailed, match="disagree"):
        study.run_sanity(tmp_path, quick=True, with_trained=False)
    record = SanityResult.from_json(json.loads((tmp_path / SANITY_FILE).read_text()))
    assert record.passed is False and record.trained is None
    assert any(r.failures for r in record.idealised.rows)


def test_cli_exits_one_when_theory_disagrees(tmp_path, perturbed_recursion, monkeypatch, capsys):
    monkeypatch.setattr(study, "trained_heads", lambda out_dir, budget: None)  # (a) alone decides
    code = cli.main(["sanity", "--quick", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert "DISAGREES" in captured.out and "FAIL" in captured.out
    assert captured.err.startswith("deepfusion sanity: error:") and len(captured.err.strip().splitlines()) == 1


def test_trained_heads_on_tiny_budget_write_every_field(tmp_path):
    with limit_threads(1):
        result = study.run_sanity(tmp_path, quick=True, budget=TINY)
    record = SanityResult.from_json(json.loads((tmp_path / SANITY_FILE).read_text()))
    assert record == result  # the file holds the record the call returned
    assert record.passed is True and record.version == SANITY_VERSION
    b = record.trained
    for head in (b.transformer, b.ffn):
        assert head.eval.knn is not None and head.eval.linear is not None
        assert len(head.blocks) == 3  # the preset's 2 blocks, plus the last block's output
        for blk in head.blocks:
            assert all(np.isfinite(v) for v in dataclasses.astuple(blk))
        assert head.blocks[0].residual_ratio == pytest.approx(1.0)
    t = b.transformer
    assert len(t.layers) == 2 and all(np.isfinite(l.ratio) for l in t.layers)
    assert t.verdict.startswith("exploratory ") and "(1 seed; rule v3)" in t.verdict and t.decided_by
    assert b.ffn.layers == [] and b.ffn.verdict is None  # no attention to measure
    summary = sanity.format_summary(result)
    assert "(b) trained heads" in summary and "  ffn: kNN" in summary


def test_record_of_another_version_is_refused(tmp_path):
    with limit_threads(1):
        result = study.run_sanity(tmp_path, quick=True, with_trained=False)
    data = result.to_json()
    assert SanityResult.from_json(data) == result
    with pytest.raises(DataError, match="version"):
        SanityResult.from_json({**data, "version": SANITY_VERSION + 1})


def test_trained_heads_reuse_finished_runs_of_the_same_budget(tmp_path):
    """The runs of (b) come from the run cache: a second call trains nothing and reports the same runs."""
    with limit_threads(1):
        first = study.trained_heads(tmp_path, TINY)
        checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/checkpoints/last.pt")}
        again = study.trained_heads(tmp_path, TINY)
    assert len(checkpoints) == len(first.heads())
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints  # not trained again
    for (_, head), (_, head_again) in zip(first.heads(), again.heads()):
        assert head_again.eval == head.eval
        assert head_again.train_wall_s == head.train_wall_s > 0


def test_attention_summary_of_a_fit_no_head_has_is_nan_without_a_warning(tmp_path):
    import warnings

    from tests.experiments.test_pooling import synthetic_record

    record, _ = synthetic_record(tmp_path, 0, [1.0, 1.3])
    layer = record.layers[1]
    heads = {**layer.heads, "beta_eff": np.full_like(layer.heads["beta_eff"], np.nan)}
    record = dataclasses.replace(record, layers=[record.layers[0], dataclasses.replace(layer, heads=heads)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would reach the user's terminal
        layers = study._attention_layers(record)
    assert np.isnan(layers[1].beta_eff) and np.isfinite(layers[0].beta_eff)
