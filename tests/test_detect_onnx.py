"""refsd.detect.onnx: the torch ONNX executor against the reference runtime (onnxruntime), and
its protobuf reader against the ``onnx`` package (both test-only dependencies).

The two real face models (YuNet, SFace) run on real photos and every output is compared with
onnxruntime; the reader decodes both files exactly as ``onnx`` does; small graphs built here
(``onnx.helper``) pin the operator semantics the two models do not exercise (asymmetric and
SAME padding, dilation, pooling pads, the Resize modes, Gemm's flags, PRelu broadcasting,
Reshape's 0 / -1 / allowzero, per-axis uint8 dequantization); damaged files fail with an
ONNXModelError that names the file and the fix.

onnxruntime cannot load the files as they are, so the test hands it repaired copies (with
the same arithmetic): YuNet's one-block DequantizeLinear nodes (a scale of one element with
``block_size`` equal to the whole axis) become per-tensor ones, which onnxruntime requires;
SFace's dangling graph inputs (weights whose initializers were dropped when the file was
quantized; no node reads them) are removed; and the input dimensions are made symbolic so
that other batch sizes and image sizes run.

Tolerances come from float32 arithmetic, not from one machine's output: two float32
implementations that sum in different orders differ by a few units of 2**-24 per product sum,
relative to the magnitudes summed; through YuNet's ~50 and SFace's ~60 layers that grows to
~1e-6 of an output's scale (the largest |value|; measured against this executor run in
float64: both onnxruntime and the float32 executor stay below 1.5e-6 of scale on every output
of both models). So each implementation must lie within F64_RTOL = 1e-5 of scale of the
float64 evaluation, and the two within RTOL = 1e-4 of scale of each other: a 10-60x margin
for other SIMD kernels (AVX2, AVX-512, ATen's scalar ``default``) and thread counts, and
still 0.003 px on YuNet's stride-32 box offsets. YuNet's class and objectness outputs are
sigmoids of logits up to ~15 in size: their noise is the logit's, times sigmoid' = p (1 - p),
so there the bound is RTOL x (the logits' scale) x p (1 - p), plus an absolute 2**-21:
onnxruntime's sigmoid (MLAS's rational approximation) is off by up to ~1.3e-7 absolute
whatever p (it returns 2**-22 for p ~ 1e-7), about one float32 ulp of 1 (2**-23); 2**-21
is four of those. SFace's 128-d features must then agree in
cosine to within 1e-6 (|d| <= 1e-4 of scale per element gives 1 - cos <= ~1e-7).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the reference runtime) missing")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from refsd.detect.files import FACE_KEYS, MODEL_FILES  # noqa: E402
from refsd.detect.onnx import ONNXModel, ONNXModelError  # noqa: E402
from refsd.detect.onnx_proto import parse_model, tensor_array  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("REFSD_CACHE_DIR", ROOT / ".cache"))
DETECT = CACHE / "detect"
PHOTOS = (ROOT / "samples" / "camera.png", CACHE / "photos" / "astronaut.png", CACHE / "photos" / "bus.jpg")
#: a face in each photo (x0, y0, x1, y1), where YuNet finds it: SFace's inputs
FACE_BOXES = {"camera.png": (195, 113, 257, 194), "astronaut.png": (178, 63, 268, 176), "bus.jpg": (113, 415, 155, 470)}
RTOL, F64_RTOL = 1e-4, 1e-5
YUNET, SFACE = FACE_KEYS


def _path(key: str) -> Path:
    path = DETECT / MODEL_FILES[key].name
    if not path.is_file():
        pytest.skip(f"{path} missing: fetch the model files with `make detect-models` (refsd models fetch)")
    return path


@functools.cache
def _model(key: str) -> ONNXModel:
    return ONNXModel(_path(key))


@functools.cache
def _model64(key: str) -> ONNXModel:
    return ONNXModel(_path(key)).double()


def _photo(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        pytest.skip(f"{path} missing: fetch the test photos with `make photos`")
    return np.asarray(Image.open(path).convert("RGB"))


def _yunet_input(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """(1, 3, H, W) BGR 0..255, H and W multiples of 32 (bottom/right zero padding), as OpenCV feeds YuNet."""
    from PIL import Image

    img = _photo(path)
    if size is not None:
        img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
    h, w = img.shape[:2]
    out = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    out[0, :, :h, :w] = img[..., ::-1].transpose(2, 0, 1)
    return out


def _sface_input(path: Path) -> np.ndarray:
    """(1, 3, 112, 112) RGB 0..255: the photo's face box resized (a real face, roughly aligned)."""
    from PIL import Image

    face = Image.fromarray(_photo(path)).crop(FACE_BOXES[path.name]).resize((112, 112), Image.BILINEAR)
    return np.asarray(face, np.float32).transpose(2, 0, 1)[None].copy()


