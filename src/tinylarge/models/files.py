"""Profile a model file: ``.tflite`` (TensorFlow Lite) or ``.onnx``.

>>> from tinylarge.models.files import profile_file
>>> profile_file("kws_ref_model.tflite").macs  # doctest: +SKIP
2656768

Readers are registered by file suffix in :data:`FILE_READERS`; each reads the
file offline (no TensorFlow, no network) and returns a
:class:`~tinylarge.models.profile.ModelProfile` whose ``flash_bytes`` is the
file size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tinylarge.errors import TinylargeError
from tinylarge.models.profile import ModelProfile
from tinylarge.registry import Registry

Reader = Callable[[Path], ModelProfile]

#: File readers by suffix (lower case, with the dot).
FILE_READERS: Registry[Reader] = Registry("model file format")


@FILE_READERS.register(".tflite")
def _read_tflite(path: Path) -> ModelProfile:
    """The file's profile, with TFLite Micro's predicted arena per build for an int8 model
    (``extra["tflm_arena_bytes"]``, ``None`` for a float one: the fit check reads it)."""
    from tinylarge.models.tflite_reader import profile_tflite, read_tflite
    from tinylarge.models.tflm_arena import predict_arenas

    profile = profile_tflite(path)
    arenas = None
    if profile.dtype == "int8":
        arenas = {b: p.arena_bytes for b, p in predict_arenas(read_tflite(path)).items()}
    return replace(profile, extra={**profile.extra, "tflm_arena_bytes": arenas})


@FILE_READERS.register(".onnx")
def _read_onnx(path: Path) -> ModelProfile:
    from tinylarge.models.onnx_reader import profile_onnx

    return profile_onnx(path)


def is_model_file(name: str | Path) -> bool:
    """Whether ``name`` has the suffix of a supported model file."""
    return Path(name).suffix.lower() in FILE_READERS


def profile_file(path: str | Path) -> ModelProfile:
    """Profile the model stored at ``path`` (``.tflite`` or ``.onnx``).

    Raises:
        TinylargeError: the file is missing, unreadable or of an unknown format.
    """
    file = Path(path)
    reader = FILE_READERS[file.suffix.lower()]
    if not file.is_file():
        raise TinylargeError(f"model file not found: {file}")
    return reader(file)
