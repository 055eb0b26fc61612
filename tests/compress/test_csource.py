"""The c-source export against TensorFlow Lite Micro, bit for bit, and on a Cortex-M.

The kd examples' students (Fashion-MNIST and NSL-KDD, their example
architectures trained briefly; the claim is about the export, not accuracy)
are converted to int8 TFLite with litert-torch, exported as C, compiled with
the host compiler and run on the whole test set beside the TFLite Micro
interpreter. Every kernel is also checked on hand-built single-model graphs
with random shapes, strides, paddings, scales and activations (Hypothesis).
The Fashion-MNIST student is cross-compiled for Cortex-M4/M7/M33 and run in
QEMU. Tests skip, saying why, where litert-torch, tflite-micro, a host C
compiler, the Arm toolchain or QEMU is missing; nothing is installed here.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylarge.cli.app import main
from tinylarge.compress.contract import make_contract, write_contract
from tinylarge.compress.csource import CSource, export_c_source
from tinylarge.compress.csource.host import HostModel, build_host_library, host_compiler
from tinylarge.compress.firmware import TARGETS, build_firmware, missing_tools, run_qemu
from tinylarge.compress.fit_report import (
    C_HELPER_CODE_BYTES,
    C_KERNEL_CODE_BYTES,
    c_source_footprint,
)
from tinylarge.compress.prune import prune_channels
from tinylarge.compress.quantize import quantize
from tinylarge.compress.tflite import export_tflite_int8, litert_available
from tinylarge.compress.train import TrainConfig, train_model
from tinylarge.config import load_config
from tinylarge.data import Dataset, load_dataset
from tinylarge.errors import TinylargeError
from tinylarge.models.zoo import build_model

HAVE_TFLM = importlib.util.find_spec("tflite_micro") is not None
needs_tflm = pytest.mark.skipif(
    not HAVE_TFLM, reason="tflite-micro not installed: pip install 'tinylarge[tflite-micro]'"
)
needs_cc = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler (cc/gcc/clang)")
needs_litert = pytest.mark.skipif(
    not litert_available(), reason="tflite extra not installed: pip install 'tinylarge[tflite]'"
)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def tflm_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """int8 outputs of the TFLite Micro interpreter, one input at a time."""
    from tflite_micro.python.tflite_micro import runtime  # type: ignore[import-untyped]

    interp = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    shape = interp.get_input_details(0)["shape"]
    rows = []
    for x in inputs:
        interp.set_input(x.reshape(shape), 0)
        interp.invoke()
        rows.append(interp.get_output(0).ravel().copy())
    return np.stack(rows)


def host_outputs(src: CSource, inputs: np.ndarray, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    lib = build_host_library(src.c_files, tmp / f"{src.directory.name}.so")  # one path per build
    out_bytes = int(np.prod(src.model.output.shape))
    host = HostModel(lib, prefix=src.prefix, input_bytes=inputs.shape[1], output_bytes=out_bytes)
    return host.run(inputs)


# --- the kd examples' students ---------------------------------------------------------


@dataclass(frozen=True)
class Student:
    tflite: Path
    source: CSource
    x: np.ndarray  # the whole test set, int8, flattened in the file's layout
    y: np.ndarray


def _student(example: str, tmp: Path) -> Student:
    config = load_config(EXAMPLES / example)
    ds: Dataset = load_dataset(config.task.dataset, seed=0)
    torch.manual_seed(0)
    model = build_model(config.model.name, input_shape=ds.input_shape,
                        num_classes=ds.num_classes, **config.model.options)  # fmt: skip
    options = config.scheme.options
    if options.get("prune") == "channels":  # the student's deployed widths
        amount = float(options["prune_amount"])
        model, _ = prune_channels(model, input_shape=ds.input_shape, amount=amount)
    n = min(len(ds.x_train), 3000)
    train_model(model, ds.x_train[:n], ds.y_train[:n],
                config=TrainConfig(epochs=1, batch_size=64, lr=3e-3, seed=0))  # fmt: skip
    path = tmp / f"{config.task.dataset}.tflite"
    io = export_tflite_int8(model, path, input_shape=ds.input_shape, calibration=ds.x_train[:512])
    contract = make_contract(
        preprocessing=ds.preprocessing, sample_shape=ds.input_shape, labels=ds.label_names,
        dtype="int8", channels_last=io.channels_last, input_scale=io.input_scale,
        input_zero_point=io.input_zero_point,
    )  # fmt: skip
    write_contract(path, contract)
    src = export_c_source(path, tmp / f"{config.task.dataset}-c", contract=contract)
    x = np.moveaxis(ds.x_test, 1, -1) if io.channels_last else ds.x_test
    q = quantize(x, scale=io.input_scale, zero_point=io.input_zero_point)
    return Student(path, src, np.ascontiguousarray(q.reshape(len(q), -1)), ds.y_test)


@pytest.fixture(scope="session")
def fmnist_student(tmp_path_factory: pytest.TempPathFactory) -> Student:
    return _student("kd_fmnist.yaml", tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="session")
def nslkdd_student(tmp_path_factory: pytest.TempPathFactory) -> Student:
    return _student("kd_nslkdd.yaml", tmp_path_factory.mktemp("nslkdd"))


@needs_litert
@needs_tflm
@needs_cc
@pytest.mark.parametrize("which", ["fmnist_student", "nslkdd_student"])
def test_kd_students_equal_tflite_micro_bit_for_bit(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    student: Student = request.getfixturevalue(which)
    ours, classes = host_outputs(student.source, student.x, tmp_path)
    ref = tflm_outputs(student.tflite.read_bytes(), student.x)
    assert ours.shape == ref.shape
    assert len(ours) == len(student.y)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(classes, np.argmax(ref, axis=1))  # invoke's return value
    assert np.mean(classes == student.y) > 0.6  # a working classifier, not a constant
    assert "FULLY_CONNECTED" in student.source.model.operators


# --- every kernel on random single-purpose graphs ----------------------------------------


def _schema() -> Any:
    from tflite_micro.tensorflow.lite.micro.python import (  # type: ignore[import-untyped]
        schema_py_generated as s,
    )

    return s


class Graph:
    """A tiny hand-built TFLite model (the schema's object API), one subgraph."""

    def __init__(self) -> None:
        s = _schema()
        self.s = s
        self.model = s.ModelT()
        self.model.version = 3
        self.model.buffers = [s.BufferT()]
        self.model.operatorCodes = []
        self.sub = s.SubGraphT()
        self.sub.tensors, self.sub.operators = [], []
        self.model.subgraphs = [self.sub]

    def tensor(self, shape: tuple[int, ...], scale: Any, zp: Any = 0, *,
               data: np.ndarray | None = None, dtype: int = 9, qdim: int = 0) -> int:  # fmt: skip
        s = self.s
        t = s.TensorT()
        t.shape, t.type, t.name = list(shape), dtype, f"t{len(self.sub.tensors)}".encode()
        t.buffer = 0
        if data is not None:
            buf = s.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = list(np.atleast_1d(np.asarray(scale, dtype=np.float32)))
            q.zeroPoint = list(np.atleast_1d(np.asarray(zp, dtype=np.int64)))
            q.quantizedDimension = qdim
            t.quantization = q
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def op(self, code: str, inputs: list[int], outputs: list[int], options: Any = None,
           options_type: str | None = None) -> None:  # fmt: skip
        s = self.s
        builtin = getattr(s.BuiltinOperator, code)
        codes = [c.builtinCode for c in self.model.operatorCodes]
        if builtin not in codes:
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 1
            self.model.operatorCodes.append(oc)
            codes.append(builtin)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = codes.index(builtin), inputs, outputs
        if options is not None and options_type is not None:
            op.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
            op.builtinOptions = options
        self.sub.operators.append(op)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers  # type: ignore[import-untyped]

        self.sub.inputs, self.sub.outputs = inputs, outputs
        b = flatbuffers.Builder(1024)
        b.Finish(self.model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _act(rng: np.random.Generator) -> tuple[float, int]:
    return float(rng.uniform(0.01, 0.2)), int(rng.integers(-20, 20))


def _weights(rng: np.random.Generator, shape: tuple[int, ...], channels: int) -> tuple[Any, Any]:
    w = rng.integers(-127, 128, size=shape, dtype=np.int8)
    scales = rng.uniform(0.002, 0.05, size=channels).astype(np.float32)
    return w, scales


def _conv_block(g: Graph, rng: np.random.Generator, x: int, hwc: tuple[int, int, int],
                depthwise: bool) -> tuple[int, tuple[int, int, int]]:  # fmt: skip
    s = g.s
    h, w, c = hwc
    k, stride = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    dil = int(rng.integers(1, 3)) if k > 1 else 1
    same = bool(rng.integers(0, 2))
    eff = (k - 1) * dil + 1
    if not same and (eff > h or eff > w):
        same = True
    oh = (h + stride - 1) // stride if same else (h - eff + stride) // stride
    ow = (w + stride - 1) // stride if same else (w - eff + stride) // stride
    mult = int(rng.integers(1, 3)) if depthwise else 1
    groups = 1 if depthwise or c % 2 else int(rng.choice([1, 2]))
    oc = c * mult if depthwise else groups * int(rng.integers(1, 4))
    fshape = (1, k, k, oc) if depthwise else (oc, k, k, c // groups)
    wts, scales = _weights(rng, fshape, oc)
    in_scale = float(g.sub.tensors[x].quantization.scale[0])
    wt = g.tensor(fshape, scales, np.zeros(oc), data=wts, qdim=3 if depthwise else 0)
    bias = rng.integers(-3000, 3000, size=oc).astype(np.int32)
    bt = g.tensor((oc,), scales * in_scale, np.zeros(oc), data=bias, dtype=2)
    y = g.tensor((1, oh, ow, oc), *_act(rng))
    opt = s.DepthwiseConv2DOptionsT() if depthwise else s.Conv2DOptionsT()
    opt.padding = s.Padding.SAME if same else s.Padding.VALID
    opt.strideW = opt.strideH = stride
    opt.dilationWFactor = opt.dilationHFactor = dil
    opt.fusedActivationFunction = int(rng.choice([0, 1, 2, 3]))
    if depthwise:
        opt.depthMultiplier = mult
    name = "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions"
    g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, wt, bt], [y], opt, name)
    return y, (oh, ow, oc)


def _pool(g: Graph, rng: np.random.Generator, x: int, hwc: tuple[int, int, int],
          kind: str) -> tuple[int, tuple[int, int, int]]:  # fmt: skip
    s = g.s
    h, w, c = hwc
    k, stride, same = int(rng.integers(1, 4)), int(rng.integers(1, 3)), bool(rng.integers(0, 2))
    if not same and (k > h or k > w):
        same = True
    oh = (h + stride - 1) // stride if same else (h - k + stride) // stride
    ow = (w + stride - 1) // stride if same else (w - k + stride) // stride
    q = g.sub.tensors[x].quantization
    y = g.tensor((1, oh, ow, c), q.scale[0], q.zeroPoint[0])
    opt = s.Pool2DOptionsT()
    opt.padding = s.Padding.SAME if same else s.Padding.VALID
    opt.strideW = opt.strideH = stride
    opt.filterWidth = opt.filterHeight = k
    opt.fusedActivationFunction = int(rng.choice([0, 1, 3]))
    g.op(kind, [x], [y], opt, "Pool2DOptions")
    return y, (oh, ow, c)


def random_graph(seed: int) -> tuple[bytes, int]:
    """conv -> depthwise -> pool -> (+ conv branch) add -> pool -> reshape -> fc -> softmax."""
    rng = np.random.default_rng(seed)
    g = Graph()
    s = g.s
    hwc = (int(rng.integers(4, 13)), int(rng.integers(4, 13)), int(rng.integers(1, 5)))
    x0 = g.tensor((1, *hwc), *_act(rng))
    x, hwc = _conv_block(g, rng, x0, hwc, depthwise=False)
    x, hwc = _conv_block(g, rng, x, hwc, depthwise=True)
    x, hwc = _pool(g, rng, x, hwc, str(rng.choice(["MAX_POOL_2D", "AVERAGE_POOL_2D"])))
    other = g.tensor((1, *hwc), *_act(rng))
    wts, scales = _weights(rng, (hwc[2], 1, 1, hwc[2]), hwc[2])
    wt = g.tensor((hwc[2], 1, 1, hwc[2]), scales, np.zeros(hwc[2]), data=wts)
    opt = s.Conv2DOptionsT()
    opt.padding, opt.strideW, opt.strideH = s.Padding.VALID, 1, 1
    opt.dilationWFactor = opt.dilationHFactor = 1
    g.op("CONV_2D", [x, wt, -1], [other], opt, "Conv2DOptions")  # no bias
    summed = g.tensor((1, *hwc), *_act(rng))
    add = s.AddOptionsT()
    add.fusedActivationFunction = int(rng.choice([0, 1, 3]))
    g.op("ADD", [x, other], [summed], add, "AddOptions")
    x, hwc = _pool(g, rng, summed, hwc, str(rng.choice(["MAX_POOL_2D", "AVERAGE_POOL_2D"])))
    flat = int(np.prod(hwc))
    q = g.sub.tensors[x].quantization
    shape = g.tensor((2,), None, data=np.array([1, flat], dtype=np.int32), dtype=2)
    reshaped = g.tensor((1, flat), q.scale[0], q.zeroPoint[0])
    g.op("RESHAPE", [x, shape], [reshaped])
    units = int(rng.integers(2, 12))
    per_channel = bool(rng.integers(0, 2))
    wts, scales = _weights(rng, (units, flat), units if per_channel else 1)
    wt = g.tensor((units, flat), scales, np.zeros(len(scales)), data=wts)
    bias = rng.integers(-2000, 2000, size=units).astype(np.int32)
    bt = g.tensor((units,), scales * q.scale[0], np.zeros(len(scales)), data=bias, dtype=2)
    logits = g.tensor((1, units), *_act(rng))
    fc = s.FullyConnectedOptionsT()
    fc.fusedActivationFunction = int(rng.choice([0, 1]))
    g.op("FULLY_CONNECTED", [reshaped, wt, bt], [logits], fc, "FullyConnectedOptions")
    probs = g.tensor((1, units), 1 / 256, -128)
    sm = s.SoftmaxOptionsT()
    sm.beta = float(rng.choice([1.0, 0.5, 2.0]))
    g.op("SOFTMAX", [logits], [probs], sm, "SoftmaxOptions")
    g.sub.outputs = [probs]
    return g.finish([x0], [probs]), int(np.prod(g.sub.tensors[x0].shape))


@needs_tflm
@needs_cc
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31 - 1))
def test_every_kernel_equals_tflite_micro_on_random_graphs(seed: int, tmp_path: Path) -> None:
    model, in_bytes = random_graph(seed)
    path = tmp_path / f"g{seed}.tflite"
    path.write_bytes(model)
    src = export_c_source(path, tmp_path / f"g{seed}")
    assert set(src.model.kernels) == {
        "tl_conv2d", "tl_depthwise_conv2d", "tl_add", "tl_fully_connected", "tl_softmax",
    } | ({"tl_max_pool", "tl_average_pool"} & set(src.model.kernels))  # fmt: skip
    x = np.random.default_rng(seed).integers(-128, 128, size=(64, in_bytes), dtype=np.int8)
    x[0] = -128  # the ends of the range
    x[1] = 127
    ours, _ = host_outputs(src, x, tmp_path)
    np.testing.assert_array_equal(ours, tflm_outputs(model, x))


