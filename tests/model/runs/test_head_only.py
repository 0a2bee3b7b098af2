"""Head-only training: a frozen backbone stays bit-identical, fixed feature maps are fitted, a trained
run's backbone can be the start, and a model with nothing to train is refused."""

import pytest
import torch

from deepfusion.errors import CheckpointError, ConfigError
from deepfusion.model.runs.checkpoint import load_checkpoint
from deepfusion.model.runs.config import load_config
from deepfusion.model.runs.factory import build_model
from deepfusion.model.runs.optim import build_optimizer

TINY = [
    "train.epochs=2",
    "train.batch_size=64",
    "train.device=cpu",
    "eval.linear_epochs=2",
    "eval.head_batch=32",
    "data.options={samples_per_class: 40}",
    "model.depth=2",
]


def _train(tmp_path, name, *overrides):
    from deepfusion.model.runs.loop import train

    return train(
        load_config("synthetic", TINY + [f"train.name={name}", f"train.out_dir={tmp_path}", *overrides]), progress=False
    ).run_dir


def _backbone(run_dir):
    return {
        k: v
        for k, v in load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"].items()
        if k.startswith("backbone.")
    }


def test_frozen_backbone_is_bit_identical_to_its_initialisation(tmp_path):
    run = _train(tmp_path, "frozen", "train.freeze_backbone=true")
    cfg = load_config("synthetic", TINY + ["train.freeze_backbone=true"])
    from deepfusion.model.runs.controls import seed_everything
    from deepfusion.model.runs.loading import load_datasets

    seed_everything(cfg.train.seed)
    train_ds, _, _ = load_datasets(cfg)
    fresh = build_model(cfg, tuple(train_ds.input_shape))  # the same seeded initialisation as the run
    trained = _backbone(run)
    assert trained and all(
        torch.equal(trained[k], v)
        for k, v in {f"backbone.{k}": v for k, v in fresh.backbone.state_dict().items()}.items()
    )
    head = [v for k, v in load_checkpoint(run / "checkpoints" / "last.pt")["model"].items() if k.startswith("head.")]
    fresh_head = list(fresh.head.state_dict().values())
    assert any(not torch.equal(a, b) for a, b in zip(head, fresh_head))  # the head did train


def test_frozen_backbone_stays_in_eval_mode_and_gets_no_gradient():
    cfg = load_config("synthetic", TINY + ["train.freeze_backbone=true"])
    model = build_model(cfg, (32,)).train()
    assert not model.backbone.training and model.head.training
    out = model(torch.randn(8, 32))
    out.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_pca_backbone_is_fitted_whitened_and_saved(tmp_path):
    run = _train(tmp_path, "pca", "model.backbone=pca", "train.freeze_backbone=true")
    state = _backbone(run)
    assert set(state) == {"backbone.mean", "backbone.proj"} and state["backbone.proj"].shape == (32, 32)
    from deepfusion.model.network.backbones import PCAWhiten

    x = torch.randn(500, 6) @ torch.randn(6, 6)
    feats = PCAWhiten(6, components=4).fit(x)(x)
    torch.testing.assert_close(torch.cov(feats.T.double()), torch.eye(4, dtype=torch.float64), atol=1e-3, rtol=1e-3)


def test_backbone_from_a_trained_run(tmp_path):
    source = _train(tmp_path, "source")
    run = _train(tmp_path, "head", f"model.backbone_from={source}", "train.freeze_backbone=true")
    assert all(torch.equal(_backbone(source)[k], v) for k, v in _backbone(run).items())
    with pytest.raises(ConfigError, match="backbone_from"):
        _train(tmp_path, "nowhere", f"model.backbone_from={tmp_path / 'missing'}")
    with pytest.raises(CheckpointError, match="backbone_from"):
        _train(tmp_path, "mismatch", f"model.backbone_from={source}", "model.backbone=identity")


def test_nothing_to_train_is_refused():
    cfg = load_config("synthetic", TINY)
    model = torch.nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="nothing to train"):
        build_optimizer(cfg, model, steps_per_epoch=3)
