"""Run a ``.tflite`` in the TensorFlow Lite Micro interpreter (the ``tflite-micro`` extra).

``pip install 'tinylarge[tflite-micro]'`` installs Google's ``tflite-micro``
package: the TFLM C++ interpreter (reference kernels, ``GreedyMemoryPlanner``,
``RecordingMicroAllocator``) built for x86-64 Linux with a Python binding
(``tflite_micro.runtime.Interpreter.from_bytes(data, arena_size=...)``). Its
wheels exist only for CPython 3.10 to 3.14 on x86-64 Linux; elsewhere the extra
is refused with one line naming the platform.

What this module measures:

- :func:`smallest_arena_bytes`: the smallest ``arena_size`` the interpreter
  allocates *and* invokes the model in, exact to the byte. TFLM's arena need is
  more than its final ``used_bytes``: while it plans, the head holds the
  ``AllocationInfo`` array and the planner's 40-byte-per-buffer work space
  (micro_allocator.cc ``CommitStaticMemoryPlan``), so the only exact measure is
  to try. Success is monotone in the arena size, so a bisection needs about
  ``log2(hi - lo)`` tries. Every try runs in a child forked from a small
  probe process (:mod:`tinylarge.compress._tflm_probe`): TFLM's Python
  wrapper dereferences null when an arena is too small for its own allocator
  objects (below about 500 bytes) and sometimes after a failed ``Prepare``,
  so a child that crashes or fails is a "does not fit", never a crash of ours.
- :func:`allocations`: the ``RecordingMicroAllocator`` breakdown (head, tail,
  eval tensors, node structs, persistent buffers) at a given arena.
- :func:`tflm_logits`: dequantized outputs on a dataset, one sample at a time.
- :func:`verify_tflite`: refuses what the runtime cannot run as an int8
  model (an operator outside TFLM's resolver, float weights or float
  activations) with one line naming the operator.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinylarge.errors import TinylargeError

INSTALL_HINT = "pip install 'tinylarge[tflite-micro]'"

#: Arenas below this are never tried: TFLM's wrapper crashes under ~500 bytes.
SAFE_FLOOR_BYTES = 1024

_OP_MISSING = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_CUSTOM_MISSING = re.compile(r"Didn't find op for custom opcode '([^']+)'")


def platform_supported() -> bool:
    """Whether ``tflite-micro`` publishes a wheel for this interpreter and machine."""
    return (
        sys.platform == "linux"
        and platform.machine() in ("x86_64", "AMD64")
        and (3, 10) <= sys.version_info[:2] <= (3, 14)
    )


def tflm_available() -> bool:
    """Whether the TFLM interpreter can be imported here."""
    return platform_supported() and importlib.util.find_spec("tflite_micro") is not None


def unavailable_reason() -> str:
    """One line: why TFLM cannot run here and what to do (empty when it can)."""
    if not platform_supported():
        return (
            "TFLite Micro verification needs the tflite-micro extra, whose wheels exist only for "
            f"CPython 3.10-3.14 on x86-64 Linux (this is CPython "
            f"{sys.version_info[0]}.{sys.version_info[1]} on {sys.platform}/{platform.machine()})"
        )
    if importlib.util.find_spec("tflite_micro") is None:
        return f"TFLite Micro verification needs the tflite-micro extra: {INSTALL_HINT}"
    return ""


def _require() -> Any:
    reason = unavailable_reason()
    if reason:
        raise TinylargeError(reason)
    from tflite_micro.python.tflite_micro import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        runtime,
    )

    return runtime


class _Prober:
    """Tries arenas for one model in a probe process (:mod:`tinylarge.compress._tflm_probe`)."""

    def __init__(self, data: bytes) -> None:
        _require()
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite")  # noqa: SIM115
        self._file.write(data)
        self._file.flush()
        script = Path(__file__).with_name("_tflm_probe.py")
        self._proc = subprocess.Popen(
            [sys.executable, str(script), self._file.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> _Prober:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait()
        self._file.close()

    def probe(
        self, arena_bytes: int, *, invoke: bool = False, record: bool = False
    ) -> tuple[bool, str]:
        """(whether TFLM allocated, and invoked if asked, in ``arena_bytes``; its stderr)."""
        if arena_bytes < SAFE_FLOOR_BYTES:
            return False, f"arenas under {SAFE_FLOOR_BYTES} bytes are not tried"
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        request = {"arena": arena_bytes, "invoke": invoke, "record": record}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the TFLite Micro probe process ended unexpectedly")
        answer = json.loads(line)
        return bool(answer["ok"]), str(answer["log"])


def runs_in(data: bytes, arena_bytes: int) -> bool:
    """Whether TFLM allocates the model in ``arena_bytes`` (its Invoke allocates nothing)."""
    with _Prober(data) as prober:
        return prober.probe(arena_bytes)[0]


def _unsupported_operator(log: str) -> str | None:
    match = _OP_MISSING.search(log) or _CUSTOM_MISSING.search(log)
    return match.group(1) if match else None


def smallest_arena_bytes(data: bytes, *, hint_bytes: int | None = None) -> int:
    """The smallest arena (bytes) TFLM runs the model in, found by bisection.

    ``hint_bytes`` (a prediction, e.g. from :mod:`tinylarge.models.tflm_arena`)
    brackets the search: the bracket grows in doubling steps from 1/32 of it,
    so a hint within a few percent costs about a dozen tries. A model TFLM cannot run at all (an
    unsupported operator) raises :class:`TinylargeError` naming the operator.
    """
    with _Prober(data) as prober:
        return _bisect(prober, len(data), hint_bytes)


def _bisect(prober: _Prober, size_bytes: int, hint_bytes: int | None) -> int:
    ceiling = max(64 * size_bytes, 1 << 22)
    hi = max(SAFE_FLOOR_BYTES, hint_bytes or 4 * size_bytes)
    step = max(hi // 32, 64)
    ok, log = prober.probe(hi)
    while not ok:
        op = _unsupported_operator(log)
        if op is not None:
            raise TinylargeError(f"TFLite Micro cannot run operator {op} (not in its op resolver)")
        if hi >= ceiling:
            last = log.strip().splitlines()[-1] if log.strip() else "no message"
            raise TinylargeError(f"TFLite Micro cannot run the model in {hi} bytes: {last}")
        hi, step = min(ceiling, hi + step), 2 * step
        ok, log = prober.probe(hi)
    step = max(hi // 32, 64)
    lo = hi - step
    while lo >= SAFE_FLOOR_BYTES and prober.probe(lo)[0]:
        hi, step = lo, 2 * step
        lo = hi - step
    lo = max(lo, SAFE_FLOOR_BYTES - 1)
    while hi - lo > 1:  # invariant: runs at hi, not at lo
        mid = (lo + hi) // 2
        if prober.probe(mid)[0]:
            hi = mid
        else:
            lo = mid
    ok, log = prober.probe(hi, invoke=True)
    if not ok:
        last = log.strip().splitlines()[-1] if log.strip() else "no message"
        raise TinylargeError(f"TFLite Micro allocates the model in {hi} bytes but fails: {last}")
    return hi


_RECORD = re.compile(r"'([^']+)' used (\d+) bytes")
_TOTALS = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def allocations(data: bytes, arena_bytes: int) -> dict[str, int]:
    """``RecordingMicroAllocator``'s breakdown after one invoke in ``arena_bytes``.

    Keys: ``total``, ``head``, ``tail`` and one per recorded kind
    (``TfLiteEvalTensor data``, ``NodeAndRegistration struct``, ...), bytes
    used including alignment.
    """
    with _Prober(data) as prober:
        ok, log = prober.probe(arena_bytes, invoke=True, record=True)
    if not ok:
        raise TinylargeError(f"TFLite Micro cannot run the model in {arena_bytes} bytes")
    out = {k: int(v) for k, v in _TOTALS.findall(log)}
    out.update({k: int(v) for k, v in _RECORD.findall(log)})
    return out


@dataclass(frozen=True)
class TflmRun:
    """Outputs of a model on a dataset in TFLM, and its measured arena.

    Attributes:
        logits: dequantized outputs, one row per sample.
        arena_bytes: smallest arena (bytes) the model ran in.
    """

    logits: np.ndarray
    arena_bytes: int


def tflm_logits(
    data: bytes, x: np.ndarray, *, channels_last: bool | None = None, arena_bytes: int
) -> np.ndarray:
    """Dequantized outputs of a fully-integer model on ``x`` (normalized, PyTorch order).

    Inputs are laid out and quantized exactly as
    :func:`tinylarge.compress.tflite.tflite_logits` does for LiteRT (the input
    contract), then run one sample at a time in an arena of ``arena_bytes``.
    """
    from tinylarge.compress.tflite import contract_inputs

    runtime = _require()
    interp = runtime.Interpreter.from_bytes(data, arena_size=arena_bytes)
    inp, out = interp.get_input_details(0), interp.get_output_details(0)
    in_q, out_q = inp["quantization_parameters"], out["quantization_parameters"]
    q = contract_inputs(x, inp["shape"], channels_last,
                        scale=in_q["scales"][0], zero_point=in_q["zero_points"][0])  # fmt: skip
    rows = []
    for i in range(len(q)):
        interp.set_input(q[i : i + 1].astype(inp["dtype"]), 0)
        interp.invoke()
        rows.append(np.asarray(interp.get_output(0))[0].astype(np.float32))
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    scale, zero = np.float32(out_q["scales"][0]), np.float32(out_q["zero_points"][0])
    return (np.stack(rows) - zero) * scale


def verify_tflite(path: str | Path, x: np.ndarray, *, channels_last: bool | None = None) -> TflmRun:
    """Run an exported int8 ``.tflite`` in TFLM on ``x``: outputs and the smallest arena.

    Refused with one line (:class:`TinylargeError`) when the file is not an
    int8 model TFLM runs: an operator computing in float (a float model, or a
    hybrid one with float weights), or an operator TFLM does not register.
    """
    from tinylarge.models.tflite_reader import read_tflite
    from tinylarge.models.tflm_arena import predict_arena

    graph = read_tflite(Path(path))
    for number, op in enumerate(graph.operators):
        used = [graph.tensors[t] for t in (*op.inputs, *op.outputs) if t >= 0]
        floats = [t for t in used if t.type_name == "float32"]
        if floats and op.kind not in ("QUANTIZE", "DEQUANTIZE"):
            what = "weights" if all(t.data is not None for t in floats) else "activations"
            raise TinylargeError(
                f"{path}: operator {op.kind} (#{number}) has float32 {what}; "
                "TFLite Micro verification takes fully-int8 models only"
            )
    _require()
    data = Path(path).read_bytes()
    hint = predict_arena(graph, build="x86-64").arena_bytes
    arena = smallest_arena_bytes(data, hint_bytes=hint)
    logits = tflm_logits(data, x, channels_last=channels_last, arena_bytes=arena)
    return TflmRun(logits=logits, arena_bytes=arena)
