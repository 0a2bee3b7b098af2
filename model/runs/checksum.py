"""A digest of every tensor a checkpoint holds, so a flipped byte on disk is caught on loading.

torch's zip container stores tensor data uncompressed and does not check it on reading: a bit
flipped on disk loads as a slightly different weight. The checkpoint therefore carries a SHA-256
over the bytes of all its tensors (walked in a fixed order: dict keys sorted, lists in order),
written at save and compared at load.
"""

from __future__ import annotations

import hashlib

import torch

FIELD = "checksum"  # the checkpoint field holding the digest


def tensor_digest(obj) -> str:
    """SHA-256 (hex) over the dtype, shape and bytes of every tensor in ``obj`` (nested dicts/lists)."""
    h = hashlib.sha256()
    _feed(h, obj, "")
    return h.hexdigest()


def _feed(h, obj, where: str) -> None:
    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        h.update(f"{where}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            _feed(h, obj[key], f"{where}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _feed(h, item, f"{where}/{i}")


def with_checksum(payload: dict) -> dict:
    """``payload`` with its digest added under :data:`FIELD`."""
    body = {k: v for k, v in payload.items() if k != FIELD}
    return {**body, FIELD: tensor_digest(body)}


def checksum_problem(obj: dict) -> str | None:
    """Why ``obj``'s tensors do not match its stored digest, or None (also for checkpoints written
    before digests were stored, which have none to compare)."""
    stored = obj.get(FIELD)
    if stored is None:
        return None
    if not isinstance(stored, str):
        return f"its '{FIELD}' field is not a digest"
    actual = tensor_digest({k: v for k, v in obj.items() if k != FIELD})
    return None if actual == stored else "its tensor data does not match the checksum stored with it"
