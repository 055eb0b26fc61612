"""Artifacts on disk: ONNX files, C headers and the input contract beside them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tests.compress.conftest import Trained

from tinylarge.compress.contract import REQUIRED_KEYS, make_contract, read_contract, write_contract
from tinylarge.compress.export import c_header, c_symbol, export_onnx, onnx_logits, parse_c_header
from tinylarge.compress.train import predict_logits
from tinylarge.data import load_dataset
from tinylarge.errors import TinylargeError


def test_fp32_onnx_matches_torch(trained_cnn: Trained, tmp_path: Path) -> None:
    ds = trained_cnn.dataset
    path = export_onnx(trained_cnn.model, tmp_path / "m.onnx", input_shape=ds.input_shape)
    np.testing.assert_allclose(
        onnx_logits(path, ds.x_test), predict_logits(trained_cnn.model, ds.x_test), atol=1e-4
    )


def test_export_is_deterministic(trained_cnn: Trained, tmp_path: Path) -> None:
    a = export_onnx(trained_cnn.model, tmp_path / "a.onnx", input_shape=(1, 8, 8))
    b = export_onnx(trained_cnn.model, tmp_path / "b.onnx", input_shape=(1, 8, 8))
    assert a.read_bytes() == b.read_bytes()


def test_c_header_round_trips_and_is_aligned() -> None:
    data = bytes(range(256)) * 3 + b"\x07"
    text = c_header(data, symbol=c_symbol("student-int8.onnx"), source="student-int8.onnx")
    assert parse_c_header(text) == data
    assert "TINYLARGE_ALIGN16 static const unsigned char student_int8_onnx[]" in text
    assert f"student_int8_onnx_len = {len(data)}u" in text
    assert c_symbol("3x.onnx") == "m_3x_onnx"


@pytest.mark.parametrize(("compiler", "std"), [("gcc", "-std=c11"), ("g++", "-std=c++11")])
def test_c_header_compiles(compiler: str, std: str, tmp_path: Path) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    data = bytes([1, 2, 3, 250])
    (tmp_path / "model.h").write_text(c_header(data, symbol="model"))
    main = tmp_path / ("main.c" if compiler == "gcc" else "main.cc")
    main.write_text(
        '#include "model.h"\n'
        "int main(void) { return ((unsigned long)model % 16 == 0 && model_len == 4 "
        "&& model[3] == 250) ? 0 : 1; }\n"
    )
    exe = tmp_path / "main"
    subprocess.run([compiler, std, "-Wall", "-Werror", str(main), "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)], check=False).returncode == 0


def test_contract_lets_a_third_party_rebuild_the_inputs(tmp_path: Path) -> None:
    """Raw 0..16 digit pixels -> contract steps -> exactly the loader's normalized inputs."""
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", seed=0)
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"bytes")
    contract = make_contract(
        preprocessing=ds.preprocessing, sample_shape=ds.input_shape, labels=ds.label_names,
        dtype="int8", input_scale=0.05, input_zero_point=-3,
    )  # fmt: skip
    path = write_contract(artifact, contract)
    assert path == tmp_path / "model.json"
    data = read_contract(artifact)
    assert set(REQUIRED_KEYS) <= set(data)
    assert data["input_shape"] == [1, 1, 8, 8]
    assert data["layout"] == "NCHW"
    assert data["labels"] == [str(v) for v in ds.label_names]
    assert data["artifact"]["bytes"] == 5
    raw = load_digits().images.astype(np.float32)  # the publisher's 0..16 pixels
    unit = raw / data["to_unit"]["divisor"]
    x = (unit - np.float32(data["mean"][0])) / np.float32(data["std"][0])
    found = {tuple(np.round(r.ravel(), 4)) for r in x}
    assert all(tuple(np.round(r.ravel(), 4)) in found for r in ds.x_test[:20])
    json.dumps(data)  # strict JSON


def test_contract_layouts() -> None:
    ds = load_dataset("digits", seed=0)
    c = make_contract(
        preprocessing=ds.preprocessing, sample_shape=(1, 8, 8), labels=ds.label_names,
        dtype="float32", channels_last=True,
    )  # fmt: skip
    assert c["layout"] == "NHWC"
    assert c["input_shape"] == [1, 8, 8, 1]
    assert c["input_scale"] is None
    assert c["norm_axis"] == "C"
    with pytest.raises(TinylargeError, match="input_scale"):
        make_contract(preprocessing=ds.preprocessing, sample_shape=(64,), labels=ds.label_names,
                      dtype="int8")  # fmt: skip


def test_missing_contract_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(TinylargeError, match="no input contract"):
        read_contract(tmp_path / "nothing.onnx")


def test_onnx_logits_of_bytes_equal_of_path(trained_cnn: Trained, tmp_path: Path) -> None:
    path = export_onnx(trained_cnn.model, tmp_path / "m.onnx", input_shape=(1, 8, 8))
    x = trained_cnn.dataset.x_test[:50]
    np.testing.assert_array_equal(onnx_logits(path, x), onnx_logits(path.read_bytes(), x))
