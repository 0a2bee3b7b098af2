"""deepfusion predict: from a config to a prediction file, in seconds; bad input is one line."""

import json

import pytest

from deepfusion import cli
from deepfusion.experiments.dynamics_prediction import DynamicsPrediction

FAST = ["train.epochs=1", "model.depth=2", "--seeds", "2"]  # 6 steps of the reduced model


def test_predict_writes_the_fields(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert cli.main(["predict", *FAST, "model.scope=mask_pair", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert isinstance(data["last_layer_ratio"], float) and isinstance(data["fusion_expected"], bool)
    assert data["fusion_expected"] == (data["last_layer_ratio"] >= 1.25)
    assert len(data["beta_drift_sign"]) == 2 and len(data["ratio"]) == 2
    assert data["cell"]["scope"] == "mask_pair" and data["cell"]["steps"] == 6
    assert DynamicsPrediction.from_json(out.read_text()).last_layer_ratio == data["last_layer_ratio"]
    printed = capsys.readouterr().out
    assert "last_layer_ratio" in printed and "fusion_expected" in printed


@pytest.mark.parametrize(
    "args, word",
    [
        (["--config", "digits"], "data.name=theory"),
        (["--seeds", "0"], "--seeds"),
        (["optim.name=sgd"], "adamw"),
        (["--out", "x.txt"], ".json"),
    ],
)
def test_bad_input_is_one_line(args, word, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["predict", *FAST, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0]
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_prediction_version_is_checked():
    with pytest.raises(ValueError):
        DynamicsPrediction.from_json(json.dumps({"version": 0}))
