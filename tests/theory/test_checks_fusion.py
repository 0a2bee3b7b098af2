"""The S2-S5, S7 checks: they pass on the code as it is, each names its statement and kind, and the
properties and checks are wired to the statements they claim (see test_planted_bugs for failures)."""

import re
import warnings
from pathlib import Path

import pytest

from deepfusion.theory import properties_fusion
from deepfusion.theory.checks_fusion import CHECKS, M_TOL, R_TOL, s2_counterexample, s5_gaps

THEORY = (Path(__file__).parents[2] / "theory" / "THEORY.md").read_text()


def test_every_statement_has_all_three_kinds():
    kinds = {(c.statement, c.kind) for c in CHECKS}
    for s in ("S2", "S3", "S4", "S5", "S7"):
        assert {(s, k) for k in ("symbolic", "numeric", "property")} <= kinds


@pytest.mark.parametrize(
    "check",
    [c for c in CHECKS if c.quick and not (c.statement == "S5" and c.kind == "numeric")],
    ids=lambda c: f"{c.statement}-{c.kind}",
)
def test_quick_check_passes(check):
    summary = check.run(True)
    # symbolic rows compare derived expressions with the code and say how closely they agree
    if check.kind == "symbolic":
        worst = float(re.search(r"code agrees to ([0-9.e+-]+)", summary).group(1))
        assert worst < 1e-10


def test_s5_simulation_matches_recursion_in_every_regime():
    gaps = s5_gaps()
    for name, row in gaps.items():
        assert row["centred"][0] < M_TOL and row["centred"][1] < R_TOL, (name, row)
    assert gaps["stall"]["r_ratio_sim"] > 0.99 and gaps["fast"]["r_ratio_sim"] < 0.01


def test_non_simplex_deviations_are_a_counterexample_to_the_layer_map():
    # equal norms, zero class mean, but not a regular simplex: the map misses by percents
    assert s2_counterexample() > 0.02


@pytest.mark.parametrize(
    "statement, prop",
    [(s, p) for s, ps in properties_fusion.PROPERTIES.items() for p in ps],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_property_names_its_statement_and_is_documented(statement, prop):
    assert prop.__doc__.lstrip().startswith(statement), prop.__name__
    assert prop.__name__ in THEORY, f"{prop.__name__} is not listed under its statement in THEORY.md"


def test_no_property_is_listed_twice():
    props = [p for ps in properties_fusion.PROPERTIES.values() for p in ps]
    assert len(props) == len(set(props))


@pytest.mark.filterwarnings("ignore:Using `assume` outside")  # the inner test is called directly
def test_s3_property_skips_s2s_singular_point():
    # C=2, m=0, alpha=1 makes 1 + alpha kappa(m) = 0, outside S2's hypothesis: the property must
    # reject the draw, not divide by zero (verify printed a RuntimeWarning when Hypothesis drew it).
    from hypothesis.errors import UnsatisfiedAssumption

    inner = properties_fusion.s3_spread_shrinks_iff_same_beats_out.hypothesis.inner_test
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(UnsatisfiedAssumption):
            inner(2, 2, (0.0, 0.0, 0.5), 1.0)
