"""refsd.detect.tflite: the torch TFLite executor against the reference runtime (ai-edge-litert).

The five real MediaPipe models run on real photos and every output is compared with LiteRT;
small graphs built here (with the ``tflite`` package's flatbuffer builders) pin the operator
semantics the real models do not exercise (asymmetric SAME pooling, dilation, depth
multiplier, the three bilinear modes, transposed convolution, PReLU); damaged files fail with
a TFLiteModelError that names the file.

Tolerances come from float32 arithmetic, not from one machine's output: two float32
implementations that sum in different orders differ by a few units of 2**-24 per product
sum, relative to the magnitudes summed, and through 50-100 layers that grows to ~1e-5 of an
output's scale (measured against float64: both LiteRT and this executor stay below 3e-5 on
every output but the mask logits). So outputs must agree within RTOL = 1e-3 of their scale
(the largest |value|): 0.25 px on the 256-px landmark coordinates, far below the 0.5 px that
matters. The landmark models' segmentation logits are ill-conditioned (|logit| ~ 1000 from
ReLU6 features ~ 6 times large weights): float32 noise there reaches ~5e-4 of scale in LiteRT's
own kernels (vs float64), so they get MASK_RTOL = 3e-3 of scale; after the sigmoid that
noise lives only on the few boundary pixels, so the sigmoid masks must also agree on average
within 1e-4 (a half-pixel shift of the mask would cost ~1e-2). The selfie mask is a
probability map computed in well-conditioned float32: within 1e-3 absolute everywhere.
The reference is LiteRT's reference kernels (``BUILTIN_REF``, the definition of TFLite's
arithmetic); its default XNNPACK path is itself 2.5e-3 of scale off float64 on the full
model's mask, so it is used only for the selfie model, whose custom op only XNNPACK runs.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

tflite = pytest.importorskip("tflite")
flatbuffers = pytest.importorskip("flatbuffers")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert (the reference runtime) missing")

from refsd.detect.tflite import TFLiteModel, TFLiteModelError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("REFSD_CACHE_DIR", ROOT / ".cache"))
DETECT = CACHE / "detect"
PHOTOS = (ROOT / "samples" / "camera.png", CACHE / "photos" / "astronaut.png", CACHE / "photos" / "bus.jpg")
RTOL, MASK_RTOL = 1e-3, 3e-3
LANDMARKS = ("pose_landmark_lite", "pose_landmark_full", "pose_landmark_heavy")


def _path(name: str) -> Path:
    path = DETECT / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{path} missing: fetch the detector models with `make detect-models` (refsd models fetch)")
    return path


@functools.cache
def _model(name: str) -> TFLiteModel:
    return TFLiteModel(_path(name))


def _photo(path: Path, shape, signed: bool) -> np.ndarray:
    """A real photo resized to the model input: [0, 1] (landmarks, selfie) or [-1, 1] (detector)."""
    from PIL import Image

    if not path.is_file():
        pytest.skip(f"{path} missing: fetch the test photos with `make photos`")
    _, h, w, _ = shape
    x = np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR), np.float32)[None] / 255.0
    return x * 2.0 - 1.0 if signed else x


def _litert(path: Path, *xs: np.ndarray, xnnpack: bool = False) -> dict[str, np.ndarray]:
    kind = litert.OpResolverType.AUTO if xnnpack else litert.OpResolverType.BUILTIN_REF
    it = litert.Interpreter(model_path=str(path), num_threads=2, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs, strict=True):
        it.set_tensor(d["index"], x)
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}


def _scale(ref: np.ndarray) -> float:
    return max(float(np.abs(ref).max()), 1e-6)


def _compare(name: str, photo: Path, signed: bool, xnnpack: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    model = _model(name)
    x = _photo(photo, model.input_shapes[0], signed)
    ref = _litert(model.path, x, xnnpack=xnnpack)
    outs = model(torch.from_numpy(x))
    assert model.output_names == list(ref), (model.output_names, list(ref))
    pairs = {}
    for out_name, out in zip(model.output_names, outs, strict=True):
        r = ref[out_name]
        assert out.dtype == torch.float32 and tuple(out.shape) == r.shape, (out_name, out.shape, r.shape)
        pairs[out_name] = (out.numpy(), r)
    return pairs


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(v, -80.0, 80.0)))


@pytest.mark.parametrize("name,photo", [(n, p) for n in LANDMARKS[:2] for p in PHOTOS] + [(LANDMARKS[2], PHOTOS[0])],
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_landmark_models_match_litert(name, photo):
    pairs = _compare(name, photo, signed=False)
    assert list(pairs) == ["Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4"]
    mine, ref = pairs["Identity"]  # 39 landmarks x (x, y, z, visibility, presence), 256-px crop units
    assert mine.shape == (1, 195)
    xy = np.abs(mine - ref).reshape(39, 5)[:, :2].max()
    assert xy < min(0.5, RTOL * _scale(ref)), xy
    for out in ("Identity", "Identity_1", "Identity_3", "Identity_4"):  # landmarks, pose flag, heatmap, world
        mine, ref = pairs[out]
        assert np.abs(mine - ref).max() <= RTOL * _scale(ref), (out, np.abs(mine - ref).max(), _scale(ref))
    logits, ref = pairs["Identity_2"]  # segmentation logits, 256 x 256
    assert np.abs(logits - ref).max() <= MASK_RTOL * _scale(ref), (np.abs(logits - ref).max(), _scale(ref))
    assert np.abs(_sigmoid(logits) - _sigmoid(ref)).mean() < 1e-4


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_detector_matches_litert(photo):
    pairs = _compare("pose_detection", photo, signed=True)
    (boxes, ref_boxes), (scores, ref_scores) = pairs["Identity"], pairs["Identity_1"]
    assert boxes.shape == (1, 2254, 12) and scores.shape == (1, 2254, 1)
    assert np.abs(boxes - ref_boxes).max() <= RTOL * _scale(ref_boxes)
    assert np.abs(scores - ref_scores).max() <= RTOL * _scale(ref_scores)
    assert np.argmax(scores) == np.argmax(ref_scores)


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_selfie_segmentation_matches_litert(photo):
    (mask, ref), = _compare("selfie_segmentation", photo, signed=False, xnnpack=True).values()
    assert mask.shape == (1, 256, 256, 1) and 0.0 <= mask.min() and mask.max() <= 1.0
    assert np.abs(mask - ref).max() < 1e-3


@pytest.mark.parametrize("name", ["pose_detection", "pose_landmark_full", "selfie_segmentation"])
def test_a_batch_equals_single_runs(name):
    """Two crops in one batch give what two single runs give (up to float32 summation order)."""
    model = _model(name)
    signed = name == "pose_detection"
    xs = np.concatenate([_photo(p, model.input_shapes[0], signed) for p in PHOTOS[:2]])
    batch = model(torch.from_numpy(xs))
    singles = [model(torch.from_numpy(xs[i : i + 1])) for i in range(2)]
    for k, out in enumerate(batch):
        assert out.shape[0] == 2
        for i in range(2):
            assert out[i : i + 1].shape == singles[i][k].shape
            assert (out[i : i + 1] - singles[i][k]).abs().max() <= 1e-4 * max(out.abs().max().item(), 1e-6)
    again = model(torch.from_numpy(xs[:1]))
    assert all(torch.equal(a, b) for a, b in zip(again, singles[0], strict=True)), "one input must always give the same output"


def test_input_shape_is_checked():
    model = _model("selfie_segmentation")
    assert model.input_shapes == [(1, 256, 256, 3)] and model.output_names == ["activation_10"]
    with pytest.raises(TFLiteModelError, match="expected"):
        model(torch.zeros(1, 128, 128, 3))


# --- small graphs built here: operator semantics the five models leave out ---------------------


def _vector(b, values, prepend, size=4):
    b.StartVector(size, len(values), size)
    for v in reversed(values):
        prepend(v)
    return b.EndVector()


def _options(b, kind: str, **fields):
    getattr(tflite, f"{kind}Start")(b)
    for key, value in fields.items():
        getattr(tflite, f"{kind}Add{key}")(b, value)
    return getattr(tflite, f"{kind}End")(b)


def _graph(tmp_path: Path, tensors, ops, inputs, outputs, name="graph.tflite") -> Path:
    """A one-subgraph .tflite: ``tensors`` = [(shape, constant array or None)], ops = [(op name,
    inputs, outputs, options kind or None, options fields, version)]. int8 constants get
    per-channel scales 0.01 * (k + 1) and zero points k - 1 along their last axis."""
    b = flatbuffers.Builder(4096)
    buffers, tensor_offsets = [], []
    for _, value in tensors:
        vec = None
        if value is not None:  # constant data, 16-byte aligned like the converter writes it
            data = np.ascontiguousarray(value).tobytes()
            b.StartVector(1, len(data), 16)
            b.head -= len(data)
            b.Bytes[b.head : b.head + len(data)] = data
            vec = b.EndVector()
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buffers.append(tflite.BufferEnd(b))
    tflite.BufferStart(b)
    empty = tflite.BufferEnd(b)
    types = {np.dtype(np.int32): "INT32", np.dtype(np.int8): "INT8", np.dtype(np.float16): "FLOAT16"}
    for i, (shape, value) in enumerate(tensors):
        tname = b.CreateString(f"t{i}")
        shp = _vector(b, list(shape), b.PrependInt32)
        quant = None
        if value is not None and value.dtype == np.int8:  # per-channel on the last axis
            scale = _vector(b, [0.01 * (k + 1) for k in range(shape[-1])], b.PrependFloat32)
            zero = _vector(b, [k - 1 for k in range(shape[-1])], b.PrependInt64, size=8)
            quant = _options(b, "QuantizationParameters", Scale=scale, ZeroPoint=zero, QuantizedDimension=len(shape) - 1)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shp)
        kind = types.get(value.dtype, "FLOAT32") if value is not None else "FLOAT32"
        tflite.TensorAddType(b, getattr(tflite.TensorType, kind))
        tflite.TensorAddBuffer(b, i + 1)
        tflite.TensorAddName(b, tname)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        tensor_offsets.append(tflite.TensorEnd(b))
    names = sorted({op[0] for op in ops})
    codes = []
    for op_name in names:
        version = max(op[5] for op in ops if op[0] == op_name)
        code = getattr(tflite.BuiltinOperator, op_name)
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddVersion(b, version)
        codes.append(tflite.OperatorCodeEnd(b))
    op_offsets = []
    for op_name, ins, outs, kind, fields, _ in ops:
        opts = _options(b, kind, **fields) if kind else None
        ivec, ovec = _vector(b, ins, b.PrependInt32), _vector(b, outs, b.PrependInt32)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, names.index(op_name))
        tflite.OperatorAddInputs(b, ivec)
        tflite.OperatorAddOutputs(b, ovec)
        if kind:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, kind))
            tflite.OperatorAddBuiltinOptions(b, opts)
        op_offsets.append(tflite.OperatorEnd(b))
    vt, vi, vo, vops = (_vector(b, tensor_offsets, b.PrependUOffsetTRelative), _vector(b, inputs, b.PrependInt32),
                        _vector(b, outputs, b.PrependInt32), _vector(b, op_offsets, b.PrependUOffsetTRelative))
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, vt)
    tflite.SubGraphAddInputs(b, vi)
    tflite.SubGraphAddOutputs(b, vo)
    tflite.SubGraphAddOperators(b, vops)
    sg = tflite.SubGraphEnd(b)
    vcodes, vsg = _vector(b, codes, b.PrependUOffsetTRelative), _vector(b, [sg], b.PrependUOffsetTRelative)
    vbuf = _vector(b, [empty, *buffers], b.PrependUOffsetTRelative)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, vcodes)
    tflite.ModelAddSubgraphs(b, vsg)
    tflite.ModelAddBuffers(b, vbuf)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    path = tmp_path / name
    path.write_bytes(bytes(b.Output()))
    return path


_RNG = np.random.default_rng(7)


def _w(*shape) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32) * 0.5


def _i32(*values) -> np.ndarray:
    return np.array(values, np.int32)


def _check_graph(path: Path, input_shape):
    x = _RNG.uniform(-2.0, 2.0, input_shape).astype(np.float32)
    ref = _litert(path, x)
    model = TFLiteModel(path)
    for name, out in zip(model.output_names, model(torch.from_numpy(x)), strict=True):
        assert tuple(out.shape) == ref[name].shape, name
        assert np.abs(out.numpy() - ref[name]).max() <= 1e-5 * _scale(ref[name]), name
    return model


def test_convolution_padding_strides_dilation_depth_multiplier(tmp_path):
    c = tflite.Padding
    a = tflite.ActivationFunctionType
    tensors = [((1, 9, 10, 3), None), ((4, 3, 3, 3), _w(4, 3, 3, 3)), ((4,), _w(4)), ((1, 5, 5, 4), None),
               ((1, 3, 3, 8), _w(1, 3, 3, 8)), ((8,), _w(8)), ((1, 5, 5, 8), None),
               ((6, 2, 2, 8), _w(6, 2, 2, 8)), ((6,), _w(6)), ((1, 4, 4, 6), None)]
    conv = dict(Padding=c.SAME, StrideH=2, StrideW=2, DilationHFactor=1, DilationWFactor=1,
                FusedActivationFunction=a.RELU6)  # 9 -> 5 pads 1 + 1, 10 -> 5 pads 0 + 1
    dw = dict(Padding=c.SAME, StrideH=1, StrideW=1, DilationHFactor=2, DilationWFactor=2, DepthMultiplier=2,
              FusedActivationFunction=a.RELU_N1_TO_1)
    valid = dict(conv, Padding=c.VALID, StrideH=1, StrideW=1, FusedActivationFunction=a.TANH)
    ops = [("CONV_2D", [0, 1, 2], [3], "Conv2DOptions", conv, 1),
           ("DEPTHWISE_CONV_2D", [3, 4, 5], [6], "DepthwiseConv2DOptions", dw, 2),
           ("CONV_2D", [6, 7, 8], [9], "Conv2DOptions", valid, 1)]
    _check_graph(_graph(tmp_path, tensors, ops, [0], [3, 6, 9]), (1, 9, 10, 3))


def test_pooling_resize_and_layout_ops(tmp_path):
    c = tflite.Padding
    pool = dict(Padding=c.SAME, StrideH=2, StrideW=2, FilterHeight=3, FilterWidth=3)  # 8 -> 4 pads 0 + 1
    tensors = [((1, 8, 7, 4), None), ((1, 4, 4, 4), None), ((1, 4, 4, 4), None), ((2,), _i32(5, 11)),
               ((1, 5, 11, 4), None), ((1, 5, 11, 4), None), ((1, 5, 11, 4), None), ((1, 16, 14, 1), None),
               ((1, 4, 4, 8), None), ((3,), _i32(1, 16, 8)), ((1, 16, 8), None),
               ((4, 2), _i32(0, 0, 1, 2, 0, 1, 2, 0)), ((1, 11, 8, 6), None), ((2,), _i32(15, 4)), ((1, 15, 4, 4), None)]
    ops = [("MAX_POOL_2D", [0], [1], "Pool2DOptions", pool, 1),
           ("AVERAGE_POOL_2D", [0], [2], "Pool2DOptions", pool, 1),
           ("RESIZE_BILINEAR", [0, 3], [4], "ResizeBilinearOptions", {}, 1),
           ("RESIZE_BILINEAR", [0, 3], [5], "ResizeBilinearOptions", dict(AlignCorners=True), 1),
           ("RESIZE_BILINEAR", [0, 3], [6], "ResizeBilinearOptions", dict(HalfPixelCenters=True), 3),
           ("DEPTH_TO_SPACE", [0], [7], "DepthToSpaceOptions", dict(BlockSize=2), 1),
           ("CONCATENATION", [1, 2], [8], "ConcatenationOptions", dict(Axis=3), 1),
           ("RESHAPE", [8, 9], [10], None, {}, 1),
           ("PAD", [0, 11], [12], None, {}, 1),
           ("RESIZE_BILINEAR", [0, 13], [14], "ResizeBilinearOptions", dict(HalfPixelCenters=True), 3)]
    path = _graph(tmp_path, tensors, ops, [0], [1, 2, 4, 5, 6, 7, 10, 12, 14])
    model = _check_graph(path, (1, 8, 7, 4))
    xs = torch.from_numpy(_RNG.uniform(-1, 1, (3, 8, 7, 4)).astype(np.float32))
    outs = model(xs)  # batch 3 through the reshape
    assert outs[6].shape == (3, 16, 8)
    assert torch.allclose(outs[6][1:2], model(xs[1:2])[6], atol=1e-6)


def test_transpose_conv_prelu_and_elementwise(tmp_path):
    a = tflite.ActivationFunctionType
    tensors = [((1, 5, 5, 4), None), ((4,), _i32(1, 9, 10, 2)), ((2, 3, 3, 4), _w(2, 3, 3, 4)), ((2,), _w(2)),
               ((1, 9, 10, 2), None), ((1, 1, 4), _w(1, 1, 4)), ((1, 5, 5, 4), None), ((1, 5, 5, 4), None),
               ((1, 1, 1, 4), _w(1, 1, 1, 4)), ((1, 5, 5, 4), None), ((1, 5, 5, 4), None), ((1, 5, 5, 4), None)]
    tconv = dict(Padding=tflite.Padding.SAME, StrideH=2, StrideW=2)
    ops = [("TRANSPOSE_CONV", [1, 2, 0, 3], [4], "TransposeConvOptions", tconv, 3),
           ("PRELU", [0, 5], [6], None, {}, 1),
           ("HARD_SWISH", [6], [7], None, {}, 1),
           ("MUL", [7, 8], [9], "MulOptions", dict(FusedActivationFunction=a.NONE), 1),
           ("ADD", [9, 0], [10], "AddOptions", dict(FusedActivationFunction=a.RELU), 1),
           ("LOGISTIC", [10], [11], None, {}, 1)]
    _check_graph(_graph(tmp_path, tensors, ops, [0], [4, 6, 7, 9, 10, 11]), (1, 5, 5, 4))


def test_float16_and_int8_constants_are_dequantized(tmp_path):
    q = _RNG.integers(-100, 100, (1, 1, 1, 4)).astype(np.int8)
    tensors = [((1, 3, 3, 4), None), ((1, 1, 1, 4), q), ((1, 1, 1, 4), None), ((4,), _w(4).astype(np.float16)),
               ((4,), None), ((1, 3, 3, 4), None), ((1, 3, 3, 4), None)]
    add = dict(FusedActivationFunction=tflite.ActivationFunctionType.NONE)
    ops = [("DEQUANTIZE", [1], [2], None, {}, 4), ("DEQUANTIZE", [3], [4], None, {}, 3),
           ("MUL", [0, 2], [5], "MulOptions", add, 1), ("ADD", [5, 4], [6], "AddOptions", add, 1)]
    _check_graph(_graph(tmp_path, tensors, ops, [0], [5, 6]), (1, 3, 3, 4))


# --- bad files --------------------------------------------------------------------------------


def test_unsupported_operator_is_named(tmp_path):
    tensors = [((1, 4), None), ((1, 4), None)]
    path = _graph(tmp_path, tensors, [("LSH_PROJECTION", [0], [1], None, {}, 1)], [0], [1], name="odd.tflite")
    with pytest.raises(TFLiteModelError, match="LSH_PROJECTION") as err:
        TFLiteModel(path)
    assert "odd.tflite" in str(err.value) and "refsd models fetch" in str(err.value)


def test_bad_files_name_the_file_and_the_fix(tmp_path):
    data = _path("selfie_segmentation").read_bytes()
    png = (ROOT / "samples" / "camera.png").read_bytes()
    rng = np.random.default_rng(0)
    cases = {
        "missing": None,
        "empty": b"",
        "png_renamed": png,
        "truncated_half": data[: len(data) // 2],
        "truncated_end": data[:-1000],  # into the last buffer (the model metadata), past the flatbuffer
        "bad_root_offset": b"\xff\xff\xff\x7f" + data[4:],
        "random_bytes": b"\x18\x00\x00\x00TFL3" + rng.bytes(4096),
    }
    for label, content in cases.items():
        path = tmp_path / f"{label}.tflite"
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(TFLiteModelError) as err:
            TFLiteModel(path)
        message = str(err.value)
        assert f"{label}.tflite" in message and "refsd models fetch" in message, (label, message)
