"""FedGKT: exact billing of what moves and runs, heterogeneous extractors, edge compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import small_task

from tinylarge.config import parse_config
from tinylarge.errors import TinylargeError
from tinylarge.models.profiler import profile_model
from tinylarge.models.weights import get_weights
from tinylarge.models.zoo import ModelSpec
from tinylarge.schemes._gkt import cut_of, server_settings, train_server
from tinylarge.schemes.options.transfer import FedGKTOptions
from tinylarge.sim.context import Context
from tinylarge.sim.engine import run_experiment
from tinylarge.sim.ledger import Ledger
from tinylarge.sim.training import make_optimizer


def gkt(**options: Any) -> dict[str, Any]:
    return small_task(scheme={"name": "fedgkt", "options": options}, training={"rounds": 2})


def test_uploads_features_logits_and_labels_and_downloads_server_logits(tmp_path: Path) -> None:
    cfg = parse_config(gkt())
    summary = run_experiment(cfg, out=tmp_path / "r", progress=False)
    ctx = Context(cfg)
    hidden, classes = 32, ctx.dataset.num_classes  # the mlp's extractor: Linear(64, 32) + ReLU
    assert summary["feature_shape"] == [hidden]
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    for c in ctx.clients:
        n = len(c.indices)
        ups = {(e.round, e.what): e.bytes for e in ledger.select(kind="upload", node=c.node)}
        assert ups[(0, "features")] == n * hidden * 4
        assert ups[(0, "logits")] == n * classes * 4
        assert ups[(0, "labels")] == n  # uint8
        downs = ledger.select(kind="download", node=c.node)
        # round 0 has nothing to download; round 1 brings the server's logits on its samples
        assert [(e.round, e.what, e.bytes) for e in downs] == [
            (1, "server-logits", n * classes * 4)
        ]
    # the large model trains on the server, billed to it
    assert ledger.select(side="server", what="server-train")
    assert summary["server_model"]["params"] > summary["params"]
    assert summary["large_accuracy"] is not None


def test_float16_features_halve_the_feature_bytes(tmp_path: Path) -> None:
    full = run_experiment(parse_config(gkt()), out=tmp_path / "a", progress=False)
    half = run_experiment(
        parse_config(gkt(feature_dtype="float16")), out=tmp_path / "b", progress=False
    )
    fa = Ledger.from_csv(tmp_path / "a" / "ledger.csv").total("bytes", what="features")
    fb = Ledger.from_csv(tmp_path / "b" / "ledger.csv").total("bytes", what="features")
    assert fb * 2 == fa
    assert half["accuracy"] > 0.5
    assert full["bytes_up"] > half["bytes_up"]


def test_device_compute_is_the_small_model_only(tmp_path: Path) -> None:
    cfg = parse_config(gkt())
    run_experiment(cfg, out=tmp_path / "r", progress=False)
    ctx = Context(cfg)
    fwd = ctx.model_profile.macs
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    for c in ctx.clients:
        macs = ledger.total("macs", kind="compute", node=c.node, round=0)
        # training (3 forward-equivalents per sample) plus one forward pass for the features
        assert macs == 4 * fwd * len(c.indices)


def test_heterogeneous_extractors_must_agree_on_the_feature_shape() -> None:
    models = {"mcu": {"name": "mlp", "options": {"hidden": 16}}}
    cfg = parse_config(gkt(client_models=models))
    from tinylarge.sim.engine import build_scheme

    with pytest.raises(TinylargeError, match="one feature shape"):
        build_scheme(Context(cfg)).setup()
    # same width, different depth behind the extractor: allowed
    models = {"mcu": {"name": "mlp", "options": {"hidden": [32, 16]}}}
    scheme = build_scheme(Context(parse_config(gkt(client_models=models))))
    scheme.setup()


def test_far_less_edge_compute_than_fedavg_of_the_large_model(tmp_path: Path) -> None:
    """The FedGKT claim (He et al. 2020): device MACs per sample well below the large model's."""
    devices = [{"profile": "rpi4", "count": 2, "link": "wifi6"}]
    base = small_task(
        model={"name": "cnn-tiny", "options": {"width": 8}},
        topology={"server": {"profile": "l4"}, "devices": devices},
        training={"rounds": 1},
    )
    gkt_cfg = parse_config(base | {"scheme": {"name": "fedgkt", "options": {}}})
    large_cfg = parse_config(base | {"model": {"name": "cnn-large", "options": {"width": 16}}})
    a = run_experiment(gkt_cfg, out=tmp_path / "gkt", progress=False)
    b = run_experiment(large_cfg, out=tmp_path / "avg", progress=False)
    assert a["server_model"]["model"] == "cnn-large"
    assert b["device_macs"] > 5 * a["device_macs"]
    large = profile_model(
        ModelSpec("cnn-large", (1, 8, 8), 10, {"width": 16}).build(), input_shape=(1, 8, 8)
    )
    assert b["device_macs"] == 3 * large.macs * sum(
        len(c.indices) for c in Context(large_cfg).clients
    )