# --- what the export refuses -------------------------------------------------------------


def _float_model() -> bytes:
    g = Graph()
    x = g.tensor((1, 4), None, dtype=0)
    w = g.tensor((3, 4), None, data=np.ones((3, 4), dtype=np.float32), dtype=0)
    y = g.tensor((1, 3), None, dtype=0)
    g.op("FULLY_CONNECTED", [x, w, -1], [y], g.s.FullyConnectedOptionsT(), "FullyConnectedOptions")
    return g.finish([x], [y])


def _tanh_model() -> bytes:
    g = Graph()
    x = g.tensor((1, 4), 0.1, 0)
    y = g.tensor((1, 4), 1 / 128, 0)
    g.op("TANH", [x], [y])
    return g.finish([x], [y])


@needs_tflm
@pytest.mark.parametrize(
    ("build", "needle"),
    [(_float_model, "FULLY_CONNECTED has a float32 input"), (_tanh_model, "operator TANH")],
)
def test_unsupported_models_name_the_operator_and_leave_nothing(
    build: Callable[[], bytes], needle: str, tmp_path: Path
) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(build())
    with pytest.raises(TinylargeError, match=needle) as info:
        export_c_source(path, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


@needs_tflm
def test_cli_refuses_an_unsupported_operator_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    art = run / "artifacts"
    art.mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    (run / "summary.json").write_text(json.dumps({"scheme": "kd", "artifact": {
        "path": "artifacts/student-int8.onnx"}}))  # fmt: skip
    (art / "student-int8.onnx").write_bytes(b"unused")
    tfl = art / "student-int8-tflite.tflite"
    tfl.write_bytes(_tanh_model())
    contract = make_contract(preprocessing={"mean": [0.0], "std": [1.0]}, sample_shape=(4,),
                             labels=["a", "b", "c", "d"], dtype="int8", channels_last=False,
                             input_scale=0.1, input_zero_point=0)  # fmt: skip
    write_contract(tfl, contract)
    before = sorted(p.name for p in art.iterdir())
    assert main(["export", str(run), "--format", "c-source"]) == 2
    err = capsys.readouterr().err.strip()
    assert "operator TANH" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in art.iterdir()) == before


