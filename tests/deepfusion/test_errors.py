"""The one-line report of an error that came from below."""

import pytest

from deepfusion.errors import first_line


@pytest.mark.parametrize(
    "message, expected",
    [
        ("disk full\nTraceback details", "disk full"),
        ("\n  padded first line  \nmore", "padded first line"),
        ("x" * 300, "x" * 120),
    ],
)
def test_first_line_keeps_the_first_line_within_the_limit(message, expected):
    assert first_line(RuntimeError(message)) == expected


def test_an_empty_message_gives_the_default_or_the_type():
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(MemoryError(), default="out of memory") == "out of memory"
    assert first_line(OSError("abc"), limit=2) == "ab"
