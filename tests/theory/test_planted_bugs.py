"""Planted bugs are caught: each one-token mutation of the theory code (planted_bugs.BUGS) makes the
check rows named here fail, in process and, for one bug, in a ``python -O`` subprocess of
``deepfusion verify`` (asserts stripped), which must still exit non-zero."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import planted_bugs
import pytest

from deepfusion.commands import verify
from deepfusion.errors import CheckFailed

# bug -> the (statement, kind) rows that must fail with it (what `deepfusion verify --quick` reports)
CAUGHT_BY = {
    "layer_map_abs": [("S2", "property")],
    "etf_snap_1e-3": [("S2", "numeric"), ("S2", "property")],
    "separated_strict": [("S1", "property")],
    "chi2_law_d_minus_1": [("S6", "symbolic")],
    "chi2_exceed_d_minus_1": [("S6", "symbolic"), ("S6", "numeric")],
    "chi2_crossing_d_minus_1": [("S6", "symbolic"), ("S6", "numeric")],
    "relu_cross_unclamped": [("S1", "property"), ("S4", "numeric")],
    "half_crossing_plus_one": [("S6", "numeric")],
    "half_crossing_right_end": [("S6", "numeric")],
    "s8_self_term": [("S8", "symbolic"), ("S8", "numeric"), ("S8", "property")],
    "s9_deviation_eigenvalue": [("S9", "symbolic"), ("S9", "numeric"), ("S9", "property")],
    "s10_bound_without_sqrt2": [("S10", "numeric"), ("S10", "property")],
    "s10_pre_ln_alpha_d": [("S10", "symbolic"), ("S10", "numeric"), ("S10", "property")],
    "s11_margin_sign": [("S11", "symbolic"), ("S11", "property")],
    "s12_upper_bound": [("S12", "symbolic"), ("S12", "numeric"), ("S12", "property")],
    "s5b_eta": [("S5", "symbolic")],
    "s8_m_star_nu": [("S8", "numeric"), ("S8", "property")],
    "s5b_centring_unsquared": [("S5", "symbolic")],
    "s5b_signed_max": [("S5", "numeric")],
    "s13_drift_power": [("S13", "numeric"), ("S13", "property")],
    "s13_no_centring": [("S13", "numeric")],
    "s14_force_half": [("S14", "numeric")],
    "s14_bracket_C": [("S14", "symbolic"), ("S14", "numeric")],
    "s15_logit_sign": [("S15", "numeric")],
}


def _checks(statement, kind):
    """The checks of one (statement, kind) cell; S5's cells hold both the S5 and the S5b rows, and the
    S5b bug is caught by the S5b row only, so a cell fails when any of its checks fails."""
    found = [c for c in planted_bugs.unshrunk_checks() if c.statement == statement and c.kind == kind]
    assert found
    return found


def test_the_unshrunk_checks_are_the_checks_verify_runs():
    checks, broken = verify.collect_checks()
    assert not broken
    assert [(c.statement, c.kind, c.name) for c in planted_bugs.unshrunk_checks()] == [
        (c.statement, c.kind, c.name) for c in checks
    ]


def test_every_planted_bug_has_catchers():
    assert set(CAUGHT_BY) == set(planted_bugs.BUGS)


def _fails(check):
    try:
        check.run(True)
    except CheckFailed:
        return True
    return False


@pytest.mark.parametrize("bug, statement, kind", [(b, s, k) for b, rows in CAUGHT_BY.items() for s, k in rows])
def test_planted_bug_fails_its_check(bug, statement, kind, monkeypatch):
    checks = _checks(statement, kind)
    assert _passes_on_the_real_code(statement, kind)
    planted_bugs.plant(bug, monkeypatch)
    assert any(_fails(c) for c in checks), f"{bug} survives {statement} {kind}"


@functools.cache  # several bugs share a cell; the real code is the same for each of them
def _passes_on_the_real_code(statement, kind) -> bool:
    return not any(_fails(c) for c in _checks(statement, kind))


def _verify_under_O(tmp_path, bug, only):
    """`python -O -m deepfusion verify --quick --only <only>` with `bug` planted by a sitecustomize."""
    site = tmp_path / "site"
    site.mkdir()
    if bug:
        (site / "sitecustomize.py").write_text(
            "import sys\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import planted_bugs\n"
            "planted_bugs.load_profile()\n"
            f"planted_bugs.plant({bug!r})\n"
        )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-O", "-m", "deepfusion", "verify", "--quick", "--only", only],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # a fresh interpreter importing torch, sympy and scipy: 10-20 s
def test_verify_under_python_O_fails_on_a_planted_bug(tmp_path):
    out = _verify_under_O(tmp_path, "layer_map_abs", "S2")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "S2 property fail" in " ".join(out.stdout.split()), out.stdout
    assert "CheckFailed" in out.stdout  # a failed check (FAIL), not a crash (ERROR)


@pytest.mark.slow
def test_verify_under_python_O_passes_without_a_bug(tmp_path):  # the control of the test above
    out = _verify_under_O(tmp_path, None, "S2")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_verify_under_python_O_catches_a_dynamics_bug(tmp_path):
    """S13-S15 checks also fail by CheckFailed under python -O (asserts stripped)."""
    out = _verify_under_O(tmp_path, "s14_force_half", "S14")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "S14 numeric fail" in " ".join(out.stdout.split()), out.stdout


@pytest.mark.slow
def test_verify_under_python_O_passes_the_dynamics_statements(tmp_path):
    out = _verify_under_O(tmp_path, None, "S13,S14,S15")
    assert out.returncode == 0, out.stdout + out.stderr
