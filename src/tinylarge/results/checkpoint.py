"""Checkpoints that cannot run code: tensors in an ``.npz``, everything else in JSON.

A scheme's state (:meth:`tinylarge.schemes.base.Scheme.state`) is a tree of
dicts (string, integer or tuple keys), lists, tuples, JSON scalars, numpy
arrays and torch tensors (optimizer states). :func:`encode` turns it into a
JSON tree in which every array is a reference, and the arrays themselves; one
``.npz`` file holds both (the JSON as a byte array under :data:`STATE_KEY`).
:func:`load` reads it with ``numpy.load(allow_pickle=False)``: object arrays
and pickles are refused, so opening a checkpoint someone sent you never
executes anything. Older runs' ``checkpoint.pkl`` files are never read.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinylarge.errors import TinylargeError

#: Name of the JSON tree inside the ``.npz``.
STATE_KEY = "__state__"


class CheckpointError(TinylargeError):
    """A checkpoint file that is not one tinylarge writes."""


def encode(state: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """``(json_tree, arrays)`` of a state tree (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {}

    def enc(v: Any, path: str) -> Any:
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise TypeError(f"checkpoint: object array at {path} cannot be stored")
            key = f"a{len(arrays)}"
            arrays[key] = v
            return {"__array__": key}
        if isinstance(v, np.generic):
            return enc(np.asarray(v), path)
        if type(v).__module__.startswith("torch") and hasattr(v, "detach"):
            key = f"a{len(arrays)}"
            arrays[key] = v.detach().cpu().numpy()
            return {"__tensor__": key}
        if isinstance(v, tuple):
            return {"__tuple__": [enc(x, f"{path}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [enc(x, f"{path}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, (set, frozenset)):
            return {"__set__": [enc(x, f"{path}{{}}") for x in sorted(v)]}
        if isinstance(v, Mapping):
            return {"__dict__": [[enc(k, path), enc(x, f"{path}.{k}")] for k, x in v.items()]}
        raise TypeError(f"checkpoint: {type(v).__name__} at {path} cannot be stored")

    return enc(state, "state"), arrays


def decode(tree: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The state tree back from :func:`encode`'s output."""
    if isinstance(tree, list):
        return [decode(x, arrays) for x in tree]
    if not isinstance(tree, dict):
        return tree
    if "__array__" in tree:
        return arrays[tree["__array__"]]
    if "__tensor__" in tree:
        import torch

        return torch.from_numpy(np.array(arrays[tree["__tensor__"]]))
    if "__float__" in tree:
        return float(tree["__float__"])
    if "__tuple__" in tree:
        return tuple(decode(x, arrays) for x in tree["__tuple__"])
    if "__set__" in tree:
        return {_key(decode(x, arrays)) for x in tree["__set__"]}
    if "__dict__" in tree:
        return {_key(decode(k, arrays)): decode(v, arrays) for k, v in tree["__dict__"]}
    raise CheckpointError(f"checkpoint: unknown entry {sorted(tree)}")


def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def to_bytes(state: Any) -> bytes:
    """The ``.npz`` bytes of a state tree."""
    tree, arrays = encode(state)
    blob = np.frombuffer(json.dumps(tree, allow_nan=False).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    save: Any = np.savez  # numpy's stub types ``**kwds`` as if one could be ``allow_pickle``
    save(buf, allow_pickle=False, **{STATE_KEY: blob}, **arrays)
    return buf.getvalue()


def load(path: Path) -> Any:
    """The state tree in ``path``, read without unpickling anything."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} is not a tinylarge checkpoint (an .npz of arrays and JSON): {exc}"
        ) from None
    blob = arrays.pop(STATE_KEY, None)
    if blob is None or blob.dtype != np.uint8:
        raise CheckpointError(f"{path} is not a tinylarge checkpoint: no {STATE_KEY} entry")
    try:
        tree = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: its state is not JSON: {exc}") from None
    try:
        return decode(tree, arrays)
    except (KeyError, TypeError, ValueError, RecursionError) as exc:  # not encode()'s
        raise CheckpointError(f"{path} is not a tinylarge checkpoint: {exc!r}") from None
