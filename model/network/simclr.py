"""The SimCLR model: a backbone and a projection head applied to the views of a batch."""

from __future__ import annotations

import torch
from torch import nn


class SimCLRModel(nn.Module):
    """``backbone`` maps inputs to features, ``head`` maps the features of all views at once to projections.

    The head must see all views of the batch in one call (the transformer head attends across
    them), so ``forward`` takes the view-major stack ``(V*N, ...)`` rather than one view at a time.

    ``freeze_backbone``: the backbone is a fixed feature map (head-only training): its parameters
    get no gradient, it runs without autograd, and it stays in eval mode (BatchNorm statistics
    fixed) whatever mode the model is put in.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, freeze_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> "SimCLRModel":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, x_views: torch.Tensor, return_attention: bool = False):
        """``x_views`` (V*N, ...) view-major -> projections (V*N, out_dim) (and the attention list)."""
        return self.head(self.embed(x_views), return_attention=return_attention)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, out_dim of the backbone): what the linear probe and kNN evaluate."""
        if self.freeze_backbone:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)
