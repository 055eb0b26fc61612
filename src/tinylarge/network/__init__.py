"""Channel models, link presets and bandwidth sharing.

The engine codes against three things:

- :class:`Link` (``Link.from_preset(name)``, ``Link.from_scenario(...)``) and its
  ``transfer(num_bytes, *, rng, share, direction, fading, shadowing)`` returning a
  :class:`TransferResult` (seconds, joules, outage),
- :data:`PRESETS`, the registry of :class:`LinkPreset` (``sorted(PRESETS)``),
- :func:`share_bandwidth`, each concurrent device's ``share`` of a cell.

The models underneath are pure functions, one module each: :mod:`.tr38901`,
:mod:`.subthz`, :mod:`.freespace`, :mod:`.logdistance`, :mod:`.fading`,
:mod:`.lora`, :mod:`.radio`.
"""

from tinylarge.network.cell import SHARING_POLICIES, equal_shares, share_bandwidth
from tinylarge.network.link import Link, LinkBudget, TransferResult
from tinylarge.network.presets import PRESETS, LinkPreset

__all__ = [
    "PRESETS",
    "SHARING_POLICIES",
    "Link",
    "LinkBudget",
    "LinkPreset",
    "TransferResult",
    "equal_shares",
    "share_bandwidth",
]
