"""Optimisers (SGD with momentum, LARS, AdamW) and the per-step warm-up + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from deepfusion.errors import ConfigError
from deepfusion.model.runs.config import Config


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio (You et al., 2017), as used by SimCLR.

    Biases and normalisation parameters (1-d tensors) get neither weight decay nor the
    trust ratio, the usual SimCLR exclusion.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
                    # trust ratio without a host sync: fall back to 1 where a norm is zero
                    ratio = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    grad = grad * ratio
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = grad.clone()
                else:
                    buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])
        return loss


def scaled_lr(cfg: Config) -> float:
    """``optim.lr`` is given per 256 samples; linear scaling keeps small batches trainable."""
    return cfg.optim.lr * cfg.train.batch_size / 256


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then half a cosine down to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, lr: float, head_lr_scale: float) -> list[dict]:
    """The trainable parameters as optimiser groups: the head at ``lr * head_lr_scale``, the rest at ``lr``.

    One group when the scale is 1 (the optimiser then steps exactly as it did before the key existed).
    """
    head = getattr(model, "head", None)
    head_ids = {id(p) for p in head.parameters()} if head_lr_scale != 1.0 and head is not None else set()
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    tuned = [p for p in model.parameters() if p.requires_grad and id(p) in head_ids]
    groups = [dict(params=rest, lr=lr)] if rest else []
    if tuned:
        groups.append(dict(params=tuned, lr=lr * head_lr_scale))
    return groups


def build_optimizer(cfg: Config, model: nn.Module, steps_per_epoch: int):
    """(optimizer, LambdaLR scheduler stepped once per training step)."""
    o, lr = cfg.optim, scaled_lr(cfg)
    params = param_groups(model, lr, o.head_lr_scale)
    if not params:
        raise ConfigError(
            "nothing to train: every parameter is frozen (train.freeze_backbone=true and a head "
            "without parameters); train the backbone or pick a head that learns"
        )
    if o.name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    elif o.name == "lars":
        opt = LARS(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=o.weight_decay)
    total = cfg.train.epochs * steps_per_epoch
    warmup = min(total, int(round(o.warmup_epochs * steps_per_epoch)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))
    return opt, sched
