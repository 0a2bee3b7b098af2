"""Where a run's data comes from: its absolute path and a fingerprint, recorded when the run starts.

A run reads ``data.root`` again on every ``--resume``, ``eval`` and ``analyze``. Without a record,
a file replaced under the run (same shape, other values) would be trained on and evaluated without
a word, and a relative ``data.root`` would be looked up from whatever folder the command runs in.
So a run records a :class:`DataSource` in its ``data.json`` (:class:`~deepfusion.model.runs.prepare.DataRecord`):
the root as the config gives it, the absolute path it resolved to (``~`` expanded) and a
fingerprint. Later reads load from the recorded path (as long as the config still names the same
root) and refuse data whose fingerprint changed, unless forced. A run folder made before
fingerprints were recorded is read as before, with one warning.

Fingerprint: for a file, its size and the SHA-256 of its bytes. For a folder (Fashion-MNIST, CIFAR,
Tiny-ImageNet), the SHA-256 of every file's relative name and size, and of the files' bytes too
when they total at most :data:`CONTENT_LIMIT`; a larger folder whose files keep their names and
sizes can change unnoticed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from deepfusion.errors import DataError, warn

VERSION = 1
CONTENT_LIMIT = 256 * 2**20  # folders up to this many bytes are fingerprinted by content too
CHUNK = 2**20


@dataclass(frozen=True)
class DataSource:
    """The data a run started on: ``data.root`` as given, where it resolved to, and its fingerprint."""

    given: str  # data.root as the config has it
    path: str  # absolute, ~ expanded
    kind: str  # "file" or "folder"
    size: int  # bytes (of a folder: all its files)
    files: int  # 1 for a file
    sha256: str
    content: bool  # whether the bytes went into sha256 (always for a file)

    def to_json(self) -> dict:
        return {
            "version": VERSION,
            "given": self.given,
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "files": self.files,
            "sha256": self.sha256,
            "content": self.content,
        }

    @classmethod
    def from_json(cls, data, source: str) -> "DataSource":
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise DataError(
                f"{source}: its data fingerprint is not of version {VERSION}; delete the 'source' entry "
                "to read the run's data unchecked"
            )
        try:
            return cls(
                str(data["given"]),
                str(data["path"]),
                str(data["kind"]),
                int(data["size"]),
                int(data["files"]),
                str(data["sha256"]),
                bool(data["content"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{source}: malformed data fingerprint ({type(err).__name__}: {err})") from None

    def same_content(self, other: "DataSource") -> bool:
        """Whether ``other`` fingerprints the same data (size, digest and kind; the path may differ)."""
        return (self.size, self.sha256, self.kind) == (other.size, other.sha256, other.kind)

    def describe(self) -> str:
        what = "bytes" if self.content else "names and sizes"
        return f"{self.size} bytes in {self.files} file(s), SHA-256 of its {what} {self.sha256[:12]}"


def absolute(root: str) -> str:
    """``root`` with ``~`` expanded, made absolute against the current folder (links kept)."""
    return os.path.abspath(os.path.expanduser(root))


def locate(root: str | None, recorded: DataSource | None) -> str | None:
    """The path to read a run's data from: the recorded absolute path while the config names the root
    the run started with, else ``root`` itself (``~`` expanded); None for built-in data."""
    if root is None:
        return None
    if recorded is not None and recorded.given == root:
        return recorded.path
    return os.path.expanduser(root)


def fingerprint(root: str | None, path: str | None) -> DataSource | None:
    """The :class:`DataSource` of the data at ``path`` (None for built-in data or nothing there)."""
    if root is None or path is None:
        return None
    p = Path(absolute(path))
    if p.is_file():
        digest, size = hashlib.sha256(), 0
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return DataSource(root, str(p), "file", size, 1, digest.hexdigest(), True)
    if not p.is_dir():
        return None
    entries = sorted((str(f.relative_to(p)), f.stat().st_size) for f in p.rglob("*") if f.is_file())
    total = sum(size for _, size in entries)
    digest = hashlib.sha256()
    content = total <= CONTENT_LIMIT
    for name, size in entries:
        digest.update(f"{name}\0{size}\n".encode())
        if content:
            with open(p / name, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
    return DataSource(root, str(p), "folder", total, len(entries), digest.hexdigest(), content)


def check(recorded: DataSource | None, current: DataSource | None, force: bool, known: bool) -> None:
    """Refuse data that changed since the run started (``force``: warn and go on). ``known`` says the
    run has a data record at all; a record without a fingerprint (an older run) gets one warning."""
    if current is None:
        return
    if recorded is None:
        if known:
            warn(
                f"this run's data fingerprint was not recorded (the run predates it); {current.path} is used "
                "unchecked, and its fingerprint is recorded from now on"
            )
        return
    if recorded.same_content(current):
        return
    message = (
        f"the data at {current.path} is not what this run started on: then {recorded.describe()}, now "
        f"{current.describe()}"
    )
    if force:
        warn(f"{message}; using it anyway (--force), the run no longer follows one data set")
        return
    raise DataError(f"{message}; put the original data back, or pass --force (train --resume, eval) to use this data")
