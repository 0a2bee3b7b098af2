"""The index lists every figure made; the CLI checks its arguments and builds figures end to end."""

from __future__ import annotations

import argparse

import pytest

from deepfusion.commands import figures as cli
from deepfusion.errors import ConfigError, DataError
from deepfusion.experiments.runs import run_dir_for, seed_specs
from deepfusion.paper_figures import build, f1_attention_maps, f4_head_comparison, f5_ablations, index
from deepfusion.paper_figures.record import FigureRecord
from tests.paper_figures.conftest import fake_analysis, no_train, populate


def test_index_lists_every_record(tmp_path):
    records = []
    for k in ("F1", "F2", "F3"):
        png = tmp_path / f"{k.lower()}.png"
        png.write_bytes(b"png")
        records.append(
            FigureRecord(
                k,
                f"title {k}",
                [png, tmp_path / f"{k.lower()}.pdf"],
                f"caption {k}",
                f"deepfusion figures --only {k}",
                [f"digits train.seed={k}"],
            )
        )
    md, html = index.write_index(records, tmp_path)
    text, page = md.read_text(), html.read_text()
    for k in ("F1", "F2", "F3"):
        assert f"## {k}. title {k}" in text and f"({k.lower()}.png)" in text and f"caption {k}" in text
        assert f"deepfusion figures --only {k}" in text and f"digits train.seed={k}" in text
        assert f'src="{k.lower()}.png"' in page


def test_parse_only():
    assert build.parse_only("f3, F1") == ["F1", "F3"]
    assert build.parse_only(None) == list(build.FIGURES)
    with pytest.raises(ConfigError, match="F9"):
        build.parse_only("F1,F9")


def _args(tmp_path, **kw):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = ["--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")]
    for k, v in kw.items():
        argv += [f"--{k}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_paper_mode_without_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="--data"):
        cli.run(_args(tmp_path, only="F4"))
    with pytest.raises(DataError, match="does not exist"):
        cli.run(_args(tmp_path, only="F1", data=tmp_path / "nowhere"))


def test_build_all_run_figures_from_fixture_lists_them_in_index(tmp_path):
    root, out = tmp_path / "results", tmp_path / "out"
    seeds = 2
    plan4 = f4_head_comparison.plan(quick=True, seeds=seeds)
    populate([s for by_head in plan4.values() for ss in by_head.values() for s in ss], root)
    populate([s for grid in f5_ablations.plan(quick=True).values() for ss in grid for s in ss], root, seed=1)
    for i, spec in enumerate(seed_specs(f1_attention_maps.main_spec(True), seeds)):
        fake_analysis(run_dir_for(spec.config(), root), seed=i)
    lines = []
    records = build.build_figures(
        out,
        quick=True,
        results_root=root,
        only=["F1", "F2", "F4", "F5"],
        seeds=seeds,
        log=lines.append,
        train_fn=no_train,
    )
    assert [r.key for r in records] == ["F1", "F1", "F2", "F4", "F5"]
    text = (out / "index.md").read_text()
    for r in records:
        assert r.image is not None and r.image.name in text and r.command in text
    assert any(line.startswith("[F4]") and "done" in line for line in lines)
    assert (out / "index.html").is_file()
