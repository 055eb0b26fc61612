"""The docstring examples of the network modules run as tests."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from tinylarge.network import cell, lora, radio, tr38901


@pytest.mark.parametrize("module", [cell, lora, radio, tr38901], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
