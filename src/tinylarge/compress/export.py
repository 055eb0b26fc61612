"""Deployable artifacts: fp32 and int8 ONNX files, C headers, and running them.

- :func:`export_onnx`: the fp32 model as ONNX (``torch.onnx.export`` with the
  TorchScript exporter, ``dynamo=False``, which needs no extra package; opset
  17, dynamic batch, BatchNorm folded into convolutions by the exporter).
- :func:`export_onnx_int8`: the int8 QDQ artifact of
  :func:`~tinylarge.compress.quantize.quantize_static_onnx`.
- :func:`onnx_logits`: run an artifact file in ONNX Runtime (one thread), the
  only way reports measure an artifact's accuracy.
- :func:`c_header`: the bytes of any artifact as a C array for firmware
  (16-byte aligned, as TFLite Micro wants its flatbuffer, plus the length).

Tensor and node names are shortened in both ONNX files (``t0``, ``t1``, ...):
they are dead weight on a device and the same rule applies to the fp32 file,
so the int8/fp32 size ratio compares like with like. Zero-valued zero points
of int32 biases are dropped (zero is their default); ONNX Runtime still fuses
the integer kernels.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinylarge.compress.quantize import DEFAULT_PERCENTILE, quantize_static_onnx

#: Names of the graph input and output in every exported file.
INPUT_NAME, OUTPUT_NAME = "input", "logits"
OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, *, input_shape: Sequence[int]) -> Path:
    """Write ``model`` (eval mode) as an fp32 ONNX file taking ``(N, *input_shape)`` inputs."""
    out = Path(path)
    model = model.eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript)
        warnings.simplefilter("ignore", DeprecationWarning)
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            model,
            (torch.zeros(1, *input_shape),),
            str(raw),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
        shrink_onnx(raw, out)
    return out


def export_onnx_int8(
    model: nn.Module,
    path: str | Path,
    *,
    input_shape: Sequence[int],
    calibration: np.ndarray,
    method: str = "percentile",
    percentile: float = DEFAULT_PERCENTILE,
) -> Path:
    """Write the int8 QDQ artifact of ``model`` calibrated on ``calibration`` (model inputs).

    ``method`` and ``percentile``: how activation ranges are calibrated
    (:mod:`tinylarge.compress.quantize`).
    """
    if len(calibration) == 0:
        raise ValueError("calibration needs at least one sample")
    out = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", input_shape=input_shape)
        raw = Path(tmp) / "int8.onnx"
        quantize_static_onnx(fp32, raw, calibration, method=method, percentile=percentile)
        shrink_onnx(raw, out)
    return out


def shrink_onnx(src: str | Path, dst: str | Path) -> None:
    """Copy an ONNX file with short tensor names, no node names or doc strings.

    Drops the all-zero zero points of int32 bias DequantizeLinear nodes.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) == 3:
            zp = inits.get(node.input[2])
            if (
                zp is not None
                and zp.data_type == onnx.TensorProto.INT32
                and not numpy_helper.to_array(zp).any()
            ):
                del node.input[2]
    used = {name for node in graph.node for name in node.input}
    for init in list(graph.initializer):
        if init.name not in used and init.name not in keep:
            graph.initializer.remove(init)
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]
    graph.name = "tinylarge"
    graph.doc_string = ""
    model.doc_string = ""
    model.producer_name = "tinylarge"
    model.producer_version = ""
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def onnx_logits(model: str | Path | bytes, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Outputs of an ONNX file (path or bytes) run in ONNX Runtime on ``x``, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model) if isinstance(model, (str, Path)) else model
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    dtype = np.int8 if inp.type == "tensor(int8)" else np.float32
    outs = [
        session.run(None, {inp.name: np.ascontiguousarray(x[i : i + batch_size], dtype=dtype)})[0]
        for i in range(0, len(x), batch_size)
    ]
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32)


def c_symbol(name: str) -> str:
    """A C identifier from a file name: ``student-int8.onnx`` -> ``student_int8_onnx``."""
    sym = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return sym if not sym[:1].isdigit() else f"m_{sym}"


def c_header(data: bytes, *, symbol: str, source: str = "", per_line: int = 12) -> str:
    """A C/C++ header holding ``data`` as a 16-byte aligned array and its length.

    Defines ``<symbol>[]`` (``static const unsigned char``) and
    ``<symbol>_len``; ``alignas(16)`` in C++, ``_Alignas(16)`` in C11.
    """
    guard = f"{symbol.upper()}_H_"
    lines = [
        f"/* Generated by tinylarge from {source or symbol}: {len(data)} bytes. */",
        "/* Feed it as its input contract (the .json beside this file) says. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#ifdef __cplusplus",
        "#define TINYLARGE_ALIGN16 alignas(16)",
        "#else",
        "#define TINYLARGE_ALIGN16 _Alignas(16)",
        "#endif",
        "",
        f"TINYLARGE_ALIGN16 static const unsigned char {symbol}[] = {{",
    ]
    for i in range(0, len(data), per_line):
        chunk = data[i : i + per_line]
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    lines += [
        "};",
        f"static const unsigned int {symbol}_len = {len(data)}u;",
        "",
        f"#endif  /* {guard} */",
        "",
    ]
    return "\n".join(lines)


def parse_c_header(text: str) -> bytes:
    """The bytes of a :func:`c_header` array (for checks and round trips)."""
    body = text.split("= {", 1)[1].split("};", 1)[0]
    return bytes(int(tok, 16) for tok in re.findall(r"0x([0-9a-fA-F]{2})", body))
