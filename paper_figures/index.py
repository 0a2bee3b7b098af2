"""The figures index: ``index.md`` and ``index.html`` showing every figure with its caption and command."""

from __future__ import annotations

import html
import os
from pathlib import Path

from deepfusion.model.runs.layout import write_text_atomic
from deepfusion.paper_figures.record import FigureRecord

TITLE = "Deep Fusion: regenerated figures and tables"


def _rel(path: Path, out_dir: Path) -> str:
    # Links relative to the index so the folder can be moved or archived as a whole.
    return Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()


def write_markdown(records: list[FigureRecord], out_dir: str | Path) -> Path:
    """Write ``index.md``: one section per record with image, caption, files, command and configs."""
    out = Path(out_dir)
    lines = [f"# {TITLE}", ""]
    for r in records:
        lines += [f"## {r.key}. {r.title}", ""]
        if r.image is not None:
            lines += [f"![{r.key}: {r.title}]({_rel(r.image, out)})", ""]
        lines += [r.caption, ""]
        files = ", ".join(f"[{Path(p).name}]({_rel(p, out)})" for p in r.paths)
        lines += [f"Files: {files}", "", "Command:", "", "```", r.command, "```", ""]
        if r.configs:
            lines += ["Runs (preset + overrides, config hash):", ""]
            lines += [f"- `{c}`" for c in r.configs]
            lines.append("")
    path = out / "index.md"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines))
    return path


def anchors(records: list[FigureRecord]) -> list[str]:
    """One HTML id per record, unique: the key, then ``key-2``, ``key-3`` for a key's later records."""
    seen: dict[str, int] = {}
    out = []
    for r in records:
        seen[r.key] = seen.get(r.key, 0) + 1
        out.append(r.key if seen[r.key] == 1 else f"{r.key}-{seen[r.key]}")
    return out


def write_html(records: list[FigureRecord], out_dir: str | Path) -> Path:
    """Write ``index.html``: the same content as ``index.md`` for a browser."""
    out = Path(out_dir)
    e = html.escape
    body = [f"<h1>{e(TITLE)}</h1>"]
    for r, anchor in zip(records, anchors(records)):
        body.append(f'<h2 id="{e(anchor)}">{e(r.key)}. {e(r.title)}</h2>')
        if r.image is not None:
            body.append(f'<img src="{e(_rel(r.image, out))}" alt="{e(r.key)}" style="max-width:100%">')
        body.append(f"<p>{e(r.caption)}</p>")
        links = ", ".join(f'<a href="{e(_rel(p, out))}">{e(Path(p).name)}</a>' for p in r.paths)
        body.append(f"<p>Files: {links}</p>")
        body.append(f"<pre>{e(r.command)}</pre>")
        if r.configs:
            items = "".join(f"<li><code>{e(c)}</code></li>" for c in r.configs)
            body.append(f"<details><summary>Runs ({len(r.configs)})</summary><ul>{items}</ul></details>")
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{e(TITLE)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
        "pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    path = out / "index.html"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, page)
    return path


def write_index(records: list[FigureRecord], out_dir: str | Path) -> list[Path]:
    """Write both index files; returns their paths (Markdown first)."""
    return [write_markdown(records, out_dir), write_html(records, out_dir)]
