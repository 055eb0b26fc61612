"""A probe process for :mod:`tinylarge.compress.tflm`: try arenas in forked children.

Run as a script (``python _tflm_probe.py MODEL.tflite``) so that it imports
nothing but numpy and ``tflite_micro``: a single-threaded process may fork
safely, where forking the caller (with PyTorch's or JAX's threads holding
locks) can deadlock the child. Reads one JSON request a line on stdin,
``{"arena": N, "invoke": bool, "record": bool}``, tries it in a forked child
(TFLM's Python wrapper dereferences null in arenas too small for its own
allocator objects, so a try may crash) and answers one JSON line
``{"ok": bool, "log": "<the child's stderr>"}``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

import numpy as np


def _try(runtime: Any, data: bytes, variables: int, request: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 1
            try:
                os.dup2(err.fileno(), 2)
                # Interpreter.from_bytes without its per-call count of resource variables
                # (it unpacks the whole flatbuffer into Python objects each time)
                interp = runtime._runtime.InterpreterWrapper(
                    data,
                    [],
                    int(request["arena"]),
                    variables,
                    runtime._ENUM_TRANSLATOR[runtime.InterpreterConfig.kAllocationRecording],
                    0,
                )
                if request.get("invoke", False):
                    details = interp.GetInputTensorDetails(0)
                    shape = tuple(int(d) for d in details["shape"])
                    interp.SetInputTensor(np.zeros(shape, dtype=details["dtype"]), 0)
                    interp.Invoke()
                if request.get("record", False):
                    interp.PrintAllocations()
                code = 0
            except BaseException as exc:  # reported through the exit code and stderr
                os.write(2, f"\n{type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        err.seek(0)
        log = err.read().decode(errors="replace")
    return {"ok": os.waitstatus_to_exitcode(status) == 0, "log": log}


def main(model_path: str) -> int:
    from tflite_micro.python.tflite_micro import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        runtime,
    )

    with open(model_path, "rb") as f:
        data = f.read()
    variables = int(runtime.count_resource_variables(data))
    for line in sys.stdin:
        answer = _try(runtime, data, variables, json.loads(line))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
