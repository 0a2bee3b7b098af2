"""Augmentation of ordered 1-D signals (time series, spectra, sensor traces): shift, stretch, scale.

A signal is a vector whose positions are ordered, ``(B, L)``. Unlike the ``vector`` pipeline, which
treats features as exchangeable, these operations respect the order:

- shift and stretch in one linear resampling: output position ``u`` (in [-1, 1]) reads the input
  at ``u / z + 2 s``, with a per-sample stretch ``z`` drawn from ``preset.zoom`` (> 1 zooms in)
  and a shift ``s`` up to ``preset.shift`` of the length; positions read from outside the signal
  get 0, which is each position's mean once a run has standardised the data;
- amplitude: the whole signal times a per-sample factor drawn from ``preset.scale``.

The vector pipeline's noise and masking then apply as usual (``augment.Augment._vector``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _uniform(lo: float, hi: float, n: int, g, device) -> torch.Tensor:
    u = torch.rand(n, generator=g, device=g.device if g is not None else device)
    return (lo + (hi - lo) * u).to(device)


def shift_stretch_scale(x: torch.Tensor, shift: float, zoom: tuple, scale: tuple, g=None) -> torch.Tensor:
    """(B, L) signals shifted by up to ``shift`` of their length, stretched by a factor in ``zoom`` and
    multiplied by a factor in ``scale``, each drawn per sample from ``g``."""
    B, L = x.shape
    dev = x.device
    if shift or zoom != (1.0, 1.0):
        z = _uniform(zoom[0], zoom[1], B, g, dev)
        s = 2 * shift * _uniform(-1, 1, B, g, dev)
        u = (torch.arange(L, device=dev, dtype=x.dtype) * 2 + 1) / L - 1  # pixel centres, align_corners=False
        pos = u[None, :] / z[:, None] + s[:, None]  # (B, L) where each output position reads
        grid = torch.stack([pos, torch.zeros_like(pos)], -1)[:, None]  # (B, 1, L, 2)
        x = F.grid_sample(x[:, None, None, :], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[
            :, 0, 0
        ]
    if scale != (1.0, 1.0):
        x = x * _uniform(scale[0], scale[1], B, g, dev)[:, None]
    return x
