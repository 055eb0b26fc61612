"""Options models made from signatures: defaults from the function, ranges from one table."""

from __future__ import annotations

import doctest
from typing import Annotated

import pytest
from pydantic import Field

from tinylarge import bounds
from tinylarge.bounds import check_options, signature_model
from tinylarge.errors import TinylargeError

Count = Annotated[int, Field(ge=1, le=10)]
Rate = Annotated[float, Field(gt=0, lt=1)]


def builder(*, input_shape: tuple[int, ...], count: int = 3, rate: float = 0.5) -> None:
    """A function with keyword options, as zoo builders and partitioners have."""


def test_defaults_come_from_the_signature_and_skipped_names_stay_out() -> None:
    model = signature_model("b", builder, {"count": Count, "rate": Rate}, skip=("input_shape",))
    assert list(model.model_fields) == ["count", "rate"]
    assert model().model_dump() == {"count": 3, "rate": 0.5}


def test_a_parameter_without_a_range_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="option 'rate' has no range"):
        signature_model("b", builder, {"count": Count}, skip=("input_shape",))


def test_only_the_given_options_come_back_converted() -> None:
    model = signature_model("b", builder, {"count": Count, "rate": Rate}, skip=("input_shape",))
    assert check_options(model, {"count": 2.0}, what="b") == {"count": 2}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "b: count must be >= 1, got 0"),
        ({"count": 11}, "b: count must be <= 10, got 11"),
        ({"rate": 1.0}, "b: rate must be < 1, got 1.0"),
        ({"rate": 0}, "b: rate must be > 0, got 0"),
        ({"rate": float("nan")}, "b: rate: Input should be a finite number"),
        ({"size": 1}, "b: unknown option size; allowed: count, rate"),
        ({"count": 0, "rate": 2}, "b: count must be >= 1, got 0; rate must be < 1, got 2"),
    ],
)
def test_every_problem_is_named_on_one_line(options: dict[str, object], message: str) -> None:
    model = signature_model("b", builder, {"count": Count, "rate": Rate}, skip=("input_shape",))
    with pytest.raises(TinylargeError) as info:
        check_options(model, options, what="b")
    assert str(info.value) == message


def test_docstring_examples() -> None:
    result = doctest.testmod(bounds)
    assert result.attempted > 0
    assert result.failed == 0
