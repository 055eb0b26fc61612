"""tinylarge: TinyML and LargeML integration over 5G/6G networks.

Tiny models on microcontrollers and large models on edge and cloud servers,
the schemes that let them learn from and serve each other, and a ledger that
bills every computation and every byte on air in seconds and joules.
"""

from tinylarge.errors import TinylargeError, UnknownNameError

__all__ = ["TinylargeError", "UnknownNameError", "__version__"]
__version__ = "0.1.0"
