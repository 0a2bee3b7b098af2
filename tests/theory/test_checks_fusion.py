"""Every S2-S5, S7 check passes in quick mode and names its statement and kind."""

import pytest

from deepfusion.theory import properties_fusion
from deepfusion.theory.checks_fusion import CHECKS, M_TOL, R_TOL, s5_gaps


def test_every_statement_has_all_three_kinds():
    kinds = {(c.statement, c.kind) for c in CHECKS}
    for s in ("S2", "S3", "S4", "S5", "S7"):
        assert {(s, k) for k in ("symbolic", "numeric", "property")} <= kinds


@pytest.mark.parametrize("check", [c for c in CHECKS if c.quick and not (c.statement == "S5" and c.kind == "numeric")],
                         ids=lambda c: f"{c.statement}-{c.kind}")
def test_quick_check_passes(check):
    summary = check.run(True)
    assert isinstance(summary, str) and summary


def test_s5_simulation_matches_recursion_in_every_regime():
    gaps = s5_gaps()
    for name, row in gaps.items():
        assert row["centred"][0] < M_TOL and row["centred"][1] < R_TOL, (name, row)
    assert gaps["stall"]["r_ratio_sim"] > 0.99 and gaps["fast"]["r_ratio_sim"] < 0.01


def test_every_property_is_listed_once():
    props = [p for ps in properties_fusion.PROPERTIES.values() for p in ps]
    assert len(props) == len(set(props)) == 11
