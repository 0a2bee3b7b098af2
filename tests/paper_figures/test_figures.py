"""Every figure script runs on a tiny results fixture and writes a non-empty PNG and PDF; no training."""

from __future__ import annotations

import csv
import json
import types

import numpy as np
import pytest

from deepfusion.experiments.runs import run_dir_for, run_key, seed_specs
from deepfusion.experiments.studies import ablations, deep_fusion, phase_diagram
from deepfusion.experiments.verdict import LINE
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.paper_figures import (
    f1_attention_maps,
    f2_block_mass,
    f3_theory,
    f4_head_comparison,
    f4b_head_level,
    f5_ablations,
    f6_phase_diagram,
    runs,
)
from tests.paper_figures.conftest import assert_figure_files, fake_analysis, no_train, populate


def _analysed_fixture(results_root, seeds: int = 1):
    specs = seed_specs(f1_attention_maps.main_spec(quick=True), seeds)
    populate(specs, results_root)
    for i, spec in enumerate(specs):
        fake_analysis(run_dir_for(spec.config(), results_root), seed=i)
    return run_dir_for(specs[0].config(), results_root)


def test_f1_attention_maps(tmp_path, results_root):
    _analysed_fixture(results_root)
    records = f1_attention_maps.make(
        tmp_path / "out", quick=True, results_root=results_root, train_fn=no_train, log=None
    )
    assert len(records) == 2
    for r in records:
        assert_figure_files(r.paths)
        assert "--only F1" in r.command and "--quick" in r.command
    # the fixture's head 1 has the larger same-class bias, so it is the chosen head
    assert "head 1" in records[0].title


def test_sort_by_label_gives_block_boundaries():
    labels = np.array([2, 0, 1, 0, 2, 1])
    A = np.arange(36, dtype=float).reshape(6, 6)
    S, ys, bounds = f1_attention_maps.sort_by_label(A, labels)
    assert ys.tolist() == [0, 0, 1, 1, 2, 2] and bounds.tolist() == [2, 4]
    order = np.argsort(labels, kind="stable")
    assert S[0, 1] == A[order[0], order[1]]


def test_f2_block_mass_pools_the_seeds(tmp_path, results_root):
    _analysed_fixture(results_root, seeds=3)
    (record,) = f2_block_mass.make(
        tmp_path / "out", quick=True, results_root=results_root, train_fn=no_train, log=None, seeds=3
    )
    assert_figure_files(record.paths)
    assert "exploratory (3 seeds; rule v3)" in record.caption and len(record.configs) == 3
    study = record.study  # the Deep Fusion study the figure drew: three seeds judged together
    assert study.pooled.verdict.seeds == 3 and study.runs == record.configs
    assert deep_fusion.SeedStudy.from_json(json.loads(json.dumps(study.to_json()))) == study


def test_f3_theory_calls_theory_plots(tmp_path, monkeypatch):
    calls = []

    def fake(name):
        def draw(path):
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots()
            ax.plot([0, 1], [0, 1])
            fig.savefig(path)
            plt.close(fig)
            calls.append((name, path.suffix))

        return draw

    module = types.SimpleNamespace(**{f: fake(f) for f, *_ in f3_theory.PLOTS})
    monkeypatch.setattr(f3_theory, "plots", module)  # the theory_plots module F3 draws with
    records = f3_theory.make(tmp_path / "out", quick=True)
    assert len(records) == 3 and len(calls) == 6
    for r in records:
        assert_figure_files(r.paths)


@pytest.mark.slow  # every theory plot; test_theory_plots draws each, the test above the wiring
def test_f3_theory_real(tmp_path):
    pytest.importorskip("deepfusion.paper_figures.theory_plots")
    for r in f3_theory.make(tmp_path / "out", quick=True):
        assert_figure_files(r.paths)


def test_f4_numbers_come_from_eval_json(tmp_path, results_root):
    seeds = 2
    plan = f4_head_comparison.plan(quick=True, seeds=seeds)
    specs = [s for by_head in plan.values() for ss in by_head.values() for s in ss]
    written = populate(specs, results_root)
    assert len(written) == 4 * seeds
    (record,) = f4_head_comparison.make(
        tmp_path / "out", quick=True, results_root=results_root, seeds=seeds, train_fn=no_train, log=None
    )
    assert_figure_files(record.paths)
    table = next(p for p in record.paths if p.suffix == ".csv")
    rows = {(r["head"], r["metric"]): r for r in csv.DictReader(table.open())}
    assert {h for h, _ in rows} == {"transformer", "mlp", "mlp_nobn", "ffn", "random"}
    ffn = [
        EvalResult.load(run_dir_for(s.config(), results_root) / "eval.json").knn * 100 for s in plan["digits"]["ffn"]
    ]
    assert float(rows["ffn", "knn"]["mean"]) == pytest.approx(np.mean(ffn), abs=0.01)
    assert float(rows["ffn", "knn"]["std"]) == pytest.approx(np.std(ffn, ddof=1), abs=0.01)
    assert rows["ffn", "knn"]["n"] == str(seeds)
    md = next(p for p in record.paths if p.suffix == ".md").read_text()
    assert "Random backbone" in md and f"(n={seeds})" in md
    assert len(record.configs) == 4 * seeds


