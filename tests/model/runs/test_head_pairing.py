"""Pairing by seed: for one ``train.seed`` every registered head starts from the same backbone
weights and sees the same batches and the same augmented views, so a head comparison is paired.

The real training path (``loop.train``) runs until its first steps; ``get_batch`` and ``train_step``
are wrapped to record what they received, then the run is stopped.
"""

import pytest
import torch

from deepfusion.model.runs import loop
from deepfusion.model.runs.config import load_config
from tests.model.data.data_files import write_fashion

STEPS = 3  # the first steps recorded
SHAPES = {
    "synthetic": [
        "data.options.num_classes=4",
        "data.options.samples_per_class=40",
        "train.batch_size=16",
        "model.dim=16",
        "model.depth=1",
        "model.heads=2",
        "model.ffn_dim=16",
        "model.out_dim=8",
        "model.mlp_hidden=16",
    ],
    # the whole-model presets' backbone (cnn3 on images) with their augmentation of images
    # the preset of the whole-model head comparison, on small IDX files of the same format
    "fashion_mnist_cpu": [
        "train.batch_size=16",
        "data.options.limit=40",
        "model.dim=16",
        "model.depth=1",
        "model.heads=2",
        "model.ffn_dim=16",
        "model.out_dim=8",
        "model.mlp_hidden=16",
    ],
    "digits": [
        "train.batch_size=16",
        "model.dim=16",
        "model.depth=1",
        "model.heads=2",
        "model.ffn_dim=16",
        "model.out_dim=8",
        "model.mlp_hidden=16",
    ],
}


GET_BATCH, TRAIN_STEP = loop.get_batch, loop.train_step  # the loop's own steps, wrapped below


class Stop(Exception):
    pass


def first_steps(monkeypatch, tmp_path, preset: str, head: str, seed: int) -> dict:
    """The backbone's initial weights, the batch indices and the views of the first ``STEPS`` steps."""
    seen = dict(indices=[], views=[], backbone=None)

    def recording_get_batch(setup, perm, b, step, gen):
        B = setup.cfg.train.batch_size
        seen["indices"].append(perm[b * B : (b + 1) * B].clone())
        return GET_BATCH(setup, perm, b, step, gen)

    def recording_train_step(setup, views, skip_nonfinite):
        if seen["backbone"] is None:
            seen["backbone"] = {k: v.detach().clone() for k, v in setup.model.backbone.state_dict().items()}
        seen["views"].append(views.detach().clone())
        if len(seen["views"]) == STEPS:
            raise Stop
        return TRAIN_STEP(setup, views, skip_nonfinite)

    monkeypatch.setattr(loop, "get_batch", recording_get_batch)
    monkeypatch.setattr(loop, "train_step", recording_train_step)
    extra = []
    if preset == "fashion_mnist_cpu":
        write_fashion(tmp_path / "fashion", n_train=60, n_test=20)
        extra = [f"data.root={tmp_path / 'fashion'}"]
    cfg = load_config(
        preset,
        SHAPES[preset]
        + extra
        + [
            "train.device=cpu",
            "train.threads=1",
            "train.epochs=2",
            f"train.out_dir={tmp_path}",
            f"train.name={head}_s{seed}",
            f"model.head={head}",
            f"train.seed={seed}",
        ],
    )
    with pytest.raises(Stop):
        loop.train(cfg, progress=False)
    return seen


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def registered_heads() -> tuple[str, ...]:
    from deepfusion.model.network.registry import HEADS

    return HEADS.names()


@pytest.mark.parametrize("preset", sorted(SHAPES))
def test_every_head_of_a_seed_sees_the_same_backbone_batches_and_views(monkeypatch, tmp_path, preset):
    heads = registered_heads()
    assert len(heads) >= 4
    runs = {h: first_steps(monkeypatch, tmp_path, preset, h, seed=3) for h in heads}
    ref = runs[heads[0]]
    assert len(ref["views"]) == STEPS and len(ref["indices"]) == STEPS
    for h in heads[1:]:
        assert same_state(runs[h]["backbone"], ref["backbone"]), f"{h}: another backbone initialisation"
        for step in range(STEPS):
            assert torch.equal(runs[h]["indices"][step], ref["indices"][step]), f"{h}: other batch at step {step}"
            assert torch.equal(runs[h]["views"][step], ref["views"][step]), f"{h}: other views at step {step}"


def test_another_seed_changes_backbone_batches_and_views(monkeypatch, tmp_path):
    """The comparison above can fail: a different seed gives a different start on every count."""
    a = first_steps(monkeypatch, tmp_path, "synthetic", "transformer", seed=3)
    b = first_steps(monkeypatch, tmp_path, "synthetic", "transformer", seed=4)
    assert not same_state(a["backbone"], b["backbone"])
    assert not torch.equal(a["indices"][0], b["indices"][0])
    assert not torch.equal(a["views"][0], b["views"][0])
