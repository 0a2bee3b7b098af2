"""The SimCLR model: a backbone and a projection head applied to the views of a batch."""

from __future__ import annotations

import torch
from torch import nn


class SimCLRModel(nn.Module):
    """``backbone`` maps inputs to features, ``head`` maps the features of all views at once to projections.

    The head must see all views of the batch in one call (the transformer head attends across
    them), so ``forward`` takes the view-major stack ``(V*N, ...)`` rather than one view at a time.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x_views: torch.Tensor, return_attention: bool = False):
        """``x_views`` (V*N, ...) view-major -> projections (V*N, out_dim) (and the attention list)."""
        return self.head(self.backbone(x_views), return_attention=return_attention)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, out_dim of the backbone): what the linear probe and kNN evaluate."""
        return self.backbone(x)
