"""Head-only training on the theory's data, judged by rule v3, at two cells whose answer is known
from the phase diagram (F6): a planted easy cell (the positive view hidden, loss temperature 0.5,
well-separated classes) clears the line and the permutation null, a cell whose classes overlap
(sigma = 32 eps_max) sits at chance. One seed is exploratory under rule v3, never a decision."""

import pytest

from deepfusion.model.runs.devices import limit_threads

CELL = ["model.scope=mask_pair", "loss.temperature=0.5", "train.epochs=30", "eval.linear_epochs=0", "train.device=cpu"]


def _verdict(tmp_path, *overrides):
    from deepfusion.experiments.analyze import analyze_run
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.loop import train

    with limit_threads(1):
        run = train(
            load_config("theory_head", CELL + list(overrides)), run_dir=tmp_path / "run", progress=False
        ).run_dir
        return analyze_run(run, batches=3).verdict


@pytest.mark.slow  # trains a phase-diagram cell over seeds (about 9 s)
def test_planted_easy_cell_is_observed(tmp_path):
    v = _verdict(tmp_path)
    assert v.outcome == "exploratory", v.decided_by
    assert v.effect > 1.25 and v.seeds == 1 and v.permutation_null.effect_p <= 0.025


@pytest.mark.slow  # trains a phase-diagram cell over seeds (about 9 s)
def test_cell_without_class_structure_is_not_observed(tmp_path):
    v = _verdict(tmp_path, "data.options.sigma=5.41")  # 32 eps_max: the classes overlap
    assert v.outcome == "exploratory", v.decided_by
    assert v.effect == pytest.approx(1.0, abs=0.05)
