"""`tinylarge link`: link budget and transfer cost of a TR 38.901 scenario or a preset.

    tinylarge link --scenario {inh,rma,uma,umi} --los|--nlos --carrier-ghz F --distance-m D
                   [--bandwidth-mhz B] [--tx-power-dbm P] [--noise-figure-db NF]
                   [--payload-bytes N] [--direction up|down] [--json]
                   [--fading rayleigh|rician] [--shadowing] [--seed S]
    tinylarge link --preset NAME --payload-bytes N [--distance-m D] [--direction up|down]
                   [--json] [--fading rayleigh|rician] [--shadowing] [--seed S]

``--distance-m`` is the 2D ground distance for the scenarios (and the presets built
on them). Output: path loss, SNR, rate, time and radio energy of sending
``--payload-bytes`` once (``time_s`` is the time on air for LoRa), ``outage`` and the
inputs. Deterministic unless ``--fading`` or ``--shadowing`` (then ``--seed`` makes
it reproducible).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from tinylarge.cli._choices import LazyChoices
from tinylarge.errors import TinylargeError

if TYPE_CHECKING:
    from tinylarge.network.link import Link

#: Payload of the scenario mode when --payload-bytes is not given.
DEFAULT_SCENARIO_PAYLOAD_BYTES = 1_000_000

#: Flags that only make sense with --scenario (argparse dest -> flag).
SCENARIO_ONLY = {
    "los": "--los/--nlos",
    "carrier_ghz": "--carrier-ghz",
    "bandwidth_mhz": "--bandwidth-mhz",
    "tx_power_dbm": "--tx-power-dbm",
    "noise_figure_db": "--noise-figure-db",
}


ORDER = 60

#: Most bytes one transfer may carry (1 TB), and the largest --seed (numpy takes any uint64).
MAX_PAYLOAD_BYTES = 10**12
MAX_SEED = 2**64 - 1


def _scenarios() -> list[str]:
    from tinylarge.network.tr38901 import SCENARIOS

    return SCENARIOS.names()


def _fading_models() -> list[str]:
    from tinylarge.network.fading import FADING_MODELS

    return FADING_MODELS.names()


def register(sub: Any) -> None:
    """Add the `link` command to the subparsers `sub`."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "link",
        help="link budget and transfer cost of a 3GPP scenario or a link preset",
        description="Path loss, SNR, rate, time and radio energy of one transfer over a "
        "3GPP TR 38.901 scenario (--scenario) or a named link preset (--preset).",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--scenario",
        metavar="NAME",
        choices=LazyChoices(_scenarios),
        help="TR 38.901 scenario: %(choices)s",
    )
    mode.add_argument(
        "--preset",
        metavar="NAME",
        help="link preset, e.g. wifi6, nr-sub6, ble-2m, lora-sf7 (an unknown name lists them all)",
    )
    los = parser.add_mutually_exclusive_group()
    los.add_argument("--los", dest="los", action="store_const", const=True, default=None)
    los.add_argument("--nlos", dest="los", action="store_const", const=False)
    parser.add_argument("--carrier-ghz", type=float, help="carrier frequency, GHz")
    parser.add_argument(
        "--distance-m", type=float, help="2D BS-UT distance, m (presets: default distance)"
    )
    parser.add_argument("--bandwidth-mhz", type=float, help="bandwidth, MHz (default 20)")
    parser.add_argument("--tx-power-dbm", type=float, help="transmit power, dBm (default 23)")
    parser.add_argument("--noise-figure-db", type=float, help="noise figure, dB (default 7)")
    parser.add_argument(
        "--payload-bytes",
        type=int,
        help=f"bytes to send (scenario default {DEFAULT_SCENARIO_PAYLOAD_BYTES})",
    )
    parser.add_argument(
        "--direction", choices=("up", "down"), default="up", help="up: the device sends"
    )
    parser.add_argument(
        "--fading",
        metavar="MODEL",
        choices=LazyChoices(_fading_models),
        help="one fading draw: %(choices)s",
    )
    parser.add_argument("--shadowing", action="store_true", help="one log-normal shadowing draw")
    parser.add_argument("--seed", type=int, help="seed for --fading/--shadowing")
    parser.add_argument("--json", action="store_true", help="machine output")
    parser.set_defaults(func=run)


