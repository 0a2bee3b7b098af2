"""What a figure script returns: the files it wrote and how to make them again."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FigureRecord:
    """One figure or table of the paper as regenerated here.

    ``paths`` lists the files written (the PNG first when there is one, then the PDF, then
    tables). ``caption`` says what is shown and from which data; ``command`` is the exact
    command line that regenerates it; ``configs`` names every run it draws on, as a preset
    plus ``key=value`` overrides (and the config hash where a run was made). ``study`` is the
    record the figure drew (F2: the pooled ``PooledAnalysis``; F4: its table rows), kept so that
    ``reproduce`` prints from it instead of reading files back; None where a figure has none.
    """

    key: str  # "F1" .. "F5"
    title: str
    paths: list[Path]
    caption: str
    command: str
    configs: list[str] = field(default_factory=list)
    study: object = None

    @property
    def image(self) -> Path | None:
        """The PNG to show in the index, if the record has one."""
        return next((p for p in self.paths if p.suffix == ".png"), None)


def figures_command(
    key: str,
    quick: bool,
    data: str | Path | None = None,
    results_root: str | Path | None = None,
    extra: list[str] | None = None,
) -> str:
    """The ``deepfusion figures`` command line that regenerates figure ``key`` alone."""
    parts = ["deepfusion", "figures"]
    if quick:
        parts.append("--quick")
    if data is not None:
        parts += ["--data", str(data)]
    if results_root is not None:
        parts += ["--results", str(results_root)]
    parts += ["--only", key]
    parts += list(extra or [])
    return shlex.join(parts)


def with_out(command: str, out_dir: str | Path) -> str:
    """``command`` with ``--out out_dir`` added (when it has none), so it writes where the index stands."""
    parts = shlex.split(command)
    return command if "--out" in parts else shlex.join(parts + ["--out", str(out_dir)])
