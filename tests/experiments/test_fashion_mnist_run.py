"""A very small Fashion-MNIST run from the real IDX files, trained and analysed end to end.

Skipped where the files are absent; elsewhere it exercises real-data loading, the image
augmentation, training and the attention analysis in seconds (a few hundred images, one epoch)."""

import json
from pathlib import Path

import numpy as np
import pytest

from deepfusion.model.runs.devices import limit_threads

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _fashion_root():
    from deepfusion.model.data.fashion_mnist import DEFAULT_ROOT

    root = Path(DEFAULT_ROOT)
    have = all((root / f).exists() or (root / f"{f}.gz").exists() for f in FILES)
    return root if have else None


ROOT = _fashion_root()
SMALL = [
    "data.options={limit: 400}",
    "model.backbone=cnn3",
    "model.dim=32",
    "model.depth=2",
    "model.heads=2",
    "model.ffn_dim=64",
    "model.out_dim=32",
    "optim.name=adamw",
    "optim.lr=0.002",
    "optim.warmup_epochs=0",
    "loss.temperature=0.2",
    "train.epochs=1",
    "train.batch_size=100",
    "train.device=cpu",
    "eval.linear_epochs=2",
    "eval.linear_fraction=1.0",
    "eval.head_batch=100",
]


@pytest.mark.slow  # trains and analyses a run (about 3 s)
@pytest.mark.skipif(ROOT is None, reason="Fashion-MNIST IDX files are not installed")
def test_small_fashion_mnist_run_trains_and_analyses(tmp_path):
    from deepfusion.experiments.analyze import analyze_run
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.loading import load_run
    from deepfusion.model.runs.loop import train

    with limit_threads(1):
        run_dir = train(load_config("fashion_mnist", SMALL), run_dir=tmp_path / "fmnist", progress=False).run_dir
        run = load_run(run_dir)
        # real images: 28x28 grey uint8, ten classes, the official test split
        assert run.train_ds.input_shape == (1, 28, 28) and run.train_ds.num_classes == 10
        assert np.asarray(run.train_ds.x).dtype == np.uint8 and len(run.train_ds.y) == 400
        assert len(np.unique(np.asarray(run.test_ds.y))) == 10
        record = analyze_run(run_dir, batches=2, per_class=3)
    assert record.num_layers == 2 and record.num_classes == 10
    assert record.settings.tokens_per_batch == 2 * 10 * 3
    assert record.verdict.outcome == "exploratory" and record.verdict.seeds == 1  # one seed never decides
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert 0.0 <= evaluation["knn"] <= 1.0
    assert (run_dir / "analysis.json").exists() and (run_dir / "attention.npz").exists()
