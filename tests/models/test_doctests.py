"""Docstring examples of the models package run as tests."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from tinylarge.models import files, memory, profiler, zoo


@pytest.mark.parametrize("module", [files, memory, profiler, zoo], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
