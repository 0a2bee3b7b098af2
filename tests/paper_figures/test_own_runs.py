"""deepfusion figures --run: the user's own analysed runs drawn, titled, with a reproducing command."""

import re
import shlex

import pytest
from conftest import assert_figure_files, fake_analysis

from deepfusion.cli import main
from deepfusion.errors import ConfigError
from deepfusion.model.runs.config import load_config, save_config
from deepfusion.model.runs.layout import RunFolder
from deepfusion.paper_figures import own_runs


def analysed_runs(root, seeds=(1, 2), extra=()):
    dirs = []
    for s in seeds:
        run_dir = root / f"mine_s{s}"
        run_dir.mkdir(parents=True)
        save_config(load_config("synthetic", [f"train.seed={s}", *extra]), RunFolder(run_dir).config)
        fake_analysis(run_dir, seed=s)
        dirs.append(run_dir)
    return dirs


def test_maps_per_run_and_one_ratio_plot_pooled_over_seeds(tmp_path):
    dirs = analysed_runs(tmp_path / "runs")
    records = own_runs.make(dirs, tmp_path / "out", log=lambda *_: None)
    assert len(records) == 3  # two map figures, one ratio plot
    for r in records:
        assert_figure_files(r.paths)
        assert "synthetic" in r.title
    assert records[0].title.startswith("Attention of run mine_s1 on synthetic")
    assert records[1].title.startswith("Attention of run mine_s2 on synthetic")
    ratio = records[-1]
    assert "mine_s1, mine_s2" in ratio.caption
    assert "Band: t-interval over the 2 seeds" in ratio.caption and "no error bars" in ratio.caption
    assert "Verdict over the seeds: exploratory (2 seeds" in ratio.caption


def test_runs_of_different_configs_are_drawn_side_by_side_not_pooled(tmp_path):
    dirs = analysed_runs(tmp_path / "a", seeds=(1,)) + analysed_runs(
        tmp_path / "b", seeds=(1,), extra=["loss.temperature=0.5"]
    )
    dirs[1] = dirs[1].rename(dirs[1].parent / "other_s1")
    ratio = own_runs.make(dirs, tmp_path / "out", log=lambda *_: None)[-1]
    assert "not pooled" in ratio.caption and "mine_s1, other_s1" in ratio.title


def test_cli_index_has_unique_ids_and_commands_that_write_where_the_index_stands(tmp_path, capsys):
    dirs = analysed_runs(tmp_path / "runs")
    out = tmp_path / "my figures"
    assert main(["figures", *[a for d in dirs for a in ("--run", str(d))], "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == 3 and len(set(ids)) == 3
    command = re.findall(r"<pre>(.*?)</pre>", page)[0].replace("&#x27;", "'")
    assert shlex.split(command)[-2:] == ["--out", str(out)]


def test_run_cannot_be_combined_with_the_paper_figures_options(tmp_path):
    with pytest.raises(ConfigError, match="cannot be combined with --quick"):
        import argparse

        from deepfusion.commands import figures

        parser = argparse.ArgumentParser()
        figures.add_arguments(parser)
        figures.run(parser.parse_args(["--run", str(tmp_path), "--quick"]))


def test_a_run_given_twice_is_refused(tmp_path):
    from deepfusion.errors import DataError

    dirs = analysed_runs(tmp_path / "runs", seeds=(1,))
    with pytest.raises(DataError, match="given twice"):
        own_runs.make(dirs * 2, tmp_path / "out")


def test_figures_run_takes_a_glob_like_analyze(tmp_path, capsys):
    from deepfusion.cli import main

    rc = main(["figures", "--run", str(tmp_path / "none_s*"), "--out", str(tmp_path / "figs")])
    assert rc != 0 and "matches no folder" in capsys.readouterr().err
    assert not (tmp_path / "figs").exists()
