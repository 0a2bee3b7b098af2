"""`deepfusion verify`: table, JSON, exit status, and failure reporting."""

import json

import pytest

from deepfusion import cli
from deepfusion.commands import verify
from deepfusion.errors import CheckFailed
from deepfusion.theory.check import Check


def _fake(monkeypatch, checks, broken=()):
    monkeypatch.setattr(verify, "collect_checks", lambda: (list(checks), list(broken)))


def _ok(q):
    return "fine"


def _bad(q):
    raise CheckFailed("claim wrong")


def test_table_has_one_row_per_statement(monkeypatch, tmp_path, capsys):
    _fake(monkeypatch, [Check("S1", k, k, _ok) for k in verify.KINDS] + [Check("S6", "numeric", "n", _ok, quick=False)])
    out = tmp_path / "r.json"
    assert cli.main(["verify", "--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith(("S1 ", "S6 "))]
    assert len(rows) == 2
    assert "skip" in rows[1]
    data = json.loads(out.read_text())
    assert data["quick"] and [r["status"] for r in data["results"]] == ["pass"] * 3 + ["skip"]


def test_failure_exits_nonzero(monkeypatch, capsys):
    _fake(monkeypatch, [Check("S1", "symbolic", "a", _ok), Check("S1", "numeric", "b", _bad)])
    assert cli.main(["verify"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "claim wrong" in captured.out
    assert "S1 numeric" in captured.err


def test_crash_is_an_error_not_a_pass(monkeypatch):
    def crash(q):
        raise ZeroDivisionError("bug")

    _fake(monkeypatch, [Check("S2", "numeric", "c", crash)])
    (res,) = verify.run_checks(False)
    assert res["status"] == "error" and "ZeroDivisionError" in res["summary"]


def test_assert_in_a_check_is_an_error_not_a_fail(monkeypatch):
    # the contract is CheckFailed; an AssertionError would vanish under python -O, so it is flagged
    def asserting(q):
        raise AssertionError("used assert")

    _fake(monkeypatch, [Check("S2", "numeric", "c", asserting)])
    (res,) = verify.run_checks(False)
    assert res["status"] == "error" and "AssertionError" in res["summary"]


def test_broken_module_is_reported(monkeypatch):
    _fake(monkeypatch, [], broken=[("deepfusion.theory.checks_fusion", "ImportError: x")])
    (res,) = verify.run_checks(True)
    assert res["status"] == "error"


def test_only_filters_and_validates(monkeypatch):
    _fake(monkeypatch, [Check("S1", "numeric", "a", _ok), Check("S6", "numeric", "b", _ok)])
    assert [r["statement"] for r in verify.run_checks(True, only={"S6"})] == ["S6"]
    assert cli.main(["verify", "--only", "S16"]) == 2


def test_real_checks_are_collected():
    checks, broken = verify.collect_checks()
    assert not broken
    have = {(c.statement, c.kind) for c in checks}
    for s in verify.STATEMENTS:  # S1-S15: every statement is checked all three ways
        for k in verify.KINDS:
            assert (s, k) in have, (s, k)


@pytest.mark.slow
def test_full_verify_passes():
    assert all(r["status"] == "pass" for r in verify.run_checks(False))