def _ort_ready(path: Path) -> bytes:
    """The file as onnxruntime takes it, same arithmetic (see the module docstring)."""
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type == "DequantizeLinear" and int(np.prod(inits[node.input[1]].dims)) == 1:
            for a in node.attribute:
                if a.name == "block_size":
                    a.i = 0
            for name in node.input[1:]:
                del inits[name].dims[:]
    used = {i for n in m.graph.node for i in n.input}
    keep = [i for i in m.graph.input if i.name in used and i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for vi in m.graph.input:
        for k, d in enumerate(vi.type.tensor_type.shape.dim):
            if k != 1:
                d.dim_param = f"d{k}"
    return m.SerializeToString()


@functools.cache
def _session(key: str):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 2, 3
    return ort.InferenceSession(_ort_ready(_path(key)), so, providers=["CPUExecutionProvider"])


def _run_ort(key: str, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = _session(key)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))


def _scale(ref: np.ndarray) -> float:
    return max(float(np.abs(ref).max()), 1e-6) if ref.size else 1e-6


def _tolerance(name: str, ref: np.ndarray, rtol: float):
    """Per element: ``rtol`` of the output's scale; for YuNet's sigmoid outputs (cls, obj) the
    float32 noise lives on the logit, so rtol of the logits' scale times sigmoid' = p (1 - p),
    plus an absolute floor of 2**-21 (see the module docstring)."""
    if not name.startswith(("cls_", "obj_")):
        return rtol * _scale(ref)
    p = np.clip(ref.astype(np.float64), 1e-7, 1 - 1e-7)
    return rtol * np.abs(np.log(p / (1 - p))).max() * p * (1 - p) + 2.0**-21


def _close(a: np.ndarray, b: np.ndarray, name: str, ref: np.ndarray, rtol: float) -> bool:
    return bool((np.abs(a - b) <= _tolerance(name, ref, rtol)).all())


def _compare(key: str, x: np.ndarray, float64: bool = True) -> dict[str, np.ndarray]:
    """Both runtimes on ``x``: within RTOL of each other, and (``float64``) each within F64_RTOL
    of this executor run in float64."""
    model = _model(key)
    ref = _run_ort(key, x)
    mine = {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}
    exact = {k: v.numpy() for k, v in _model64(key)(torch.from_numpy(x).double()).items()} if float64 else ref
    assert list(mine) == list(ref) == model.output_names, (list(mine), list(ref))
    for name, r in ref.items():
        m, e = mine[name], exact[name]
        assert m.dtype == np.float32 and m.shape == r.shape, (name, m.shape, r.shape)
        assert _close(m, r, name, e, RTOL), (name, np.abs(m - r).max(), _scale(r))
        if float64:
            assert _close(m, e, name, e, F64_RTOL), (name, "torch float32 vs float64", np.abs(m - e).max(), _scale(e))
            assert _close(r, e, name, e, F64_RTOL), (name, "onnxruntime vs float64", np.abs(r - e).max(), _scale(e))
    return mine


# --- the protobuf reader --------------------------------------------------------------------


