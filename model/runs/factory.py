"""Build the SimCLR model (backbone + projection head) that a config describes."""

from __future__ import annotations

from deepfusion.model.network.backbones import build_backbone
from deepfusion.model.network.heads import build_head
from deepfusion.model.network.simclr import SimCLRModel
from deepfusion.model.runs.config import Config


def head_options(cfg: Config) -> dict:
    """The model config keys ``build_head`` reads; each head picks the ones it uses."""
    m = cfg.model
    return dict(
        dim=m.dim,
        depth=m.depth,
        heads=m.heads,
        ffn_dim=m.ffn_dim,
        out_dim=m.out_dim,
        norm=m.norm,
        scope=m.scope,
        out_bn=m.out_bn,
        mlp_hidden=m.mlp_hidden,
    )


def build_model(cfg: Config, input_shape: tuple[int, ...]) -> SimCLRModel:
    """Backbone named by ``model.backbone`` for inputs of ``input_shape``, head by ``model.head``."""
    backbone = build_backbone(
        cfg.model.backbone,
        tuple(input_shape),
        backbone_width=cfg.model.backbone_width,
        backbone_depth=cfg.model.backbone_depth,
    )
    head = build_head(cfg.model.head, backbone.out_dim, **head_options(cfg))
    return SimCLRModel(backbone, head, freeze_backbone=cfg.train.freeze_backbone)
