"""Hardware: the device catalogue, the compute cost model and the fit check.

- :mod:`tinylarge.hardware.catalogue`: real devices with sourced figures
  (:func:`~tinylarge.hardware.catalogue.get_device`).
- :mod:`tinylarge.hardware.cost`: seconds and joules of inference and training.
- :mod:`tinylarge.hardware.fit`: does a model fit a device's flash and SRAM.
- :mod:`tinylarge.hardware.calibration`: the cost model against MLPerf Tiny.
"""
