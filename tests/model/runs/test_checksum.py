"""The checkpoint checksum: a byte flipped in tensor data is refused on loading, and resume falls back."""

import pytest
import torch

from deepfusion.errors import CheckpointError
from deepfusion.model.runs import checkpoint as ck
from deepfusion.model.runs.checksum import FIELD, checksum_problem, tensor_digest
from tests.model.runs.test_checkpoint import _state

MARK = 1234.5678  # an unusual weight value, so the weight's bytes occur once in the file


def _flip_weight_byte(path, state):
    data = bytearray(path.read_bytes())
    at = data.find(state["model"]["weight"].numpy().tobytes())
    assert at >= 0, "the weight is not stored as plain bytes"
    data[at] ^= 0x01  # one bit of the lowest mantissa byte: still a finite, plausible weight
    path.write_bytes(bytes(data))


def test_digest_changes_with_one_bit_and_not_with_key_order():
    a = {"w": torch.ones(3), "b": {"x": torch.zeros(2)}}
    b = {"b": {"x": torch.zeros(2)}, "w": torch.ones(3)}
    assert tensor_digest(a) == tensor_digest(b)
    c = {"w": torch.ones(3), "b": {"x": torch.tensor([0.0, 1e-45])}}
    assert tensor_digest(a) != tensor_digest(c)


def test_a_flipped_byte_in_tensor_data_is_refused(tmp_path):
    state = _state(MARK)
    ck.save_checkpoint(state, tmp_path)
    assert checksum_problem(ck.load_checkpoint(tmp_path / "last.pt")) is None
    _flip_weight_byte(tmp_path / "last.pt", state)
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        ck.load_checkpoint(tmp_path / "last.pt")


def test_resume_falls_back_to_prev_when_last_is_damaged(tmp_path):
    state = _state(MARK)
    ck.save_checkpoint(dict(state, step=1), tmp_path)
    ck.save_checkpoint(dict(state, step=2), tmp_path)
    _flip_weight_byte(tmp_path / "last.pt", state)
    ck._GOOD.clear()  # a fresh process: nothing is known to load
    assert ck.latest_checkpoint(tmp_path, quiet=True)["step"] == 1


def test_a_checkpoint_without_a_digest_still_loads(tmp_path):
    state = {"format": ck.FORMAT, "version": ck.VERSION, **_state()}
    torch.save(state, tmp_path / "last.pt")  # as written before digests were stored
    assert FIELD not in ck.load_checkpoint(tmp_path / "last.pt")
