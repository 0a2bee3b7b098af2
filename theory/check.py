"""A check of one statement, as run by ``deepfusion verify`` and by the tests.

Each statement S1..S12 is checked three ways (symbolic, numeric, property). Every way is a plain
function that raises :class:`deepfusion.errors.CheckFailed` when the statement or the code is wrong
and otherwise returns a one-line summary of what it established.

The contract is an explicit ``raise``, never ``assert``: ``python -O`` (or ``PYTHONOPTIMIZE=1``)
strips assert statements, and a check made of them would then pass a broken formula. Check code,
sympy derivations and Hypothesis properties call :func:`require` instead. ``deepfusion verify``
reports a ``CheckFailed`` as FAIL and any other exception (an ``AssertionError`` included) as ERROR;
both make it exit non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import sympy as sp

from deepfusion.errors import CheckFailed

Kind = Literal["symbolic", "numeric", "property"]


def require(condition, message="check failed") -> None:
    """Raise ``CheckFailed(message)`` unless ``condition`` is true; survives ``python -O``.

    ``message`` may be any object (a tuple of the failing values, say); it is turned into text."""
    if not bool(condition):
        raise CheckFailed(message if isinstance(message, str) else repr(message))


@dataclass(frozen=True)
class Check:
    statement: str  # "S1" .. "S12"
    kind: Kind
    name: str
    run: Callable[[bool], str]  # run(quick) -> summary; raises CheckFailed on failure
    quick: bool = True  # part of `deepfusion verify --quick`


def run_properties(properties) -> Callable[[bool], str]:
    """A check's ``run`` that calls each Hypothesis property (a ``@given`` function, no arguments)."""

    def run(quick: bool) -> str:
        for prop in properties:
            prop()
        return f"{len(properties)} properties hold: {', '.join(p.__name__ for p in properties)}"

    return run


def agree_at_points(label, expr, symbols, numeric, points, tol=1e-10) -> float:
    """Evaluate the sympy ``expr`` (in ``symbols``) and the numeric code ``numeric`` at each of
    ``points`` (tuples in the order of ``symbols``); raise CheckFailed unless they agree to ``tol``
    (relative, or absolute below 1). Returns the worst disagreement."""
    f = sp.lambdify(symbols, expr, "numpy")
    worst = 0.0
    for p in points:
        got, want = float(f(*p)), float(numeric(*p))
        err = abs(got - want) / max(1.0, abs(want))
        worst = max(worst, err)
        require(err < tol, f"{label}: derived {got!r} vs code {want!r} at {dict(zip(map(str, symbols), p))}")
    return worst
