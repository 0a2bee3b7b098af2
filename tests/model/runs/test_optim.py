"""Optimisers and the schedule: LARS against a hand computation, warm-up + cosine at known steps."""

import math

import pytest
import torch
from torch import nn

from deepfusion.errors import ConfigError
from deepfusion.model.runs.config import config_hash, load_config
from deepfusion.model.runs.optim import LARS, build_optimizer, lr_factor, scaled_lr


def test_lars_step_matches_the_trust_ratio_by_hand():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, momentum=0.9, weight_decay=0.5, eta=1e-3)
    w.grad, b.grad = torch.tensor([[1.0, 0.0]]), torch.tensor([2.0])
    opt.step()
    g = torch.tensor([[1.0, 0.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])  # weight decay on matrices only
    ratio = 1e-3 * 5.0 / float(torch.linalg.vector_norm(g))
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.1 * ratio * g)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # biases: plain SGD
    # second step: the momentum buffer carries the first update
    w.grad, b.grad = torch.zeros_like(w), torch.zeros_like(b)
    before = b.detach().clone()
    opt.step()
    torch.testing.assert_close(b.detach(), before - 0.1 * 0.9 * 2.0)


def test_lars_with_a_zero_gradient_falls_back_to_ratio_one():
    w = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([w], lr=1.0, momentum=0.0, weight_decay=0.0)
    w.grad = torch.ones(2, 2)
    opt.step()  # |w| = 0: trust ratio 1, not 0 or NaN
    torch.testing.assert_close(w.detach(), -torch.ones(2, 2))


def test_lr_factor_warms_up_linearly_then_follows_half_a_cosine():
    warm, total = 4, 12
    assert [lr_factor(s, warm, total) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, warm, total) == pytest.approx(1.0)
    assert lr_factor(8, warm, total) == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(12, warm, total) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(50, warm, total) == pytest.approx(0.0, abs=1e-12)  # past the end it stays at zero
    decay = [lr_factor(s, warm, total) for s in range(4, 13)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_lr_factor_without_warmup_starts_at_the_peak():
    assert lr_factor(0, 0, 10) == 1.0
    assert lr_factor(5, 0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("lars", LARS), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_scales_the_lr_and_schedules_per_step(name, cls):
    cfg = load_config(
        "synthetic",
        [f"optim.name={name}", "optim.lr=0.4", "train.batch_size=128", "train.epochs=3", "optim.warmup_epochs=1"],
    )
    model = nn.Linear(3, 2)
    opt, sched = build_optimizer(cfg, model, steps_per_epoch=4)
    assert isinstance(opt, cls)
    peak = scaled_lr(cfg)
    assert peak == pytest.approx(0.4 * 128 / 256)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([peak * f for f in (0.25, 0.5, 0.75, 1.0)])
    assert lrs[8] == pytest.approx(peak * 0.5)


class _TwoPart(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone, self.head = nn.Linear(3, 4), nn.Linear(4, 2)


@pytest.mark.parametrize("name", ["sgd", "lars", "adamw"])
def test_head_lr_scale_puts_the_head_in_its_own_group_on_the_same_schedule(name):
    cfg = load_config(
        "synthetic",
        [
            f"optim.name={name}",
            "optim.lr=0.4",
            "train.batch_size=256",
            "train.epochs=2",
            "optim.warmup_epochs=1",
            "optim.head_lr_scale=0.1",
        ],
    )
    model = _TwoPart()
    opt, sched = build_optimizer(cfg, model, steps_per_epoch=2)
    backbone, head = opt.param_groups
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    for _ in range(3):
        assert head["lr"] == pytest.approx(0.1 * backbone["lr"])
        opt.step()
        sched.step()
    assert backbone["lr"] == pytest.approx(0.4 * 0.5)  # step 3 of 4: half the cosine after one warm-up epoch


def test_head_lr_scale_of_one_keeps_one_group_and_the_old_config_hash():
    plain = load_config("synthetic")
    assert len(build_optimizer(plain, _TwoPart(), steps_per_epoch=2)[0].param_groups) == 1
    assert config_hash(load_config("synthetic", ["optim.head_lr_scale=1.0"])) == config_hash(plain)
    assert config_hash(load_config("synthetic", ["optim.head_lr_scale=0.5"])) != config_hash(plain)


def test_head_lr_scale_must_be_positive():
    with pytest.raises(ConfigError, match="optim.head_lr_scale"):
        load_config("synthetic", ["optim.head_lr_scale=0"])
