"""F3 theory figures draw what the theory says: the plotted values are the closed forms and the
recursion, the fusion map separates fusing from stalled settings, and the files are real images."""

import matplotlib.image
import numpy as np
import pytest

from deepfusion.paper_figures import theory_plots as plots
from deepfusion.theory import bounds
from deepfusion.theory.fusion import mean_field


@pytest.fixture(autouse=True)
def fresh_cache():
    plots.recursion_data.cache_clear()
    plots.fusion_region_data.cache_clear()


def test_eps_max_curve_is_the_closed_form_and_the_bound_lies_below_it():
    fig = plots.figure_eps_max(C_max=10)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    exact = next(v for k, v in lines.items() if "exact" in k)
    simple = next(v for k, v in lines.items() if "Cauchy" in k)
    C = exact.get_xdata()
    np.testing.assert_allclose(exact.get_ydata(), bounds.eps_max(bounds.etf_rho(C)))
    assert np.all(simple.get_ydata() <= exact.get_ydata() + 1e-12)


def test_fusion_region_fuses_at_moderate_beta_and_stalls_in_the_trap():
    beta, r0, ratio, a_self = plots.fusion_region_data(layers=6, size=40)
    low_r = np.argmin(np.abs(r0 - 0.3))
    mid_beta, high_beta = np.argmin(np.abs(beta - 5.0)), len(beta) - 1
    assert ratio[low_r, mid_beta] < -1  # r shrinks tenfold within 6 layers
    assert a_self[-1, high_beta] > 0.5 and ratio[-1, high_beta] > -0.1  # large beta*r0: the token keeps to itself


def test_recursion_curves_plot_the_recursion_and_the_simulation(tmp_path):
    fig = plots.figure_recursion_curves(d=256, layers=5)
    data = plots.recursion_data(d=256, layers=5)
    r_axis = fig.axes[0]
    for name, v in data.items():
        mf = mean_field(plots.FIG_C, plots.FIG_N, v["beta"], v["alpha"], v["sim_r"][0], 5)
        drawn = [line.get_ydata() for line in r_axis.get_lines() if len(line.get_ydata()) == 6]
        assert any(np.allclose(y, mf.r) for y in drawn), name
        assert any(np.allclose(y, v["sim_r"]) for y in drawn), name


@pytest.mark.parametrize(
    "make", [lambda p: plots.plot_eps_max(p, C_max=5), lambda p: plots.plot_fusion_region(p, layers=3)]
)
def test_files_are_images_with_content(tmp_path, make):
    paths = make(tmp_path / "fig")
    assert {p.suffix for p in paths} == {".png", ".pdf"}
    png = matplotlib.image.imread(paths[0])
    assert png.shape[0] > 200 and png.shape[1] > 300  # 200 dpi at column width
    assert png[..., :3].std() > 0.05  # not a blank canvas
    assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_single_suffix(tmp_path):
    (p,) = plots.plot_eps_max(tmp_path / "eps.pdf", C_max=5)
    assert p.suffix == ".pdf" and p.read_bytes()[:5] == b"%PDF-"
