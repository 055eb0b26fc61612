"""The device catalogue: contents, sources and validation on load."""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import pytest
import yaml

from tinylarge.errors import TinylargeError, UnknownNameError
from tinylarge.hardware.catalogue import (
    TIERS,
    DeviceProfile,
    all_devices,
    device_ids,
    get_device,
    parse_catalogue,
)
from tinylarge.models.profile import OP_CLASSES

REQUIRED_IDS = (
    "stm32f446re",
    "stm32f746",
    "stm32h743",
    "stm32l4r5",
    "nrf52840",
    "esp32s3",
    "rp2040",
    "m55-u55",
    "rpi4",
    "rpi5",
    "jetson-nano",
    "jetson-orin-nano",
    "l4",
    "a100",
)


def _raw() -> dict[str, Any]:
    text = resources.files("tinylarge.hardware").joinpath("devices.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def test_required_devices_present_and_at_least_16() -> None:
    ids = device_ids()
    assert set(REQUIRED_IDS) <= set(ids)
    assert len(ids) >= 16
    assert ids == sorted(ids)


def test_every_tier_has_a_device_and_a_phone_exists() -> None:
    tiers = {d.tier for d in all_devices()}
    assert tiers == set(TIERS)


def test_all_devices_ordered_by_tier() -> None:
    order = [TIERS.index(d.tier) for d in all_devices()]
    assert order == sorted(order)


@pytest.mark.parametrize("device_id", device_ids())
def test_entry_is_sourced_and_consistent(device_id: str) -> None:
    d = get_device(device_id)
    assert isinstance(d, DeviceProfile)
    assert d.sources
    assert all(s.startswith("https://") for s in d.sources)
    assert d.notes
    assert d.runtime
    assert 0 < d.sram_contiguous_bytes <= d.sram_bytes
    assert d.flash_bytes > 0
    assert d.clock_hz > 0
    assert d.int8_macs_per_s > 0
    assert d.fp32_macs_per_s > 0
    assert 0 < d.idle_power_w < d.active_power_w
    assert set(d.op_efficiency) == set(OP_CLASSES)
    assert d.op_efficiency["conv"] == 1.0
    assert d.op_overhead_s >= 0


def test_mcus_are_small_and_servers_large() -> None:
    mcus = [d for d in all_devices() if d.tier == "mcu"]
    clouds = [d for d in all_devices() if d.tier == "cloud"]
    assert max(d.sram_bytes for d in mcus) < 16 * 2**20
    assert min(d.int8_macs_per_s for d in clouds) > 1e13


def test_cortex_m_devices_share_the_calibrated_efficiencies() -> None:
    reference = get_device("stm32l4r5").op_efficiency
    for device_id in ("stm32f446re", "stm32f746", "stm32h743", "stm32u585", "nrf52840"):
        assert dict(get_device(device_id).op_efficiency) == dict(reference)
    assert reference["depthwise_conv"] < 0.5  # CMSIS-NN: depthwise far below conv per MAC


def test_contiguous_sram_is_honest_for_split_memories() -> None:
    h7 = get_device("stm32h743")
    assert h7.sram_contiguous_bytes == 512 * 1024 < h7.sram_bytes


def test_unknown_device_lists_known_ids() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_device("stm32f999")
    message = str(info.value)
    assert "stm32f999" in message
    assert "stm32l4r5" in message
    assert "a100" in message


def test_macs_per_s_by_dtype() -> None:
    d = get_device("rpi5")
    assert d.macs_per_s("int8") == d.int8_macs_per_s
    assert d.macs_per_s("fp32") == d.fp32_macs_per_s
    with pytest.raises(TinylargeError, match="dtype"):
        d.macs_per_s("fp16")  # type: ignore[arg-type]


def test_to_dict_has_all_fields() -> None:
    out = get_device("nrf52840").to_dict()
    assert out["id"] == "nrf52840"
    assert out["radios"] == ["ble-1m", "ble-2m"]
    assert out["sources"]
    assert out["op_efficiency"]["conv"] == 1.0
    assert set(out) >= {"sram_contiguous_bytes", "can_train", "idle_power_w", "notes"}


def test_loaded_profiles_hold_the_files_figures_unchanged() -> None:
    # Read the shipped YAML directly and compare every field of every loaded profile with
    # the entry it came from: the loader validates, it never rounds, scales or drops.
    raw = _raw()
    tables = raw["efficiency_profiles"]
    entries = {e["id"]: e for e in raw["devices"]}
    assert set(entries) == set(device_ids())
    for device_id, entry in entries.items():
        d = get_device(device_id).to_dict()
        # a device with a stack takes its int8 rate and, where its energy runs are
        # published, its power from the stack (tests/hardware/test_stacks.py)
        from_stack = {"int8_macs_per_s", "active_power_w"} if "stack" in entry else set()
        for key in {
            "name", "tier", "sram_bytes", "sram_contiguous_bytes", "flash_bytes", "clock_hz",
            "int8_macs_per_s", "fp32_macs_per_s", "runtime", "active_power_w", "idle_power_w",
            "can_train", "op_overhead_s", "core", "stack",
        } - from_stack:  # fmt: skip
            assert d[key] == entry.get(key), (device_id, key)
        assert d["radios"] == list(entry["radios"])
        assert d["sources"] == list(entry["sources"])
        assert d["notes"] == " ".join(entry["notes"].split())  # YAML folding only
        named = entry["op_efficiency"]
        assert d["op_efficiency"] == (tables[named] if isinstance(named, str) else named)


def _mutated(device_id: str, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(_raw())
    for entry in data["devices"]:
        if entry["id"] == device_id:
            entry.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"sram_bytes": -1}, "sram_bytes"),
        ({"sram_contiguous_bytes": 10 * 2**20}, "exceeds"),
        ({"tier": "satellite"}, "unknown tier 'satellite'"),
        ({"clock_hz": 0}, "clock_hz"),
        ({"int8_macs_per_s": "fast"}, "int8_macs_per_s"),
        ({"active_power_w": float("nan")}, "active_power_w"),
        ({"sources": []}, "sources"),
        ({"sources": ["a datasheet"]}, "URL"),
        ({"can_train": "yes"}, "can_train"),
        ({"flash_bytes": 1.5}, "flash_bytes"),
        ({"op_efficiency": "cmsis-nm"}, "cmsis-nn"),
        ({"op_efficiency": {"conv": 1.0}}, "missing"),
        ({"typo_field": 1}, "unknown field"),
    ],
)
def test_validation_rejects_bad_entries(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(TinylargeError, match=match) as info:
        parse_catalogue(_mutated("stm32l4r5", **changes))
    assert "stm32l4r5" in str(info.value) or "efficiency profile" in str(info.value)


def test_validation_rejects_missing_field_and_duplicates() -> None:
    data = copy.deepcopy(_raw())
    del data["devices"][0]["flash_bytes"]
    with pytest.raises(TinylargeError, match="missing field"):
        parse_catalogue(data)
    data = copy.deepcopy(_raw())
    data["devices"].append(copy.deepcopy(data["devices"][0]))
    with pytest.raises(TinylargeError, match="duplicate"):
        parse_catalogue(data)
    with pytest.raises(TinylargeError, match="devices"):
        parse_catalogue({"efficiency_profiles": {}})


def test_radios_are_known_link_presets() -> None:
    from tinylarge.network.presets import PRESETS

    known = set(PRESETS)
    for device in all_devices():
        unknown = set(device.radios) - known
        assert not unknown, f"{device.id}: radios {sorted(unknown)} are not link presets"
