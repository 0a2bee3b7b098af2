"""A run folder on read-only media can be read: the lock file it cannot create is not needed there."""

import errno
import os

import pytest

from deepfusion.errors import RunError
from deepfusion.model.runs.lock import folder_lock, holds_lock


def _lock_file_open_fails(monkeypatch, code: int, text: str) -> None:
    """``os.open`` of any ``.lock`` file fails with ``code``; every other path opens as usual."""
    real = os.open

    def failing(path, flags, *a, **k):
        if str(path).endswith(".lock"):
            raise OSError(code, text, str(path))
        return real(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", failing)


def test_a_read_only_file_system_needs_no_lock(tmp_path, monkeypatch):
    _lock_file_open_fails(monkeypatch, errno.EROFS, "Read-only file system")
    with folder_lock(tmp_path, "evaluate") as folder:
        assert folder.root == tmp_path and not holds_lock(tmp_path)  # nothing is cleaned up as a holder


def test_other_lock_file_errors_still_stop(tmp_path, monkeypatch):
    _lock_file_open_fails(monkeypatch, errno.EACCES, "Permission denied")
    with pytest.raises(RunError, match="cannot open the lock file"):
        with folder_lock(tmp_path):
            pass