def test_extractor_averaging_sends_the_extractor_both_ways(tmp_path: Path) -> None:
    cfg = parse_config(gkt(sync_extractor=True))
    run_experiment(cfg, out=tmp_path / "r", progress=False)
    ledger = Ledger.from_csv(tmp_path / "r" / "ledger.csv")
    extractor_bytes = (64 * 32 + 32) * 4  # Linear(64, 32) of the mlp
    ups = ledger.select(kind="upload", what="extractor")
    downs = ledger.select(kind="download", what="extractor")
    assert len(ups) == cfg.topology.num_devices * cfg.training.rounds
    assert len(downs) == cfg.topology.num_devices * (cfg.training.rounds - 1)
    assert {e.bytes for e in ups + downs} == {extractor_bytes}
    # every device starts a round from the same, averaged extractor
    from tinylarge.schemes.fedgkt import FedGKT
    from tinylarge.sim.engine import build_scheme

    scheme = build_scheme(Context(cfg))
    assert isinstance(scheme, FedGKT)
    scheme.setup()
    scheme.run_round(0)
    starts = [scheme.start_weights(c) for c in scheme.pool]
    for w in starts[1:]:
        np.testing.assert_array_equal(w[0], starts[0][0])
    assert not np.array_equal(scheme.weights[0][0], scheme.weights[1][0])  # local drift


def _server_run(kd_weight: float, device_logits: torch.Tensor) -> list[np.ndarray]:
    options = FedGKTOptions(server_epochs=2, server_batch_size=16, server_kd_weight=kd_weight)
    torch.manual_seed(0)
    model = ModelSpec("mlp", (8,), 3, {"hidden": 16}).build()
    feats = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(40) % 3
    opt = make_optimizer(model, server_settings(options))
    train_server(model, opt, feats, labels, device_logits, options=options, gen=torch.Generator())
    return get_weights(model)


def test_server_optimizers_are_the_reference_implementations() -> None:
    """FedML fedgkt: Adam with AMSGrad, or SGD with Nesterov momentum 0.9; weight decay 1e-4."""
    model = ModelSpec("mlp", (8,), 3, {"hidden": 16}).build()
    adam = make_optimizer(model, server_settings(FedGKTOptions()))
    assert isinstance(adam, torch.optim.Adam)
    assert adam.defaults["amsgrad"] is True
    assert adam.defaults["lr"] == 1e-3
    assert adam.defaults["weight_decay"] == 1e-4
    sgd = make_optimizer(model, server_settings(FedGKTOptions(server_optimizer="sgd")))
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["momentum"], sgd.defaults["nesterov"]) == (0.9, True)


def test_extractor_layers_must_be_a_cut_point() -> None:
    """The device model is cut where models/cuts.py allows it: never inside a layer group."""
    spec = ModelSpec("cnn-tiny", (1, 8, 8), 10, {"width": 4})
    model = spec.build()  # Conv, ReLU, Pool, Conv, ReLU, Pool, Flatten, Linear
    assert cut_of(model, spec, None) == 3  # the first conv stage, as FedGKT's ResNet-8
    assert cut_of(model, spec, 2) == 2
    with pytest.raises(TinylargeError, match=r"extractor_layers.*2, 3, 5, 6.*got 1"):
        cut_of(model, spec, 1)  # between the convolution and its ReLU


def test_server_distillation_to_the_devices_logits_is_weighted_by_server_kd_weight() -> None:
    """Weight 0 (the reference implementation's default): the devices' logits play no part."""
    confident = torch.nn.functional.one_hot(torch.arange(40) % 3, 3).float() * 10
    reversed_ = confident.flip(1)
    a, b = _server_run(0.0, confident), _server_run(0.0, reversed_)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    c, d = _server_run(1.0, confident), _server_run(1.0, reversed_)
    assert any(not np.array_equal(wc, wd) for wc, wd in zip(c, d, strict=True))


def test_device_and_server_optimizers_keep_their_state_across_rounds() -> None:
    """As in the reference implementation, Adam's moments and step counts carry over."""
    from tinylarge.schemes.fedgkt import FedGKT
    from tinylarge.sim.engine import build_scheme

    cfg = parse_config(
        small_task(
            scheme={"name": "fedgkt", "options": {"server_epochs": 2, "server_batch_size": 64}},
            training={"rounds": 2, "optimizer": "adam", "lr": 1e-3},
        )
    )
    ctx = Context(cfg)
    scheme = build_scheme(ctx)
    assert isinstance(scheme, FedGKT)
    scheme.setup()

    def steps(state: dict[str, Any]) -> int:
        return int(next(iter(state["state"].values()))["step"])

    n_total = sum(len(c.indices) for c in scheme.pool)
    server_steps = 2 * -(-n_total // 64)
    for rnd in (0, 1):
        scheme.run_round(rnd)
        assert scheme.server_opt_state is not None
        assert steps(scheme.server_opt_state) == (rnd + 1) * server_steps
        for c in scheme.pool:
            batches = -(-len(c.indices) // cfg.training.batch_size)
            assert steps(scheme.opt_states[c.id]) == (rnd + 1) * batches