def test_f5_ablations(tmp_path, results_root):
    plan = f5_ablations.plan(quick=True)
    specs = [s for grid in plan.values() for ss in grid for s in ss]
    written = populate(specs, results_root)
    assert len(written) <= 12  # the quick sweep stays cheap: shared base run counted once
    (record,) = f5_ablations.make(tmp_path / "out", quick=True, results_root=results_root, train_fn=no_train, log=None)
    assert_figure_files(record.paths)
    assert len(record.configs) == len(written)
    assert f"epochs shortened to {f5_ablations.QUICK_EPOCHS}" in record.caption
    study = record.study  # the record the figure drew: every swept value with one accuracy per seed
    assert [s.key for s in study.sweeps] == [s.key for s in ablations.QUICK_SWEEPS]
    assert all(len(s.linear) == len(s.values) and all(len(v) == 1 for v in s.knn) for s in study.sweeps)
    assert ablations.Ablations.from_json(json.loads(json.dumps(study.to_json()))) == study


def test_missing_run_would_train(tmp_path, results_root):
    with pytest.raises(AssertionError, match="tried to train"):
        f2_block_mass.make(tmp_path / "out", quick=True, results_root=results_root, train_fn=no_train, log=None)


def test_attention_figures_reuse_the_f4_transformer_run():
    """F1/F2 analyse seed 0 of F4's transformer runs, so the cache trains it once for all three."""
    f4 = f4_head_comparison.plan(quick=True, seeds=1)["digits"]["transformer"][0]
    assert run_key(f1_attention_maps.main_spec(quick=True).config()) == run_key(f4.config())


def test_paper_plans_resolve_on_the_users_data_folder(tmp_path):
    plan4 = f4_head_comparison.plan(quick=False, data=tmp_path, seeds=2)
    assert list(plan4) == ["cifar10", "cifar100", "tiny_imagenet"]
    cfg = plan4["cifar100"]["mlp_nobn"][1].config()
    assert (cfg.data.name, cfg.model.head, cfg.train.seed, cfg.data.root) == (
        "cifar100",
        "mlp_nobn",
        1,
        str(tmp_path.resolve()),
    )
    plan5 = f5_ablations.plan(quick=False, data=tmp_path)
    depths = [
        grid[0].config().model.depth for s, grids in plan5.items() if s.key == "model.depth" for grid in [grids[0]]
    ]
    assert depths == [ablations.PAPER_SWEEPS[-1].values[0]]
    assert all(ss[0].config().data.name == "cifar10" for grids in plan5.values() for ss in grids)


def test_f4b_head_level(tmp_path, results_root):
    specs = f4b_head_level.needed(quick=False, seeds=2)
    written = populate(specs, results_root)
    assert len(written) == 2 * len(runs.heads()) and len(f4b_head_level.needed(quick=True, seeds=3)) == len(
        runs.heads()
    )
    (record,) = f4b_head_level.make(
        tmp_path / "out", quick=False, results_root=results_root, seeds=2, train_fn=no_train, log=None
    )
    assert_figure_files(record.paths)
    table = (tmp_path / "out" / "f4b_head_level.md").read_text()
    assert all(runs.head_label(h) in table for h in runs.heads()) and "untrained" in table
    cfg = specs[0].config()
    assert cfg.train.freeze_backbone and cfg.model.backbone == "pca"


def test_f6_phase_diagram(tmp_path, results_root):
    specs = f6_phase_diagram.needed(quick=True)
    populate(specs, results_root)
    for i, spec in enumerate(specs):
        fake_analysis(run_dir_for(spec.config(), results_root), L=4, seed=i)
    (record,) = f6_phase_diagram.make(
        tmp_path / "out", quick=True, results_root=results_root, train_fn=no_train, log=None
    )
    assert_figure_files(record.paths)
    assert "rule v3" in record.caption and "S1's boundary" in record.caption and len(record.configs) == 4
    diagram = record.study  # the record the figure drew, with the verdict's line in the caption
    assert [c.cell.ratio for c in diagram.panels["main"]] == [2.0, 8.0, 2.0, 8.0] and diagram.seeds == 1
    assert all(c.outcome == "exploratory" for c in diagram.cells())  # one seed per cell cannot decide
    assert phase_diagram.PhaseDiagram.from_json(json.loads(json.dumps(diagram.to_json()))) == diagram
    assert f"{LINE:g}x line" in record.caption
    cfg = specs[0].config()
    assert cfg.data.name == "theory" and cfg.train.freeze_backbone and cfg.model.backbone == "identity"


def test_f6_draws_a_full_record_with_side_panels(tmp_path):
    """The full diagram (main grid and the three side sweeps) is drawn from a record alone: no runs."""
    rng = np.random.default_rng(0)
    panels = {
        name: [
            phase_diagram.JudgedCell(c, e, [e - 0.1, e + 0.1], "inconclusive", e * 0.9, [])
            for c, e in zip(cells, rng.uniform(1.0, 2.0, len(cells)))
        ]
        for name, cells in phase_diagram.grid(quick=False).items()
    }
    record = phase_diagram.PhaseDiagram(False, 3, panels)
    paths = f6_phase_diagram.plot(record, tmp_path, "f6")
    assert_figure_files(paths)
    assert "3 training seed(s) per cell" in f6_phase_diagram.caption(record)
