"""Hardware: the device catalogue, the compute cost model and the fit check.

- :mod:`tinylarge.hardware.catalogue`: real devices with sourced figures
  (:func:`~tinylarge.hardware.catalogue.get_device`).
- :mod:`tinylarge.hardware.cost`: seconds and joules of inference and training.
- :mod:`tinylarge.hardware.fit`: does a model fit a device's flash and SRAM.
- :mod:`tinylarge.hardware.stacks`: inference stacks (``x-cube-ai@9.0``, ...) and the
  int8 rates they give a Cortex-M device.
- :mod:`tinylarge.hardware.mlperf` / :mod:`tinylarge.hardware.stack_fit`: the published
  MLPerf Tiny results and the stack model's fit to them.
- :mod:`tinylarge.hardware.calibration`: the reference rows through the catalogue.
"""