def check_ranges(args: argparse.Namespace) -> None:
    """Refuse a payload or a seed no transfer can take, with one line (the link models check
    their own inputs: distances, frequencies, powers)."""
    if args.payload_bytes is not None and not 0 <= args.payload_bytes <= MAX_PAYLOAD_BYTES:
        raise TinylargeError(
            f"--payload-bytes {args.payload_bytes}: must be >= 0 and <= {MAX_PAYLOAD_BYTES:.0e}"
        )
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise TinylargeError(f"--seed {args.seed}: must be >= 0 and <= 2**64 - 1")


def _scenario_link(args: argparse.Namespace) -> tuple[Link, dict[str, Any]]:
    from tinylarge.network.link import Link

    missing = [
        flag
        for flag, value in (
            ("--los/--nlos", args.los),
            ("--carrier-ghz", args.carrier_ghz),
            ("--distance-m", args.distance_m),
        )
        if value is None
    ]
    if missing:
        raise TinylargeError(f"--scenario needs {', '.join(missing)}")
    inputs: dict[str, Any] = {
        "scenario": args.scenario,
        "los": args.los,
        "carrier_ghz": args.carrier_ghz,
        "distance_m": args.distance_m,
        "bandwidth_mhz": 20.0 if args.bandwidth_mhz is None else args.bandwidth_mhz,
        "tx_power_dbm": 23.0 if args.tx_power_dbm is None else args.tx_power_dbm,
        "noise_figure_db": 7.0 if args.noise_figure_db is None else args.noise_figure_db,
    }
    link = Link.from_scenario(
        args.scenario,
        los=args.los,
        carrier_ghz=args.carrier_ghz,
        distance_m=args.distance_m,
        bandwidth_mhz=inputs["bandwidth_mhz"],
        tx_power_dbm=inputs["tx_power_dbm"],
        noise_figure_db=inputs["noise_figure_db"],
        fading_model=args.fading,
    )
    return link, inputs


def _preset_link(args: argparse.Namespace) -> tuple[Link, dict[str, Any]]:
    from tinylarge.network.link import Link
    from tinylarge.network.presets import PRESETS

    given = [flag for dest, flag in SCENARIO_ONLY.items() if getattr(args, dest) is not None]
    if given:
        raise TinylargeError(f"{', '.join(given)} only apply to --scenario, not to --preset")
    if args.payload_bytes is None:
        raise TinylargeError("--preset needs --payload-bytes N")
    preset = PRESETS[args.preset]
    if args.fading is not None:
        preset = dataclasses.replace(preset, fading_model=args.fading)
    link = Link(preset, distance_m=args.distance_m)
    inputs: dict[str, Any] = {
        "preset": preset.name,
        "description": preset.description,
        "distance_m": link.distance_m,
        "bandwidth_hz": preset.bandwidth_hz,
        "carrier_hz": preset.carrier_hz,
        "tx_power_dbm": preset.tx_power_for("down" if args.direction == "down" else "up"),
    }
    return link, inputs


def run(args: argparse.Namespace) -> int:
    """Build the link, send the payload once, print the result."""
    import numpy as np

    from tinylarge.cli._output import print_json, print_table
    from tinylarge.network.presets import Direction

    check_ranges(args)
    link, inputs = _scenario_link(args) if args.scenario is not None else _preset_link(args)
    payload = DEFAULT_SCENARIO_PAYLOAD_BYTES if args.payload_bytes is None else args.payload_bytes
    random = args.fading is not None or args.shadowing
    rng = np.random.default_rng(args.seed) if random else None
    direction: Direction = "down" if args.direction == "down" else "up"
    res = link.transfer(
        payload,
        rng=rng,
        direction=direction,
        fading=args.fading is not None,
        shadowing=args.shadowing,
    )
    budget = link.budget(direction=direction)
    out: dict[str, Any] = {
        **inputs,
        "payload_bytes": payload,
        "direction": direction,
        "fading": args.fading,
        "shadowing": args.shadowing,
        "seed": args.seed,
        "pathloss_db": res.pathloss_db,
        "noise_dbm": budget.noise_dbm,
        "snr_db": res.snr_db,
        "rate_bps": res.rate_bps,
        "time_s": res.time_s,
        "energy_j": res.energy_j,
        "outage": res.outage,
        "airtime_s": res.airtime_s,
        "latency_s": res.latency_s,
    }
    if link.preset.lora is not None:
        out["frames"] = res.frames
        out["duty_cycle_wait_s"] = res.duty_cycle_wait_s
    if args.json:
        print_json(out)
    else:
        rows = [[key, "-" if value is None else value] for key, value in out.items()]
        print_table(["quantity", "value"], rows, title=f"tinylarge link: {link.preset.name}")
    return 0
