"""Models: the zoo (tiny and large), the profilers and the memory planner.

- :mod:`tinylarge.models.zoo`: ``build_model(name, *, input_shape, num_classes)``
- :mod:`tinylarge.models.profiler`: ``profile_model(module, *, input_shape, ...)``
- :mod:`tinylarge.models.files`: ``profile_file(path)`` for ``.tflite``/``.onnx``
- :mod:`tinylarge.models.memory`: peak SRAM and arena plans over buffer lifetimes
- :mod:`tinylarge.models.profile`: the :class:`ModelProfile` they all produce

Submodules are imported on use, so ``import tinylarge.models`` stays light.
"""