# --- Cortex-M firmware --------------------------------------------------------------------

needs_arm = pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))
needs_qemu = pytest.mark.skipif(
    missing_tools(qemu=True) is not None, reason=str(missing_tools(qemu=True))
)


@pytest.fixture(scope="session")
def m4_image(fmnist_student: Student, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_firmware(fmnist_student.source, "cortex-m4", tmp_path_factory.mktemp("m4"))


@needs_litert
@needs_arm
def test_cortex_m4_image_within_10_percent_of_the_fit_report(
    fmnist_student: Student, m4_image: Any
) -> None:
    predicted = c_source_footprint(fmnist_student.source.model)
    assert m4_image.sections[".rodata"] >= predicted.const_bytes - 64  # the weights are there
    assert abs(m4_image.flash_bytes / predicted.flash_bytes - 1) <= 0.10
    assert abs(m4_image.ram_bytes / predicted.ram_bytes - 1) <= 0.10
    assert m4_image.sections[".bss"] >= predicted.arena_bytes


@needs_litert
@needs_arm
@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m33"])
def test_other_cores_link(fmnist_student: Student, target: str, tmp_path: Path) -> None:
    image = build_firmware(fmnist_student.source, target, tmp_path)
    predicted = c_source_footprint(fmnist_student.source.model)
    assert abs(image.flash_bytes / predicted.flash_bytes - 1) <= 0.10


@needs_litert
@needs_qemu
@needs_cc
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_qemu_run_matches_the_host_build(
    fmnist_student: Student, m4_image: Any, target: str, tmp_path: Path
) -> None:
    image = m4_image if target == "cortex-m4" else build_firmware(
        fmnist_student.source, target, tmp_path / target
    )  # fmt: skip
    x = fmnist_student.x[:8]
    out_bytes = int(np.prod(fmnist_student.source.model.output.shape))
    on_board = run_qemu(image, x, output_bytes=out_bytes)
    host, _ = host_outputs(fmnist_student.source, x, tmp_path)
    np.testing.assert_array_equal(on_board, host)
    assert len(set(np.argmax(on_board, 1).tolist())) > 1  # not one class for everything


@needs_arm
def test_kernel_code_table_matches_the_compiled_kernels(tmp_path: Path) -> None:
    """The fit report's code sizes are those of today's kernels on a Cortex-M4."""
    import subprocess

    from tinylarge.compress.csource import kernel_source

    (tmp_path / "tl_kernels.h").write_text(kernel_source("tl_kernels.h"))
    (tmp_path / "tl_kernels.c").write_text(kernel_source("tl_kernels.c"))
    obj = tmp_path / "k.o"
    subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-Os", "-ffunction-sections", "-mthumb",
                    *TARGETS["cortex-m4"].cpu_flags, "-c", str(tmp_path / "tl_kernels.c"),
                    "-o", str(obj)], check=True)  # fmt: skip
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], check=True, capture_output=True,
                        text=True).stdout  # fmt: skip
    sizes = {p[3]: int(p[1], 16) for p in (line.split() for line in nm.splitlines()) if len(p) == 4}
    for kernel, (own, _) in C_KERNEL_CODE_BYTES.items():
        assert sizes[kernel] == pytest.approx(own, rel=0.1, abs=8), kernel
    helpers = sizes["srdhm"] + sizes["rdivpot"] + sizes["tl_mul_by_quantized_multiplier"]
    assert helpers == pytest.approx(C_HELPER_CODE_BYTES["requantize"], rel=0.1)
    assert sizes["pool"] == pytest.approx(C_HELPER_CODE_BYTES["pool"], rel=0.1)
