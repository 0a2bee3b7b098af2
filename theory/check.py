"""A check of one statement, as run by ``deepfusion verify`` and by the tests.

Each statement S1..S7 is checked three ways (symbolic, numeric, property); every
way is a plain function that raises ``AssertionError`` when the statement or the
code is wrong and otherwise returns a one-line summary of what it established.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

Kind = Literal["symbolic", "numeric", "property"]


@dataclass(frozen=True)
class Check:
    statement: str  # "S1" .. "S7"
    kind: Kind
    name: str
    run: Callable[[bool], str]  # run(quick) -> summary; raises AssertionError on failure
    quick: bool = True  # part of `deepfusion verify --quick`


def run_properties(properties) -> Callable[[bool], str]:
    """A check's ``run`` that calls each Hypothesis property (a ``@given`` function, no arguments)."""

    def run(quick: bool) -> str:
        for prop in properties:
            prop()
        return f"{len(properties)} properties hold: {', '.join(p.__name__ for p in properties)}"

    return run
