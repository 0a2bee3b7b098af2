"""Training-step benchmark: one full SimCLR step in images per second, transformer head against MLP head.

A step is what the training loop does: index a batch of resident uint8 images, two augmented views
on the device, backbone, head, NT-Xent, backward, optimiser step. On CUDA: bf16 autocast,
channels_last, optional ``torch.compile``; the timed loop holds no host synchronisation.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from deepfusion.experiments.bench_timing import time_interleaved
from deepfusion.model.data.augment import build_augment
from deepfusion.model.network.backbones import build_backbone
from deepfusion.model.network.forward_options import forward_options
from deepfusion.model.network.heads import build_head
from deepfusion.model.network.losses import nt_xent
from deepfusion.model.network.simclr import SimCLRModel
from deepfusion.model.runs.devices import resolve_device
from deepfusion.model.runs.factory import build_model
from deepfusion.model.runs.loading import build_run_augment, load_datasets
from deepfusion.model.runs.optim import build_optimizer


def contrastive_step(forward, opt, data, two_views, batch: int, temperature: float):
    """A closure running one NT-Xent step as the training loop does: the next ``batch`` rows of the
    resident ``data`` (cycling), ``two_views`` of them, ``forward``, loss, backward, ``opt`` step;
    bf16 autocast on CUDA and no host synchronisation."""
    ids = torch.arange(batch, device=data.device).repeat(2)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if data.device.type == "cuda" else nullcontext
    state = {"i": 0}

    def step():
        start = (state["i"] * batch) % (data.shape[0] - batch + 1)
        state["i"] += 1
        views = two_views(data[start : start + batch])
        with autocast(), forward_options(check_inputs=False):  # as in training: no host sync in the step
            z = forward(views)
        loss = nt_xent(z.float(), ids, temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def make_step(
    backbone: str, head: str, batch: int, device, image_size=32, compile=False, dim=256, depth=6, heads=8, pool=4096
):
    """A closure running one training step on random resident CIFAR-shaped data."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    shape = (3, image_size, image_size)
    torch.manual_seed(0)
    data = torch.randint(0, 256, (max(pool, batch), *shape), dtype=torch.uint8, device=device)
    augment = build_augment("default", "image", shape).to(device)
    net = build_backbone(backbone, shape)
    model = SimCLRModel(
        net,
        build_head(head, net.out_dim, dim=dim, depth=depth, heads=heads, ffn_dim=4 * dim, out_dim=512, mlp_hidden=2048),
    ).to(device=device, memory_format=fmt)
    fwd = torch.compile(model) if (compile and cuda) else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)

    def views(x):
        return augment.two_views(x, generator=gen).contiguous(memory_format=fmt)

    return contrastive_step(fwd, opt, data, views, batch, temperature=0.5)


def bench_train(device="cpu", backbone=None, batch=512, repeats=5, warmup=2, compile=False) -> list[dict]:
    """Images per second of a full step with the transformer head and with the MLP head."""
    device = torch.device(device)
    backbone = backbone or ("resnet18" if device.type == "cuda" else "cnn3")
    heads = ("transformer", "mlp")
    steps = {head: make_step(backbone, head, batch, device, compile=compile) for head in heads}
    seconds = time_interleaved(steps, device, repeats, warmup + (3 if compile else 0))
    rows = [
        dict(
            backbone=backbone,
            head=head,
            batch=batch,
            compile=bool(compile and device.type == "cuda"),
            step_s=seconds[head],
            images_per_s=batch / seconds[head],
        )
        for head in heads
    ]
    rows[0]["cost_vs_mlp"] = rows[0]["step_s"] / rows[1]["step_s"]
    return rows


def make_config_step(cfg):
    """One training step of a config as ``deepfusion train`` runs it: the config's data (loaded and
    prepared), augmentation, backbone and head, NT-Xent at its temperature and its optimiser at its
    scaled lr (no schedule), batch ``train.batch_size`` per view, on ``train.device``."""
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    train_ds, _, _ = load_datasets(cfg)
    data = torch.as_tensor(train_ds.x).to(device)
    augment = build_run_augment(cfg, train_ds).to(device)
    model = build_model(cfg, tuple(train_ds.input_shape)).to(device)
    opt, _ = build_optimizer(cfg, model, steps_per_epoch=max(1, len(train_ds.y) // cfg.train.batch_size))
    gen = torch.Generator(device=device).manual_seed(cfg.train.seed)

    def views(x):
        return augment.two_views(x, generator=gen)

    step = contrastive_step(model, opt, data, views, cfg.train.batch_size, cfg.loss.temperature)
    return device, step, len(train_ds.y)


def bench_config(cfg, repeats=3, warmup=1) -> dict:
    """Seconds per training step of a config (``deepfusion bench train --config PRESET``), the
    images per second and the steps of one epoch, so a preset's epochs can be fitted to a time."""
    device, step, n_train = make_config_step(cfg)
    seconds = time_interleaved({"step": step}, device, repeats, warmup)["step"]
    batch, spe = cfg.train.batch_size, n_train // cfg.train.batch_size  # the loop drops the last partial batch
    return dict(
        config=cfg.preset,
        backbone=cfg.model.backbone,
        head=cfg.model.head,
        batch=batch,
        step_s=seconds,
        images_per_s=batch / seconds,
        train_images=n_train,
        steps_per_epoch=spe,
        epoch_s=spe * seconds,
        epochs=cfg.train.epochs,
        train_s=cfg.train.epochs * spe * seconds,
    )


def make_head_only_step(batch: int, device, dim=256, depth=10, heads=16, ffn_dim=1024, out_dim=512, features=64):
    """One head-only step (train.freeze_backbone with the identity backbone): the paper-size head on
    feature vectors, two noisy views, NT-Xent, backward through the head only, AdamW."""
    gen = torch.Generator(device=device).manual_seed(0)
    head = build_head("transformer", features, dim=dim, depth=depth, heads=heads, ffn_dim=ffn_dim, out_dim=out_dim).to(
        device
    )
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    data = torch.randn(4096, features, device=device, generator=gen)

    def views(x):
        return torch.cat([x, x]) + 0.1 * torch.randn(2 * batch, features, device=device, generator=gen)

    return contrastive_step(head, opt, data, views, batch, temperature=0.1)


def bench_head_only(device="cpu", batches=(256,), repeats=5, warmup=2) -> list[dict]:
    """Steps and samples per second of head-only training at the paper's head size (D=256, L=10,
    H=16, FFN 1024, out 512), per batch size."""
    device = torch.device(device)
    steps = {b: make_head_only_step(b, device) for b in batches}
    seconds = time_interleaved(steps, device, repeats, warmup)
    return [
        dict(
            batch=b,
            step_s=seconds[b],
            steps_per_s=1.0 / seconds[b],
            samples_per_s=b / seconds[b],
            head="D=256 L=10 H=16 FFN=1024 out=512",
        )
        for b in batches
    ]
