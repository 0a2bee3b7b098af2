"""Training on one's own .npz without a preset: the preset picked by shape, the run's name, a batch
that fits, labels remapped and saved, standardisation statistics saved and reused at evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from deepfusion.cli import main
from deepfusion.errors import ConfigError, DataError
from deepfusion.model.runs.own_data import resolve_config

FAST = [
    "train.epochs=2",
    "train.device=cpu",
    "train.threads=1",
    "train.batch_size=16",
    "model.depth=1",
    "model.dim=16",
    "model.heads=2",
    "model.ffn_dim=16",
    "model.out_dim=8",
    "eval.linear_epochs=5",
    "eval.knn_k=5",
    "eval.head_batch=8",
]


def _vectors_file(path: Path, n=60, labels=None) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3 + 1 if labels is None else labels  # labels 1..3: remapped to 0..2
    x = rng.normal(size=(n, 5)) * [1, 10, 100, 1000, 4000] + 50 * y[:, None]
    np.savez(path, x=x, y=y)
    return path


def _images_file(path: Path, n=48) -> Path:
    x = np.random.default_rng(1).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)  # (N, H, W, C)
    np.savez(path, x=x, y=np.arange(n) % 2)
    return path


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("own")
    path = _vectors_file(tmp / "my data.npz")
    code = main(["train", "data.name=npz", f"data.root={path}", "--out", str(tmp / "runs"), "--no-progress", *FAST])
    assert code == 0
    (run_dir,) = (tmp / "runs").iterdir()
    return run_dir


def test_2d_x_picks_the_vectors_preset_and_names_the_run_after_the_file(vector_run):
    assert vector_run.name.startswith("my-data-")  # the file stem, made folder-safe, then head, seed and key
    cfg = yaml.safe_load((vector_run / "config.yaml").read_text())
    assert cfg["model"]["backbone"] == "mlp" and cfg["data"]["augment"] == "vector" and cfg["data"]["standardize"]
    assert cfg["preset"] == "my-data"


def test_labels_are_remapped_printed_and_saved(tmp_path, capsys):
    path = _vectors_file(tmp_path / "v.npz")
    assert main(["train", "data.name=npz", f"data.root={path}", "--out", str(tmp_path), "--no-progress", *FAST]) == 0
    out = capsys.readouterr().out
    assert "-> preset vectors" in out and "3 distinct labels {1, 2, 3} remapped to classes 0..2" in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "data.json").read_text())
    assert record["label_values"] == [1, 2, 3] and record["num_classes"] == 3


def test_statistics_are_the_training_splits_and_saved(vector_run):
    from deepfusion.model.data import load_dataset

    record = json.loads((vector_run / "data.json").read_text())
    train = load_dataset(
        "npz",
        root=yaml.safe_load((vector_run / "config.yaml").read_text())["data"]["root"],
        split="train",
        test_fraction=0.2,
    )
    x = train.x.double().numpy()
    assert np.allclose(record["standardize"]["mean"], x.mean(0)) and np.allclose(record["standardize"]["std"], x.std(0))
    assert record["n_train"] == len(train) and record["kind"] == "vector"


def test_eval_reuses_the_saved_statistics_and_gives_the_same_numbers(vector_run, tmp_path, monkeypatch):
    import deepfusion.model.runs.prepare as prepare

    def refit(*a, **k):
        raise AssertionError("evaluation recomputed the statistics instead of reading data.json")

    monkeypatch.setattr(prepare, "fit", refit)
    out = tmp_path / "again.json"
    assert main(["eval", "--run", str(vector_run), "--device", "cpu", "--threads", "1", "--json", str(out)]) == 0
    first, again = json.loads((vector_run / "eval.json").read_text()), json.loads(out.read_text())
    for key in ("knn", "linear", "head_loo1nn", "random_knn", "random_linear", "untrained_head_loo1nn", "knn_ci"):
        assert again[key] == first[key], key


def test_eval_prints_intervals_and_the_untrained_head(vector_run, capsys):
    assert main(["eval", "--run", str(vector_run), "--device", "cpu", "--threads", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "[95% CI]" in out and "untrained head" in out and "random backbone" in out
    ev = json.loads((vector_run / "eval.json").read_text())
    low, high = ev["knn_ci"]
    assert low <= ev["knn"] <= high and f"{ev['knn']:.4f} [{low:.4f}, {high:.4f}]" in out


def test_4d_x_picks_the_images_preset(tmp_path, capsys):
    path = _images_file(tmp_path / "pics.npz")
    argv = ["train", "data.name=npz", f"data.root={path}", "--out", str(tmp_path / "runs"), "--no-progress", *FAST]
    assert main(argv) == 0
    assert "-> preset images" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("pics-")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["model"]["backbone"] == "cnn3" and json.loads((run_dir / "data.json").read_text())["input_shape"] == [
        1,
        8,
        8,
    ]


def test_without_npz_the_default_preset_stays_digits():
    cfg, notes = resolve_config(None, ["train.epochs=1"])
    assert cfg.preset == "digits" and cfg.data.name == "digits" and notes == []


def test_a_small_split_gets_an_even_batch_and_the_minimum_of_steps(tmp_path):
    from deepfusion.model.data import load_dataset

    path = _vectors_file(tmp_path / "small.npz", n=100)
    n = len(load_dataset("npz", root=path, test_fraction=0.2))  # the split the run will train on (79)
    cfg, notes = resolve_config(None, ["data.name=npz", f"data.root={path}"])
    assert cfg.train.batch_size == n and cfg.train.epochs == 600
    assert any(f"256 -> {n}" in note for note in notes) and any("at least 600 steps" in note for note in notes)
    cfg, notes = resolve_config(None, ["data.name=npz", f"data.root={path}", "train.batch_size=32", "train.epochs=3"])
    assert (cfg.train.batch_size, cfg.train.epochs) == (32, 3)  # given on the command line: kept
    path = _vectors_file(tmp_path / "mid.npz", n=450)  # 360 train: batches of 256 would drop 104 each epoch
    cfg, _ = resolve_config(None, ["data.name=npz", f"data.root={path}"])
    assert cfg.train.batch_size == 180


def test_a_preset_that_does_not_fit_the_shape_is_named(tmp_path):
    images, vectors = _images_file(tmp_path / "i.npz"), _vectors_file(tmp_path / "v.npz")
    with pytest.raises(ConfigError, match="preset vectors is for 2-D x.*--config images"):
        resolve_config("vectors", [f"data.root={images}"])
    with pytest.raises(ConfigError, match="preset images is for 3-D/4-D x.*--config vectors"):
        resolve_config("images", [f"data.root={vectors}"])
    with pytest.raises(ConfigError, match="needs the file"):
        resolve_config(None, ["data.name=npz"])


def test_vectors_stored_as_n_1_d_are_told_how_to_pass_vectors(tmp_path, capsys):
    path = tmp_path / "n1d.npz"
    np.savez(path, x=np.random.default_rng(0).integers(0, 9, (30, 1, 12)).astype(np.uint8), y=np.arange(30) % 2)
    assert main(["train", "data.name=npz", f"data.root={path}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "read as images of 1x12" in err and "x.reshape(len(x), -1)" in err and err.count("\n") == 1


def test_huge_label_values_train_as_two_classes(tmp_path):
    path = _vectors_file(tmp_path / "h.npz", labels=np.where(np.arange(60) % 2, 10**6, 0))
    cfg, notes = resolve_config(None, ["data.name=npz", f"data.root={path}"])
    assert any("{0, 1000000}" in n for n in notes)
    from deepfusion.model.runs.loading import load_datasets

    train, test, record = load_datasets(cfg)
    assert train.num_classes == 2 and record.label_values == (0, 10**6)


def test_more_classes_than_samples_is_refused_for_every_loader():
    from deepfusion.model.data import load_dataset
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.prepare import prepare

    cfg = load_config("synthetic")
    train = load_dataset("synthetic", num_classes=3, samples_per_class=4)
    test = load_dataset("synthetic", split="test", num_classes=3, samples_per_class=4)
    prepare(cfg, train, test)
    from dataclasses import replace

    with pytest.raises(DataError, match="imply 1000 classes but train and test hold only 12 samples"):
        prepare(cfg, replace(train, num_classes=1000, class_names=()), test)


def test_run_folders_from_before_standardisation_load_as_they_were_trained(vector_run, tmp_path):
    import shutil

    from deepfusion.model.runs.loading import load_run, run_config

    old = tmp_path / "old"
    shutil.copytree(vector_run, old, ignore=shutil.ignore_patterns(".lock"))
    text = yaml.safe_load((old / "config.yaml").read_text())
    for key in ("standardize", "aug_noise", "aug_mask", "aug_mix"):
        text["data"].pop(key)
    (old / "config.yaml").write_text(yaml.safe_dump(text))
    assert run_config(old).data.standardize is False  # keys it lacks take the behaviour from before them
    assert run_config(vector_run).data.standardize is True
    import torch

    from deepfusion.errors import DataWarning

    ckpt_path = old / "checkpoints" / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    for key in ("standardize", "aug_noise", "aug_mask", "aug_mix"):
        ckpt["config"]["data"].pop(key)
    torch.save(ckpt, ckpt_path)
    (old / "data.json").unlink()
    with pytest.warns(DataWarning, match="noise does nothing"):  # features up to ~4000, used as given
        run = load_run(old)
    assert run.record.standardize is None and float(run.train_ds.x.abs().max()) > 100
    # and they can be resumed: the keys they predate are not changes of their trajectory
    from deepfusion.model.runs.loop import train

    (old / "checkpoints" / "prev.pt").unlink(missing_ok=True)
    with pytest.warns(DataWarning):
        train(run_config(old), run_dir=old, resume=True, progress=False)


def _signals_file(path: Path, n=60, length=16) -> Path:
    rng = np.random.default_rng(2)
    y = np.arange(n) % 3
    t = np.linspace(-1, 1, length)
    x = np.exp(-(((t[None] - (y[:, None] - 1) * 0.5 - rng.uniform(-0.1, 0.1, (n, 1))) / 0.2) ** 2))
    np.savez(path, x=(x + 0.05 * rng.normal(size=x.shape)).astype("float32"), y=y)
    return path


def test_2d_x_names_the_signals_preset_for_ordered_rows(tmp_path):
    path = _signals_file(tmp_path / "traces.npz")
    cfg, notes = resolve_config(None, ["data.name=npz", f"data.root={path}"])
    assert cfg.model.backbone == "mlp"  # the shape alone cannot tell signals from vectors
    assert any("-> preset vectors" in n and "--config signals" in n for n in notes)


def test_signals_preset_trains_a_1d_cnn_with_the_signal_augmentation(tmp_path, capsys):
    path = _signals_file(tmp_path / "traces.npz")
    argv = [
        "train",
        "--config",
        "signals",
        f"data.root={path}",
        "--out",
        str(tmp_path / "runs"),
        "--no-progress",
        *FAST,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "augment: data.augment=signal: shift up to 0.15, stretch 0.85-1.15x, amplitude 0.7-1.3x" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["model"]["backbone"] == "cnn1d" and cfg["data"]["augment"] == "signal"
    assert json.loads((run_dir / "eval.json").read_text())["knn"] is not None


def test_signals_preset_refuses_images(tmp_path):
    with pytest.raises(ConfigError, match="preset signals is for 2-D x"):
        resolve_config("signals", [f"data.root={_images_file(tmp_path / 'i.npz')}"])


def test_grey_images_get_brightness_and_contrast_jitter_and_the_note_says_so(tmp_path):
    x = np.random.default_rng(3).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "grey.npz", x=x, y=np.arange(40) % 2)
    cfg, notes = resolve_config(None, ["data.name=npz", f"data.root={tmp_path / 'grey.npz'}"])
    assert cfg.data.augment == "default"
    assert any(
        n.startswith("augment: data.augment=fashion_mnist_jitter (chosen by the data's channels and size)")
        and "brightness/contrast jitter on 80% of the views" in n
        for n in notes
    )
