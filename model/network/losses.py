"""NT-Xent, the contrastive loss, as a pure function.

For embeddings ``z`` (M, d), cosine logits ``s_ij = <z_i, z_j> / (|z_i| |z_j| T)``.
The positives of anchor ``i`` are ``P(i) = {j != i : indexes[j] == indexes[i]}``
and its denominator runs over every ``k != i``:

    loss_i = -(1/|P(i)|) sum_{p in P(i)} [ s_ip - log sum_{k != i} exp(s_ik) ]

averaged over the anchors with ``|P(i)| >= 1``. ``rows`` restricts the anchors to some
rows of ``z`` while every row still serves as positive or negative: the data-parallel loss of
one rank over the gathered batch (``model.network.collectives.gathered_nt_xent``). Instance ids as ``indexes``
give SimCLR's NT-Xent (one positive per anchor with two views); class labels
give SupCon's "out" form (the log-probabilities averaged over positives).
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from deepfusion.errors import ConfigError, DataError


def nt_xent(
    z: torch.Tensor, indexes: torch.Tensor, temperature: float, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean NT-Xent of ``z`` (M, d) with positives given by equal ``indexes`` (M,); a scalar tensor.

    ``rows`` (A,) integer indices of the anchors (default: every row).

    Computed in float32 whatever the input precision: at the paper's temperature
    0.02 the logits span +-50, where half-precision log-sum-exp loses digits.
    """
    if not isinstance(temperature, numbers.Real) or not temperature > 0 or temperature == float("inf"):
        raise ConfigError(f"temperature must be a positive finite number, got {temperature!r}")
    if z.dim() != 2:
        raise DataError(f"nt_xent expects embeddings of shape (M, d), got shape {tuple(z.shape)}")
    if indexes.dim() != 1 or indexes.shape[0] != z.shape[0]:
        raise DataError(f"nt_xent expects indexes of shape ({z.shape[0]},) to match z, got {tuple(indexes.shape)}")
    if indexes.is_floating_point() or indexes.is_complex():
        raise DataError(f"nt_xent indexes must be integers (instance ids or class labels), got {indexes.dtype}")
    m = z.shape[0]
    if rows is None:
        eye = torch.eye(m, dtype=torch.bool, device=indexes.device)
        anchor_ids = indexes
    else:
        if rows.dim() != 1 or rows.is_floating_point():
            raise DataError(
                f"nt_xent rows must be a 1-D integer tensor of anchor indices, got {tuple(rows.shape)} {rows.dtype}"
            )
        rows = rows.to(indexes.device)
        eye = rows[:, None] == torch.arange(m, device=indexes.device)[None, :]  # (A, M): the anchor itself
        anchor_ids = indexes[rows]
    pos = (anchor_ids[:, None] == indexes[None, :]) & ~eye  # (A, M)
    count = pos.sum(dim=1)
    anchors = count > 0
    # Checked on the host only when that costs no device sync; on a GPU no anchor gives NaN instead.
    if indexes.device.type == "cpu" and not bool(anchors.any()):
        raise DataError(
            "nt_xent: no sample shares its index with another, so no anchor has a positive; "
            "pass the same id for the views of one instance (or class labels)"
        )
    pos, count, anchors, eye = (t.to(z.device, non_blocking=True) for t in (pos, count, anchors, eye))
    with torch.autocast(device_type=z.device.type, enabled=False):
        zn = F.normalize(z.float(), dim=1)
        za = zn if rows is None else zn[rows.to(z.device)]
        logits = za @ zn.T / float(temperature)  # (A, M)
        # A large finite negative (not -inf) for self: it drops out of the log-sum-exp, and
        # logits - lse stays finite, so the zero weights below never meet an inf (0 * inf = NaN).
        logits = logits.masked_fill(eye, -1e9)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        per_anchor = -(log_prob * pos).sum(dim=1) / count.clamp(min=1)
        loss = (per_anchor * anchors).sum() / anchors.sum()  # mean over anchors with a positive
    return loss
