"""Early-exit networks, their profiles and tier paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import get_device
from tinylarge.hardware.cost import Infer, inference_cost, total_cost
from tinylarge.inference.early_exit import (
    EarlyExitSpec,
    check_placement,
    device_segment,
    exit_paths,
    joint_loss,
    profile_exits,
)


@pytest.mark.parametrize(
    ("shape", "backbone"),
    [((1, 28, 28), "cnn"), ((118,), "mlp"), ((1, 64, 13), "cnn"), ((1, 8, 8), "cnn")],
)
def test_auto_backbone_and_exit_shapes(shape: tuple[int, ...], backbone: str) -> None:
    spec = EarlyExitSpec(input_shape=shape, num_classes=7)
    assert spec.resolved_backbone == backbone
    net = spec.build()
    out = net(torch.zeros(2, *shape))
    assert out.shape == (2, 3, 7)
    profiles = profile_exits(net, shape)
    assert len(profiles) == 3
    # the device exit's features are smaller than its input (it sends less than the input)
    if backbone == "cnn" and shape == (1, 28, 28):
        assert profiles[0].out_bytes < 4 * 28 * 28


def test_joint_loss_weights_every_exit() -> None:
    out = torch.randn(4, 3, 5)
    y = torch.tensor([0, 1, 2, 3])
    ce = [torch.nn.functional.cross_entropy(out[:, e], y) for e in range(3)]
    assert joint_loss(out, y, ()) == pytest.approx(float(sum(ce)))
    assert joint_loss(out, y, (1.0, 0.0, 2.0)) == pytest.approx(float(ce[0] + 2 * ce[2]))
    with pytest.raises(ValueError, match="exit weights"):
        joint_loss(out, y, (1.0,))


def test_paths_follow_the_placement() -> None:
    shape = (1, 28, 28)
    net = EarlyExitSpec(input_shape=shape, num_classes=10).build()
    profiles = profile_exits(net, shape)
    paths = exit_paths(profiles, ("device", "edge", "cloud"), input_bytes=3136, result_bytes=40)
    legs = [[s.leg for s in p.steps] for p in paths]
    assert legs[0] == ["device", "device"]
    assert legs[1] == ["device", "device", "uplink", "edge", "edge", "downlink"]
    assert legs[2] == [
        "device", "device", "uplink", "edge", "edge", "backhaul_up", "cloud", "cloud",
        "backhaul_down", "downlink",
    ]  # fmt: skip
    assert paths[1].steps[2].num_bytes == profiles[0].out_bytes
    assert paths[2].steps[5].num_bytes == profiles[1].out_bytes
    assert [p.fallback_exit for p in paths] == [0, 0, 0]
    # what runs: stage 0 of the net at its profile's dtype (fp32), one sample
    assert paths[0].steps[0].work == Infer(profiles[0].stage)
    dev = get_device("stm32h743")
    assert total_cost(Infer(profiles[0].stage), dev) == inference_cost(
        profiles[0].stage, dev, dtype="fp32", batch=1
    )
    assert [s.what for s in paths[2].steps if s.work is not None] == [
        "stage0", "exit0", "stage1", "exit1", "stage2", "exit2",
    ]  # fmt: skip
    edge_only = exit_paths(profiles, ("edge",) * 3, input_bytes=3136, result_bytes=40)
    assert edge_only[0].steps[0].leg == "uplink"
    assert edge_only[0].steps[0].num_bytes == 3136
    assert edge_only[2].fallback_exit is None
    seg = device_segment(net, ("device", "device", "edge"))
    assert seg is not None
    assert len(seg.stages) == 2
    assert device_segment(net, ("edge", "edge", "cloud")) is None


def test_placement_is_validated() -> None:
    assert check_placement(["device", "edge", "edge"], 3) == ("device", "edge", "edge")
    for bad, match in (
        (["device", "edge"], "tiers for 3"),
        (["edge", "device", "cloud"], "device -> edge"),
        (["device", "fog", "cloud"], "unknown"),
    ):
        with pytest.raises(TinylargeError, match=match):
            check_placement(bad, 3)
    with pytest.raises(TinylargeError, match="inputs"):
        EarlyExitSpec(input_shape=(20,), num_classes=2, backbone="cnn").build()
    with torch.no_grad():
        assert np.isfinite(
            float(EarlyExitSpec(input_shape=(20,), num_classes=2).build()(torch.zeros(1, 20)).sum())
        )
