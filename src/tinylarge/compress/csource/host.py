"""Build a generated C library with the host C compiler and run it from Python.

:func:`build_host_library` compiles the kernels and the model into a shared
library (``cc -std=c99 -O2 -shared -fPIC``); :class:`HostModel` loads it with
:mod:`ctypes` and runs a batch of int8 inputs through ``<prefix>_invoke``.
The compiler is ``$CC`` or the first of ``cc``/``gcc``/``clang`` on the path.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tinylarge.errors import TinylargeError

C_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror")


def host_compiler() -> str | None:
    """The host C compiler, or ``None`` when there is none."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def build_host_library(c_files: Sequence[Path], out: Path) -> Path:
    """Compile ``c_files`` into the shared library ``out``."""
    cc = host_compiler()
    if cc is None:
        raise TinylargeError("no host C compiler (cc, gcc or clang) on the PATH; set CC")
    cmd = [cc, *C_FLAGS, "-shared", "-fPIC", "-o", str(out), *map(str, c_files)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return out


class HostModel:
    """A generated model compiled for the host, called through ctypes."""

    def __init__(self, library: Path, *, prefix: str, input_bytes: int, output_bytes: int):
        self._lib = ctypes.CDLL(
            str(library.resolve())
        )  # dlopen caches by path: use a new one per build
        self._invoke = getattr(self._lib, f"{prefix}_invoke")
        self._invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._invoke.restype = ctypes.c_int
        self.input_bytes = input_bytes
        self.output_bytes = output_bytes

    def run(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int8 outputs ``(N, output_bytes)`` and returned classes ``(N,)`` of ``inputs``."""
        x = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), self.input_bytes)
        y = np.zeros((len(x), self.output_bytes), dtype=np.int8)
        classes = np.zeros(len(x), dtype=np.int64)
        for i in range(len(x)):
            classes[i] = self._invoke(x[i].ctypes.data, y[i].ctypes.data)
        return y, classes
