"""TFLite's integer quantization arithmetic, computed once at export time.

Pure functions that reproduce, in Python floats (IEEE doubles, as in C++),
how TensorFlow Lite Micro prepares its int8 kernels, so the generated C holds
the very multipliers and shifts the interpreter computes at ``Prepare``:

- :func:`quantize_multiplier`: ``QuantizeMultiplier`` of
  tensorflow/lite/kernels/internal/quantization_util.cc (``frexp``, the
  significand rounded half away from zero to Q0.31, a significand of exactly
  2^31 halved, shifts below -31 flushed to zero).
- :func:`activation_range`: ``CalculateActivationRangeQuantized`` of
  tensorflow/lite/kernels/kernel_util.cc (``zero_point + round(f / scale)`` in
  float32 for the ends of RELU, RELU6 and RELU_N1_TO_1).
- :func:`conv_multipliers`: ``PopulateConvolutionQuantizationParams`` (per
  channel, ``double(input_scale) * double(filter_scale) / double(output_scale)``)
  and the per-tensor fully-connected path of ``GetQuantizedConvolutionMultipler``
  (the product of the two scales taken in float32 first).
- :func:`add_multipliers`: TFLM's ``CalculateOpDataAdd`` (inputs shifted left
  by 20 bits, each rescaled by its scale over twice the larger input scale).
- :func:`softmax_params`: ``PreprocessSoftmaxScaling`` and
  ``CalculateInputRadius`` with 5 integer bits for the scaled differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

INT8_MIN, INT8_MAX = -128, 127

#: TFLite ``ActivationFunctionType`` codes the int8 kernels fuse, by name.
FUSED_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def round_half_away(x: float) -> int:
    """``std::round``: to the nearest integer, halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``real`` as a Q0.31 significand in [2^30, 2^31) and a power-of-two exponent."""
    if real == 0.0:
        return 0, 0
    significand, shift = math.frexp(real)
    q_fixed = round_half_away(significand * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """The int8 output range a fused activation clamps to (``activation`` a TFLite code)."""

    def q(value: float) -> int:
        return zero_point + round_half_away(float(np.float32(value) / np.float32(scale)))

    if activation == 0:
        return INT8_MIN, INT8_MAX
    if activation == 1:
        return max(INT8_MIN, q(0.0)), INT8_MAX
    if activation == 3:
        return max(INT8_MIN, q(0.0)), min(INT8_MAX, q(6.0))
    if activation == 2:
        return max(INT8_MIN, q(-1.0)), min(INT8_MAX, q(1.0))
    raise ValueError(f"fused activation {activation} has no int8 range")


def conv_multipliers(
    input_scale: float,
    filter_scales: Sequence[float],
    output_scale: float,
    *,
    channels: int,
    fully_connected: bool = False,
) -> tuple[list[int], list[int]]:
    """Per output channel (multiplier, shift) of a convolution or fully-connected layer.

    A per-tensor fully-connected layer gets one pair (TFLM's per-tensor path);
    a per-tensor convolution broadcasts its one filter scale to every channel.
    """
    if fully_connected and len(filter_scales) == 1:
        product = float(np.float32(input_scale) * np.float32(filter_scales[0]))
        m, s = quantize_multiplier(product / output_scale)
        return [m], [s]
    pairs = [
        quantize_multiplier(
            input_scale * filter_scales[c if len(filter_scales) > 1 else 0] / output_scale
        )
        for c in range(channels)
    ]
    return [m for m, _ in pairs], [s for _, s in pairs]


def add_multipliers(scale1: float, scale2: float, output_scale: float) -> dict[str, int]:
    """Offsets aside, the fixed-point parameters of an int8 ADD (left shift 20)."""
    left_shift = 20
    twice_max = 2 * max(scale1, scale2)
    m1, s1 = quantize_multiplier(scale1 / twice_max)
    m2, s2 = quantize_multiplier(scale2 / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * output_scale))
    return {
        "left_shift": left_shift,
        "input1_multiplier": m1,
        "input1_shift": s1,
        "input2_multiplier": m2,
        "input2_shift": s2,
        "output_multiplier": mo,
        "output_shift": so,
    }


def softmax_params(beta: float, input_scale: float) -> dict[str, int]:
    """Input multiplier, left shift and ``diff_min`` of an int8 softmax."""
    integer_bits = 5
    real = min(beta * input_scale * (1 << (31 - integer_bits)), float((1 << 31) - 1))
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    return {"input_multiplier": multiplier, "input_left_shift": left_shift, "diff_min": -radius}
