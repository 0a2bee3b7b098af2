"""Rule v3's statistic as a pure function (a stand-in, kept apart so the verdict's own code can replace it).

The attention a token puts on *other* samples of its class, as a share of the attention it puts
outside its own views (self and positive view removed and the row renormalised), over the same share
under uniform attention over the visible tokens. 1 at chance; above 1 when attention prefers the
class among the other samples; it does not count attention to the token itself or its positive.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import DataError


def class_share_ratio(A, labels, inst, visible=None) -> float:
    """A (M, M) one head's attention (rows sum to one), labels and instance ids (M,), visible (M, M) bool.

    Returns mean_i share_i / mean_i uniform_i, share_i = sum_{j same class, other instance} A_ij /
    sum_{j other instance} A_ij over visible j, uniform_i the same with A uniform on the visible j."""
    A = np.asarray(A, dtype=np.float64)
    labels, inst = np.asarray(labels), np.asarray(inst)
    M = A.shape[0]
    visible = np.ones((M, M), bool) if visible is None else np.asarray(visible, bool)
    if A.shape != (M, M) or labels.shape != (M,) or inst.shape != (M,) or visible.shape != (M, M):
        raise DataError(f"attention {A.shape}, labels {labels.shape}, inst {inst.shape}, visible {visible.shape} "
                        "do not describe one batch")
    outside = visible & (inst[:, None] != inst[None, :])
    same = outside & (labels[:, None] == labels[None, :])
    rows = outside.any(1) & same.any(1)
    if not rows.any():
        raise DataError("no token sees another sample of its class: the statistic is undefined for this batch")
    mass_out = (A * outside).sum(1)[rows]
    share = (A * same).sum(1)[rows] / np.maximum(mass_out, 1e-300)
    uniform = same.sum(1)[rows] / outside.sum(1)[rows]
    return float(share.mean() / uniform.mean())
