"""``tinylarge export RUN --format c-source``: a fully-int8 ``.tflite`` as a C99 library.

The generated library needs no interpreter, no flatbuffer and no heap: the
weights are ``static const`` arrays, every activation lives in one static
arena planned ahead of time, and ``<prefix>_invoke(in, out)`` calls the
kernels of ``tl_kernels.c`` in order. The kernels reproduce TensorFlow Lite
Micro's reference integer kernels (per-channel weights, MultiplyByQuantizedMultiplier
requantization, TFLite's int8 softmax), so the outputs equal the
interpreter's bit for bit; the tests check this on whole test sets.

Supported operators: :data:`~tinylarge.compress.csource.lower.SUPPORTED`.
Any other operator, or a hybrid/float model, is a one-line
:class:`~tinylarge.errors.TinylargeError` naming the operator, and nothing is
written: the files are generated in a temporary directory renamed into place
at the end.

Files: ``tl_kernels.h``, ``tl_kernels.c`` (the same for every model),
``<prefix>.h`` (the input contract and API), ``<prefix>.c`` (the model), and
``<prefix>.json`` (the input contract of the tflite file it came from).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tinylarge.compress.csource import emit
from tinylarge.compress.csource.lower import SUPPORTED, CModel, lower

KERNEL_FILES = ("tl_kernels.h", "tl_kernels.c")
DEFAULT_PREFIX = "tl_model"

__all__ = ["SUPPORTED", "CSource", "export_c_source", "kernel_source", "lower"]


@dataclass(frozen=True)
class CSource:
    """What :func:`export_c_source` wrote: the directory, its C files and the lowered model."""

    directory: Path
    prefix: str
    model: CModel

    @property
    def c_files(self) -> tuple[Path, ...]:
        return (self.directory / "tl_kernels.c", self.directory / f"{self.prefix}.c")


def kernel_source(name: str) -> str:
    """Text of a kernel file shipped with the package (``tl_kernels.c`` or ``.h``)."""
    return resources.files(__package__).joinpath(name).read_text()


def export_c_source(
    tflite_path: Path,
    out_dir: Path,
    *,
    contract: Mapping[str, Any] | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> CSource:
    """Generate the C library of ``tflite_path`` into ``out_dir`` (replaced as a whole).

    ``contract``: the input contract of the tflite file (labels, normalization,
    layout); written beside the header as ``<prefix>.json``.
    """
    model = lower(tflite_path)
    contract = dict(contract or {})
    files = emit.files(model, contract, prefix=prefix, source_name=tflite_path.name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name in KERNEL_FILES:
            (tmp / name).write_text(kernel_source(name))
        for name, text in files.items():
            (tmp / name).write_text(text)
        contract.pop("artifact", None)
        contract["embeds"] = {"file": tflite_path.name}
        contract["arena_bytes"] = model.arena_bytes
        (tmp / f"{prefix}.json").write_text(json.dumps(contract, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CSource(directory=out_dir, prefix=prefix, model=model)


def _replace_dir(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest``; an existing ``dest`` is replaced only once ``new`` is complete."""
    if not dest.exists():
        os.replace(new, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
    os.replace(dest, old / "x")
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)