@pytest.mark.parametrize("key", FACE_KEYS)
def test_reader_matches_the_onnx_package(key):
    path = _path(key)
    mine, ref = parse_model(path.read_bytes()), onnx.load(str(path))
    assert mine.ir_version == ref.ir_version and mine.opsets == {o.domain: o.version for o in ref.opset_import}
    assert len(mine.graph.nodes) == len(ref.graph.node) > 100
    for a, b in zip(mine.graph.nodes, ref.graph.node, strict=True):
        assert (a.op_type, a.name, a.domain, a.inputs, a.outputs) == (b.op_type, b.name, b.domain, list(b.input),
                                                                      list(b.output))
        assert sorted(a.attributes) == sorted(x.name for x in b.attribute)
        for attr in b.attribute:
            got, want = a.attributes[attr.name], helper.get_attribute_value(attr)
            assert got.type == attr.type
            if isinstance(want, TensorProto):
                assert np.array_equal(tensor_array(got.value), numpy_helper.to_array(want))
            else:
                assert got.value == (tuple(want) if isinstance(want, list) else want), (attr.name, got.value, want)
    assert [t.name for t in mine.graph.initializers] == [t.name for t in ref.graph.initializer]
    for a, b in zip(mine.graph.initializers, ref.graph.initializer, strict=True):
        x, y = tensor_array(a), numpy_helper.to_array(b)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), a.name
    for a, b in zip(mine.graph.inputs + mine.graph.outputs, [*ref.graph.input, *ref.graph.output], strict=True):
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in b.type.tensor_type.shape.dim)
        assert (a.name, a.elem_type, a.shape) == (b.name, b.type.tensor_type.elem_type, dims)


# --- the real models ------------------------------------------------------------------------


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_yunet_matches_onnxruntime(photo):
    """At the file's 640 x 640 (and in float64), and at the photo's own size padded to multiples of 32."""
    _compare(YUNET, _yunet_input(photo, (640, 640)))
    out = _compare(YUNET, _yunet_input(photo), float64=False)
    h, w = _yunet_input(photo).shape[2:]
    assert out["cls_8"].shape == (1, h * w // 64, 1) and out["kps_32"].shape == (1, h * w // 1024, 10)


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_sface_matches_onnxruntime(photo):
    x = _sface_input(photo)
    (feat,) = _compare(SFACE, x).values()
    ref = _run_ort(SFACE, x)["fc1"]
    assert feat.shape == (1, 128)
    cos = float((feat @ ref.T)[0, 0] / np.linalg.norm(feat) / np.linalg.norm(ref))
    assert cos >= 1 - 1e-6, cos


@pytest.mark.parametrize("key", FACE_KEYS)
def test_a_batch_equals_single_runs(key):
    """Two photos in one batch give what two single runs give (the leading 1 of YuNet's Reshape
    targets is the batch), within float32 summation order."""
    prep = _sface_input if key == SFACE else (lambda p: _yunet_input(p, (640, 480)))
    xs = np.concatenate([prep(p) for p in PHOTOS[:2]])
    model = _model(key)
    batch = model(torch.from_numpy(xs))
    singles = [model(torch.from_numpy(xs[i : i + 1])) for i in range(2)]
    for name, out in batch.items():
        assert out.shape[0] == 2, (name, out.shape)
        for i in range(2):
            single = singles[i][name]
            assert out[i : i + 1].shape == single.shape
            assert _close(out[i : i + 1].numpy(), single.numpy(), name, single.numpy(), F64_RTOL), name
    again = model(torch.from_numpy(xs[:1]))
    assert all(torch.equal(again[k], model(torch.from_numpy(xs[:1]))[k]) for k in again), "not deterministic"
    # (onnxruntime follows the file literally: its [1, -1, C] targets fold a batch of 2 into one row)


def test_model_facts_and_input_checks():
    yunet, sface = _model(YUNET), _model(SFACE)
    assert yunet.input_names == ["input"] and yunet.input_shapes == [(1, 3, 640, 640)] and yunet.opset == 21
    assert yunet.output_names == [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    # SFace lists 30 weights among its graph inputs that no node reads, and two scalars that have initializers
    assert sface.input_names == ["data"] and sface.output_names == ["fc1"]
    with pytest.raises(ONNXModelError, match="expected"):
        sface(torch.zeros(1, 4, 112, 112))
    with pytest.raises(ONNXModelError, match="failed on operands"):
        yunet(torch.zeros(1, 3, 72, 72))  # not a multiple of 32: 9 -> 4 -> 2 -> 4 -> 8 != 9 in the FPN's Add
    with pytest.raises(ONNXModelError, match="takes the input"):
        sface(torch.zeros(1, 3, 112, 112), bogus=torch.zeros(1))
    by_name = sface(data=torch.from_numpy(_sface_input(PHOTOS[0])))["fc1"]
    assert torch.equal(by_name, sface(torch.from_numpy(_sface_input(PHOTOS[0])))["fc1"])


# --- small graphs built here: operator semantics the two models leave out ---------------------

_RNG = np.random.default_rng(11)


def _w(*shape) -> np.ndarray:
    return (_RNG.standard_normal(shape) * 0.5).astype(np.float32)


def _graph_file(tmp_path: Path, nodes, inits: dict[str, np.ndarray], inputs: dict[str, tuple], outputs: list[str],
                name="graph.onnx", opset=21) -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _check_graph(path: Path, **xs: np.ndarray) -> None:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, xs)
    mine = ONNXModel(path)(**{k: torch.from_numpy(v) for k, v in xs.items()})
    for (name, out), r in zip(mine.items(), ref, strict=True):
        assert tuple(out.shape) == r.shape, (name, tuple(out.shape), r.shape)
        assert np.abs(out.numpy() - r).max(initial=0) <= 1e-5 * _scale(r), (name, np.abs(out.numpy() - r).max())


def test_convolution_padding_groups_dilation(tmp_path):
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["asym"], pads=[0, 1, 2, 1], strides=[2, 1], dilations=[1, 2]),
             n("Conv", ["x", "w2"], ["upper"], auto_pad="SAME_UPPER", strides=[2, 2], group=2),
             n("Conv", ["x", "w2"], ["lower"], auto_pad="SAME_LOWER", strides=[2, 2], group=2),
             n("Conv", ["x", "w1"], ["valid"], auto_pad="VALID", kernel_shape=[3, 3]),
             n("MaxPool", ["x"], ["pool"], kernel_shape=[3, 2], pads=[1, 0, 1, 1], strides=[2, 2], dilations=[1, 2]),
             # (onnxruntime leaves the dilation out of SAME pooling pads, against the spec: not tested)
             n("MaxPool", ["x"], ["pool_same"], kernel_shape=[3, 3], auto_pad="SAME_LOWER", strides=[2, 2])]
    inits = {"w1": _w(6, 4, 3, 3), "b1": _w(6), "w2": _w(4, 2, 4, 3)}
    path = _graph_file(tmp_path, nodes, inits, {"x": (2, 4, 9, 10)}, ["asym", "upper", "lower", "valid", "pool",
                                                                       "pool_same"])
    _check_graph(path, x=_w(2, 4, 9, 10))


