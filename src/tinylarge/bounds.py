"""Ranges at the boundary: a function's keyword options as a bounded pydantic model.

Zoo builders (:mod:`tinylarge.models.zoo`) and partitioners
(:mod:`tinylarge.data.partition`) take keyword options whose defaults live in
their signatures. :func:`signature_model` turns such a signature and one table
of ranges (one range per option name) into a frozen pydantic model that
refuses unknown options, wrong types, non-finite floats and values out of
range; the experiment config (``tinylarge validate``) and the functions
themselves check options with the same model, so a value either side accepts
is one the code can survive.

>>> from typing import Annotated
>>> from pydantic import Field
>>> def build(*, width: int = 16) -> None: ...
>>> Model = signature_model("build", build, {"width": Annotated[int, Field(ge=1, le=64)]})
>>> Model(width=8).width
8
>>> check_options(Model, {"width": 0}, what="model 'x'")
Traceback (most recent call last):
...
tinylarge.errors.TinylargeError: model 'x': width must be >= 1, got 0
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tinylarge.errors import TinylargeError


def signature_model(
    name: str,
    fn: Callable[..., Any],
    ranges: Mapping[str, Any],
    *,
    skip: Collection[str] = (),
) -> type[BaseModel]:
    """The options model of ``fn``'s keyword-only parameters (except ``skip``): each typed
    by ``ranges[name]`` (a bounded ``Annotated`` type), defaulting to the signature's default.

    Raises:
        KeyError: a parameter has no range (a programming error: add it to ``ranges``).
    """
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in skip:
            if p.name not in ranges:
                raise KeyError(f"{name}: option {p.name!r} has no range")
            fields[p.name] = (ranges[p.name], p.default)
    config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    model: type[BaseModel] = create_model(f"{name}_options", __config__=config, **fields)
    return model


#: pydantic error types of a range, and how they read: ``width must be >= 1, got 0``.
_RANGE_WORDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


def _number(value: object) -> str:
    """A bound as people write it: ``1`` rather than pydantic's ``1.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


def describe_errors(exc: ValidationError, *, model: type[BaseModel]) -> str:
    """Every problem of ``exc`` in a few words, joined by ``"; "`` (one line)."""
    allowed = ", ".join(model.model_fields) or "none"
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "options"
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(f"unknown option {where}; allowed: {allowed}")
        elif kind in _RANGE_WORDS:
            key, words = _RANGE_WORDS[kind]
            bound = _number(err.get("ctx", {}).get(key))
            problems.append(f"{where} must be {words} {bound}, got {err['input']!r}")
        else:
            problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def check_options(
    model: type[BaseModel], options: Mapping[str, Any], *, what: str
) -> dict[str, Any]:
    """``options`` checked by ``model``: the given ones, converted (``2.0`` becomes ``2``), or a
    :class:`~tinylarge.errors.TinylargeError` of one line starting with ``what``."""
    try:
        checked = model.model_validate(dict(options))
    except ValidationError as exc:
        raise TinylargeError(f"{what}: {describe_errors(exc, model=model)}") from None
    return checked.model_dump(include=set(options))
