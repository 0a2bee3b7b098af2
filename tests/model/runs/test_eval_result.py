"""EvalResult: the typed record of eval.json, written and read back, old files included."""

from __future__ import annotations

import json

import pytest

from deepfusion.errors import DataError, RunError
from deepfusion.model.runs.eval_result import SCORES, VERSION, EvalResult


def _full() -> EvalResult:
    scores = {name: 0.5 + 0.01 * i for i, name in enumerate(SCORES)}
    return EvalResult(
        **scores,
        intervals={n: (v - 0.1, v + 0.1) for n, v in scores.items()},
        knn_k=5,
        knn_t=0.1,
        n_train=90,
        n_test=30,
        head_scored=30,
    ).with_training(12, True, 3.5)


def test_a_record_survives_its_json(tmp_path):
    ev = _full()
    path = ev.save(tmp_path / "eval.json")
    assert EvalResult.load(path) == ev
    data = json.loads(path.read_text())
    assert data["version"] == VERSION and data["knn_ci"] == list(ev.intervals["knn"]) and data["step"] == 12


def test_a_file_without_a_version_loads():
    """The fields of an eval.json written before the record existed: no version, train_steps for the step,
    keys added later missing, the oldest accuracies as {"accuracy": ...}."""
    old = {
        "knn": {"accuracy": 0.8},
        "linear": 0.7,
        "random_knn": 0.3,
        "knn_ci": [0.7, 0.9],
        "train_steps": 40,
        "n_test": 50,
        "a_key_since_dropped": 1,
    }
    ev = EvalResult.from_json(old)
    assert (ev.knn, ev.linear, ev.head_knn, ev.step) == (0.8, 0.7, None, 40)
    assert ev.interval_of("knn") == (0.7, 0.9) and ev.interval_of("linear") is None
    assert ev.measured() == ["knn", "linear", "random_knn"]


def test_percent_names_a_missing_accuracy():
    ev = EvalResult(knn=0.25)
    assert ev.percent("knn") == 25.0
    with pytest.raises(RunError, match="no 'linear' accuracy"):
        ev.percent("linear")
    with pytest.raises(DataError, match="no accuracy named 'knn_ci'"):
        ev.score("knn_ci")


@pytest.mark.parametrize(
    "bad, words",
    [([1, 2], "not a JSON object"), ({"version": VERSION + 1}, "record version"), ({"knn": "high"}, "not an accuracy")],
)
def test_malformed_files_are_refused(bad, words):
    with pytest.raises(DataError, match=words):
        EvalResult.from_json(bad)


def test_an_unreadable_file_names_itself(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text("{not json")
    with pytest.raises(RunError, match="cannot read the evaluation .*eval.json"):
        EvalResult.load(path)
