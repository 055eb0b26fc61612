"""TFLite int8 artifacts with litert-torch, run in the LiteRT interpreter (the ``tflite`` extra).

``pip install 'tinylarge[tflite]'`` installs ``litert-torch`` (Google's
PyTorch-to-LiteRT converter, no TensorFlow needed) and ``ai-edge-litert`` (the
LiteRT interpreter). The core package imports without them; a missing extra
raises :class:`~tinylarge.errors.TinylargeError` naming the install command.

Quantization is PT2E static quantization from torchao (a dependency of
litert-torch; ``torchao.quantization.pt2e``, the maintained successor of
``torch.ao.quantization``'s flow) with litert-torch's TFLite quantizer: the
TFLite int8 scheme, weights per channel symmetric in [-127, 127], activations
per tensor asymmetric in [-128, 127]. Activation ranges are observed with
min/max over the same calibration inputs as the ONNX artifact's (clipped to
their 99.99th percentile of ``|x|`` by default,
:func:`tinylarge.compress.quantize.calibration_inputs`), so both artifacts
share one quantization grid. The file is
fully integer: int8 input and output, whose scales and zero points go into the
input contract. Images and MFCC maps take channels-last (``NHWC``) inputs, as
TFLite Micro expects.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.compress.quantize import (
    DEFAULT_PERCENTILE,
    calibration_inputs,
    quantize,
)
from tinylarge.errors import TinylargeError

INSTALL_HINT = "pip install 'tinylarge[tflite]' (litert-torch and ai-edge-litert)"


def litert_available() -> bool:
    """Whether the ``tflite`` extra (converter and interpreter) is installed.

    Looks the packages up without importing them (litert-torch imports jax,
    which is slow and multithreaded); a broken install fails when it is used.
    """
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("litert_torch", "ai_edge_litert", "torchao")
    )


def _require() -> None:
    if not litert_available():
        raise TinylargeError(f"TFLite export needs the tflite extra: {INSTALL_HINT}")


@dataclass(frozen=True)
class TfliteIO:
    """Quantization and layout of a fully-integer TFLite file's input and output."""

    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    channels_last: bool


def wants_channels_last(input_shape: Sequence[int]) -> bool:
    """Channels-last inputs for images and spectrograms ``(C, H, W)``."""
    return len(input_shape) == 3


class _ChannelsLastInput(nn.Module):
    """Takes ``(N, H, W, C)`` inputs and feeds the wrapped model ``(N, C, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x.permute(0, x.ndim - 1, *range(1, x.ndim - 1)))
        return out


def _to_layout(x: np.ndarray, channels_last: bool) -> np.ndarray:
    if not channels_last:
        return x
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def export_tflite_int8(
    model: nn.Module,
    path: str | Path,
    *,
    input_shape: Sequence[int],
    calibration: np.ndarray,
    method: str = "percentile",
    percentile: float = DEFAULT_PERCENTILE,
    batch_size: int = 64,
) -> TfliteIO:
    """Write the fully-integer int8 TFLite file of ``model`` calibrated on ``calibration``.

    ``calibration`` holds normalized model inputs in PyTorch order; ``method``
    and ``percentile`` as for the ONNX artifact.
    """
    _require()
    calibration = calibration_inputs(calibration, method=method, percentile=percentile)
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from litert_torch.quantize import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        pt2e_quantizer as pq,
    )
    from litert_torch.quantize.pt2e_quantizer_utils import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        QuantizationConfig,
    )
    from litert_torch.quantize.quant_config import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        QuantConfig,
    )
    from torchao.quantization.pt2e import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        move_exported_model_to_eval,
        quantize_pt2e,
    )
    from torchao.quantization.pt2e.observer import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        MinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        QuantizationSpec,
    )

    channels_last = wants_channels_last(input_shape)
    net: nn.Module = model.eval()
    if channels_last:
        net = _ChannelsLastInput(net).eval()
    calib = _to_layout(np.asarray(calibration, dtype=np.float32), channels_last)
    base = pq.get_symmetric_quantization_config(is_per_channel=True)
    act = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        is_dynamic=False,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
    )
    config = QuantizationConfig(act, act, base.weight, base.bias, base.fixed_qparams, False, False)
    quantizer = pq.PT2EQuantizer().set_global(config)
    example = (torch.from_numpy(calib[:2]),)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(net, example, dynamic_shapes=({0: batch},)).module()
    prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for i in range(0, len(calib), batch_size):
            prepared(torch.from_numpy(calib[i : i + batch_size]))
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    converted.training = False  # exported in eval mode; litert-torch warns on this flag
    edge = litert_torch.convert(
        converted,
        (torch.from_numpy(calib[:1]),),
        quant_config=QuantConfig(pt2e_quantizer=quantizer),
    )
    edge.export(str(path))
    interp = _interpreter(path)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    if inp["dtype"] != np.int8 or out["dtype"] != np.int8:
        raise RuntimeError(f"expected an int8 input and output, got {inp['dtype']}, {out['dtype']}")
    return TfliteIO(float(in_scale), int(in_zp), float(out_scale), int(out_zp), channels_last)


def _interpreter(path: str | Path) -> Any:
    _require()
    from ai_edge_litert.interpreter import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        Interpreter,
    )

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return interp


def contract_inputs(
    x: np.ndarray,
    shape: Sequence[int],
    channels_last: bool | None,
    *,
    scale: float,
    zero_point: int,
) -> np.ndarray:
    """``x`` (normalized, PyTorch order) as a file shaped ``shape`` takes it: laid out
    (``channels_last``; default: inferred from ``shape``) and quantized as its input
    contract says. Shared by the LiteRT and TFLite Micro runs of a file."""
    shape = tuple(int(d) for d in shape)
    if channels_last is None:
        channels_last = len(shape) == 4 and tuple(x.shape[1:]) != shape[1:]
    xs = _to_layout(np.asarray(x, dtype=np.float32), channels_last)
    if tuple(xs.shape[1:]) != shape[1:]:
        raise TinylargeError(f"inputs shaped {x.shape[1:]} do not match the file's {shape}")
    return quantize(xs, scale=float(scale), zero_point=int(zero_point))


def tflite_logits(
    path: str | Path, x: np.ndarray, *, channels_last: bool | None = None
) -> np.ndarray:
    """Dequantized outputs of a fully-integer TFLite file on ``x`` (normalized, PyTorch order).

    Runs the LiteRT interpreter one sample at a time (the file's batch is 1);
    inputs are put in the file's layout (``channels_last``; default: inferred
    from the file's input shape) and quantized with its input scale and zero
    point, exactly as the input contract tells firmware to.
    """
    interp = _interpreter(path)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    shape = tuple(int(d) for d in inp["shape"])
    q = contract_inputs(x, shape, channels_last, scale=in_scale, zero_point=in_zp)
    rows = []
    for i in range(len(q)):
        interp.set_tensor(inp["index"], q[i : i + 1])
        interp.invoke()
        rows.append(interp.get_tensor(out["index"])[0].astype(np.float32))
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return (np.stack(rows) - np.float32(out_zp)) * np.float32(out_scale)
