"""The ``fashion_mnist_cpu`` preset: a whole-model run whose backbone beats a random one on kNN.

Slow: one seed of the preset trains 12 epochs on 10,000 images, about 5-7 minutes on one core of a
shared 2-core CPU (measured in experiments/FINDINGS.md). Skipped where the IDX files are absent."""

import json
from pathlib import Path

import pytest

from deepfusion.model.data.fashion_mnist import DEFAULT_ROOT
from deepfusion.model.runs.devices import limit_threads

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ROOT = (
    Path(DEFAULT_ROOT)
    if all((Path(DEFAULT_ROOT) / f).exists() or (Path(DEFAULT_ROOT) / f"{f}.gz").exists() for f in FILES)
    else None
)

MIN_KNN_GAIN = 0.03  # trained minus random-backbone kNN accuracy, on the 10,000 test images


@pytest.mark.slow
@pytest.mark.skipif(ROOT is None, reason="Fashion-MNIST IDX files are not installed")
def test_fashion_mnist_cpu_preset_beats_the_random_backbone(tmp_path):
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.loop import train

    with limit_threads(1):
        run_dir = train(
            load_config("fashion_mnist_cpu", ["train.seed=1"]), run_dir=tmp_path / "fmnist_cpu", progress=False
        ).run_dir
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["finished"] and evaluation["n_train"] == 10000 and evaluation["n_test"] == 10000
    gain = evaluation["knn"] - evaluation["random_knn"]
    assert gain >= MIN_KNN_GAIN, f"kNN {evaluation['knn']:.4f} vs random backbone {evaluation['random_knn']:.4f}"