def test_resize_modes(tmp_path):
    n = helper.make_node
    nodes, outs, inits = [], [], {"roi": np.zeros(0, np.float32)}
    cases = [("nearest", "asymmetric", "floor", [1, 1, 2.0, 2.0], None),
             ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 1.5, 0.75], None),
             ("nearest", "align_corners", "round_prefer_ceil", None, [2, 3, 11, 4]),
             ("nearest", "pytorch_half_pixel", "ceil", [1, 1, 0.6, 2.5], None),
             ("linear", "half_pixel", "floor", [1, 1, 1.7, 0.5], None),
             ("linear", "align_corners", "floor", None, [2, 3, 4, 13]),
             ("linear", "asymmetric", "floor", [1, 1, 3.0, 1.25], None),
             ("linear", "pytorch_half_pixel", "floor", None, [2, 3, 1, 9])]
    for k, (mode, coord, nearest, scales, sizes) in enumerate(cases):
        ins = ["x", "roi", f"s{k}" if scales else "", f"z{k}" if sizes else ""]
        if scales:
            inits[f"s{k}"] = np.array(scales, np.float32)
        if sizes:
            inits[f"z{k}"] = np.array(sizes, np.int64)
        nodes.append(n("Resize", ins, [f"r{k}"], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest))
        outs.append(f"r{k}")
    _check_graph(_graph_file(tmp_path, nodes, inits, {"x": (2, 3, 7, 6)}, outs), x=_w(2, 3, 7, 6))


