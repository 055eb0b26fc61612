"""Choices loaded on first use: argparse sees a container, the registry loads late."""

from __future__ import annotations

import argparse
import doctest

import pytest

from tinylarge.cli import _choices
from tinylarge.cli._choices import LazyChoices


def test_names_load_once_and_only_when_asked() -> None:
    calls: list[int] = []

    def load() -> list[str]:
        calls.append(1)
        return ["a", "b"]

    choices = LazyChoices(load)
    parser = argparse.ArgumentParser(prog="p", exit_on_error=False)
    parser.add_argument("--x", metavar="NAME", choices=choices, help="one of %(choices)s")
    assert calls == []  # building the parser does not load them
    assert parser.parse_args([]).x is None
    assert calls == []
    assert parser.parse_args(["--x", "b"]).x == "b"
    assert "one of a, b" in parser.format_help()
    with pytest.raises(argparse.ArgumentError, match="invalid choice: 'c'"):
        parser.parse_args(["--x", "c"])
    assert calls == [1]


def test_docstring_examples() -> None:
    result = doctest.testmod(_choices)
    assert result.attempted > 0
    assert result.failed == 0
