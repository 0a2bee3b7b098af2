"""F3 theory figures are written as non-empty PNG and PDF files."""

import pytest

from deepfusion.paper_figures import theory_plots as plots


@pytest.fixture(autouse=True)
def fresh_cache():
    plots.recursion_data.cache_clear()
    plots.fusion_region_data.cache_clear()


def _check(paths):
    assert {p.suffix for p in paths} == {".png", ".pdf"}
    for p in paths:
        assert p.stat().st_size > 5_000
    assert paths[0].read_bytes()[:4] == b"\x89PNG"


def test_fusion_region(tmp_path):
    _check(plots.plot_fusion_region(tmp_path / "region", layers=6))


def test_eps_max(tmp_path):
    _check(plots.plot_eps_max(tmp_path / "eps", C_max=10))


def test_recursion_curves(tmp_path):
    _check(plots.plot_recursion_curves(tmp_path / "rec", d=256, layers=5))


def test_single_suffix(tmp_path):
    (p,) = plots.plot_eps_max(tmp_path / "eps.pdf", C_max=5)
    assert p.suffix == ".pdf" and p.stat().st_size > 0