def test_dense_ops_reshape_and_dequantization(tmp_path):
    n = helper.make_node
    q = _RNG.integers(0, 255, (5, 4)).astype(np.uint8)
    inits = {"wq": q, "ws": np.array([0.01, 0.02, 0.03, 0.04, 0.05], np.float32),
             "wz": np.array([3, 128, 0, 255, 7], np.uint8), "c": _w(5), "t": _w(1, 3, 1, 1), "bt": _w(3, 5),
             "sh": np.array([0, -1, 2], np.int64), "zero": np.array([0, 6], np.int64),
             "pt": np.array([-3, 4], np.int8), "pts": np.array(0.5, np.float32), "ptz": np.array(1, np.int8),
             "mean": _w(3), "var": np.abs(_w(3)) + 0.1, "gamma": _w(3), "beta": _w(3)}
    nodes = [n("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             n("DequantizeLinear", ["pt", "pts", "ptz"], ["ptf"]),
             n("Flatten", ["x"], ["flat"], axis=2),
             n("Gemm", ["a", "w", "c"], ["gemm"], alpha=0.5, beta=2.0, transB=1),
             n("Gemm", ["w", "bt"], ["gemm_t"], transA=1, transB=1),
             n("PRelu", ["x", "t"], ["prelu"]),
             n("PRelu", ["x", "pts"], ["prelu1"]),
             n("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3),
             n("Reshape", ["x", "sh"], ["reshape"]),
             n("Reshape", ["e", "zero"], ["reshape0"], allowzero=1),
             n("Transpose", ["x"], ["transpose"]),
             n("Dropout", ["x"], ["dropout"]),
             n("Mul", ["x", "ptf"], ["mul"]),
             n("Sub", ["mul", "t"], ["sub"]),
             n("Sigmoid", ["sub"], ["sigmoid"]),
             n("Relu", ["sub"], ["relu"])]
    outs = ["flat", "gemm", "gemm_t", "prelu", "prelu1", "bn", "reshape", "reshape0", "transpose", "dropout",
            "mul", "sub", "sigmoid", "relu"]
    path = _graph_file(tmp_path, nodes, inits, {"x": (2, 3, 4, 2), "a": (6, 4), "e": (0, 3, 2)}, outs)
    _check_graph(path, x=_w(2, 3, 4, 2), a=_w(6, 4), e=np.zeros((0, 3, 2), np.float32))


# --- bad files --------------------------------------------------------------------------------


def test_unsupported_operator_and_attribute_are_named(tmp_path):
    n = helper.make_node
    path = _graph_file(tmp_path, [n("Softmax", ["x"], ["y"])], {}, {"x": (1, 4)}, ["y"], name="odd.onnx")
    with pytest.raises(ONNXModelError, match="Softmax") as err:
        ONNXModel(path)
    assert "odd.onnx" in str(err.value) and "refsd models fetch" in str(err.value)
    path = _graph_file(tmp_path, [n("Resize", ["x", "", "s"], ["y"], mode="cubic")],
                       {"s": np.array([1, 1, 2, 2], np.float32)}, {"x": (1, 1, 4, 4)}, ["y"], name="cubic.onnx")
    with pytest.raises(ONNXModelError, match="cubic"):
        ONNXModel(path)
    path = _graph_file(tmp_path, [n("Relu", ["x"], ["y"])], {}, {"x": (1, 4)}, ["y"], name="old.onnx", opset=9)
    with pytest.raises(ONNXModelError, match="opset 9"):
        ONNXModel(path)


def test_bad_files_name_the_file_and_the_fix(tmp_path):
    data = _path(YUNET).read_bytes()
    png = (ROOT / "samples" / "camera.png").read_bytes()
    rng = np.random.default_rng(0)
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10**12], raw_data=b"\0" * 4)  # claims 4 TB
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [huge])
    cases = {
        "missing": None,
        "empty": b"",
        "png_renamed": png,
        "truncated_half": data[: len(data) // 2],
        "truncated_end": data[:-100],
        "random_bytes": rng.bytes(1 << 20),
        "zeros": bytes(4096),
        "huge_tensor": helper.make_model(graph).SerializeToString(),
        "bad_length": data[:10] + b"\xff\xff\xff\xff\x0f" + data[15:],
    }
    for label, content in cases.items():
        path = tmp_path / f"{label}.onnx"
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ONNXModelError) as err:
            ONNXModel(path)
        message = str(err.value)
        assert f"{label}.onnx" in message and "refsd models fetch" in message, (label, message)
