"""LargeML -> TinyML: distillation, pruning, int8 quantization, fit checks and deployable exports.

The server's large model makes a tiny one that really runs on a
microcontroller (Vu et al., "Integration of TinyML and LargeML: A Survey of 6G
and Beyond", https://arxiv.org/abs/2505.15854). One module per step:

- :mod:`~tinylarge.compress.train`: compression's training calls, on the one loop of
  :mod:`tinylarge.sim.training` (scratch, KD, fine-tuning).
- :mod:`~tinylarge.compress.distill`: Hinton et al.'s distillation loss.
- :mod:`~tinylarge.compress.prune`: magnitude and structured channel pruning.
- :mod:`~tinylarge.compress.quantize`: the TFLite int8 scheme, ONNX Runtime static PTQ.
- :mod:`~tinylarge.compress.qat`: quantization-aware training (straight-through fake quant).
- :mod:`~tinylarge.compress.export`: fp32/int8 ONNX artifacts, C headers, running them.
- :mod:`~tinylarge.compress.tflite`: TFLite int8 via litert-torch, run in LiteRT (extra).
- :mod:`~tinylarge.compress.contract`: the input contract JSON beside every artifact.
- :mod:`~tinylarge.compress.fit_report`: fit, shortfall, latency and energy per device.
- :mod:`~tinylarge.compress.validate`: layers an MCU int8 runtime cannot run; fixes.
- :mod:`~tinylarge.compress.pipeline`: teacher -> student -> artifact, as the ``kd``
  scheme and the benchmark run it.

Submodules are imported on use, so ``import tinylarge.compress`` stays light.
"""
