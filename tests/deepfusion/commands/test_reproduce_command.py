"""The main job's wiring: steps run in order, the summary is written, failures exit non-zero."""

import json

import pytest

from deepfusion.cli import main
from deepfusion.commands import reproduce


@pytest.fixture
def fake_steps(monkeypatch):
    calls = []

    def theory(quick, log):
        calls.append(("theory", quick))
        return {"passed": 21, "total": 21, "ok": True, "failed": []}

    def sanity(out_dir, quick, log):
        calls.append(("sanity", quick))
        return {"ok": True, "verdict": "Deep Fusion inconclusive (1 seed; rule v2)", "decided_by": "failed: rise"}

    def figures(out_dir, runs_dir, quick_figures, data, seeds, log):
        calls.append(("figures", quick_figures, seeds))
        return {"files": ["f3_eps_max.png"], "index": str(out_dir / "index.md"),
                "verdict": "Deep Fusion not observed (3 seeds; rule v2)", "decided_by": "below the line",
                "verdict_runs": "digits model.head=transformer train.seed=0 and 2 more seed(s)", "effect": 1.01,
                "effect_ci": [0.98, 1.04],
                "heads": [{"dataset": "digits", "head": "transformer", "metric": "linear", "mean": "97.0",
                           "std": "0.5", "n": "3"}]}

    monkeypatch.setattr(reproduce, "_theory", theory)
    monkeypatch.setattr(reproduce, "_sanity", sanity)
    monkeypatch.setattr(reproduce, "_figures", figures)
    return calls


def test_steps_run_in_order_and_summary_is_written(tmp_path, fake_steps):
    summary = reproduce.reproduce(tmp_path, quick=True, seeds=2, log=lambda m: None)
    assert [c[0] for c in fake_steps] == ["theory", "sanity", "figures"]
    assert fake_steps[2] == ("figures", True, 2)
    saved = json.loads((tmp_path / reproduce.SUMMARY_JSON).read_text())
    assert saved["theory"]["passed"] == 21 and saved["figures"]["verdict"].startswith("Deep Fusion not observed")
    md = (tmp_path / reproduce.SUMMARY_MD).read_text()
    assert "21/21 passed" in md and "1.01x chance [0.98, 1.04]" in md and "| digits | transformer | linear | 97.0 | 0.5 | 3 |" in md
    assert summary["wall_s"] >= 0


def test_failed_theory_check_exits_non_zero(tmp_path, fake_steps, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "_theory", lambda quick, log: {"passed": 20, "total": 21, "ok": False,
                                                                    "failed": ["S1 numeric eps_max"]})
    assert main(["reproduce", "--quick", "--out", str(tmp_path)]) == 1
    assert "S1 numeric eps_max" in capsys.readouterr().err


def test_quick_with_data_is_refused(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--quick" in err and "Traceback" not in err
