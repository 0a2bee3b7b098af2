"""The head comparison on really trained runs: four heads x two seeds of a tiny synthetic config."""

import pytest

from deepfusion.experiments.studies.head_comparison import METRICS, compare_heads
from deepfusion.model.runs.config import load_config
from deepfusion.model.runs.loop import train
from tests.model.runs.test_train import TINY

HEADS = ("transformer", "ffn", "mlp", "mlp_nobn")


@pytest.mark.slow
def test_trained_runs_compare_paired_by_seed(tmp_path):
    runs = [
        train(
            load_config(
                "synthetic",
                TINY + [f"train.out_dir={tmp_path}", f"train.name={h}_s{s}", f"model.head={h}", f"train.seed={s}"],
            ),
            progress=False,
        )
        for s in (1, 2)
        for h in HEADS
    ]
    rec = compare_heads([r.run_dir for r in runs])  # train() returns a Run
    assert rec.seeds == (1, 2) and {h.head for h in rec.heads} == set(HEADS)
    ref = rec.head("transformer")
    for h in rec.heads:
        # the random backbone is re-initialised from the seed alone: equal for every head of a seed
        assert h.values["random_knn"] == ref.values["random_knn"]
        assert h.values["random_linear"] == ref.values["random_linear"]
    for h in rec.heads[1:]:
        for m in METRICS:
            d = rec.difference(h.head, m)
            assert d.per_seed == pytest.approx([a - b for a, b in zip(ref.values[m], h.values[m])])
            assert d.low <= d.mean <= d.high
