"""The ONNX operators that :mod:`refsd.detect.onnx` runs, written in plain torch.

``build(node, consts, lead_batch)`` turns one node of the graph into a :class:`Step` (a torch
function, its operands by tensor name, keyword arguments read from the node's attributes and
constant operands) or, for nodes that only make constants (``Constant``, ``DequantizeLinear``
of constant weights), straight into the constant array. Layout is ONNX's own (NCHW).

Supported (ai.onnx opset 13 or later), with the attribute values ONNX defines for each:
``Conv`` (2-D; explicit, asymmetric or ``SAME_*`` auto padding; groups; dilation),
``MaxPool`` (2-D, ``ceil_mode`` 0), ``Resize`` (2-D; ``nearest`` with the four rounding modes,
``linear``; ``half_pixel``, ``pytorch_half_pixel``, ``align_corners``, ``asymmetric``),
``BatchNormalization`` (inference), ``Gemm``, ``Flatten``, ``Reshape``, ``Transpose``,
``Add`` / ``Sub`` / ``Mul`` (broadcasting), ``Relu``, ``PRelu``, ``Sigmoid``, ``Dropout``
(inference: identity), ``Identity``, ``Constant`` and ``DequantizeLinear`` (int8 / uint8 /
int16 / uint16 / int32 constants, per-tensor, per-axis or blocked). Anything else raises
:class:`OpError` naming the operator or the attribute value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .onnx_proto import ATTR_TENSOR, Node, ProtoError, tensor_array

__all__ = ["OpError", "Step", "build", "SUPPORTED"]


class OpError(Exception):
    """A node this executor cannot run (the model adds the file name and node)."""


@dataclass
class Step:
    fn: Callable[..., torch.Tensor]
    ins: list[str | None]
    kwargs: dict[str, Any] = field(default_factory=dict)


class _View:
    """One node with its attributes and the constants known at load time."""

    def __init__(self, node: Node, consts: dict[str, np.ndarray]):
        self.node, self.consts, self.op = node, consts, node.op_type

    def attr(self, name: str, default=None):
        a = self.node.attributes.get(name)
        return default if a is None else a.value

    def text(self, name: str, default: str) -> str:
        v = self.attr(name, None)
        return default if v is None else v.decode("utf-8", "replace")

    def has(self, k: int) -> bool:
        return k < len(self.node.inputs) and self.node.inputs[k] != ""

    def const(self, k: int, what: str) -> np.ndarray:
        if not self.has(k) or self.node.inputs[k] not in self.consts:
            raise OpError(f"{self.op}: its {what} (input {k}) must be a constant of the file")
        return self.consts[self.node.inputs[k]]

    def ins(self, *ks: int) -> list[str | None]:
        return [self.node.inputs[k] if self.has(k) else None for k in ks]

    def only_outputs(self, n: int) -> None:
        extra = [o for o in self.node.outputs[n:] if o]
        if extra:
            raise OpError(f"{self.op}: optional outputs {extra} are not supported")

    def spatial(self, name: str, default: int, rank: int = 2) -> tuple[int, ...]:
        v = self.attr(name, None)
        v = tuple(int(x) for x in v) if v is not None else (default,) * rank
        if len(v) != rank:
            raise OpError(f"{self.op}: {name}={list(v)}: only 2-D is supported")
        return v


# --- padding --------------------------------------------------------------------------------


def _pads(v: _View, kernel: tuple[int, int]) -> tuple[str, tuple[int, ...]]:
    """(auto_pad, explicit pads (top, left, bottom, right))."""
    auto = v.text("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise OpError(f"{v.op}: auto_pad={auto!r} is not supported")
    pads = tuple(int(p) for p in v.attr("pads", (0, 0, 0, 0)))
    if len(pads) != 4 or any(p < 0 for p in pads):
        raise OpError(f"{v.op}: pads={list(pads)}: 2-D non-negative pads expected")
    return auto, (0, 0, 0, 0) if auto != "NOTSET" else pads


def _same(size: int, k: int, s: int, d: int, upper: bool) -> tuple[int, int]:
    total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _padded(x: torch.Tensor, auto: str, pads, kernel, stride, dilation, value: float = 0.0) -> torch.Tensor:
    if auto.startswith("SAME"):
        (top, bottom), (left, right) = (_same(x.shape[2 + i], kernel[i], stride[i], dilation[i],
                                              auto == "SAME_UPPER") for i in range(2))
    else:
        top, left, bottom, right = pads
    return F.pad(x, (left, right, top, bottom), value=value) if (top or left or bottom or right) else x


# --- the operators --------------------------------------------------------------------------


def _conv(x, w, b=None, *, auto, pads, stride, dilation, groups):
    if auto == "NOTSET" and pads[0] == pads[2] and pads[1] == pads[3]:  # symmetric: the convolution pads
        return F.conv2d(x, w, b, stride, (pads[0], pads[1]), dilation, groups)
    x = _padded(x, auto, pads, tuple(w.shape[2:]), stride, dilation)
    return F.conv2d(x, w, b, stride, 0, dilation, groups)


def _b_conv(v: _View):
    v.only_outputs(1)
    w = v.const(1, "weight")
    if w.ndim != 4:
        raise OpError(f"Conv: only 2-D convolutions are supported (weight of shape {w.shape})")
    kernel = v.spatial("kernel_shape", 0) if v.attr("kernel_shape") is not None else tuple(w.shape[2:])
    if kernel != tuple(w.shape[2:]):
        raise OpError(f"Conv: kernel_shape {list(kernel)} does not match the weight's {list(w.shape[2:])}")
    auto, pads = _pads(v, kernel)
    return Step(_conv, v.ins(0, 1, 2), dict(auto=auto, pads=pads, stride=v.spatial("strides", 1),
                                             dilation=v.spatial("dilations", 1), groups=int(v.attr("group", 1))))


def _maxpool(x, *, kernel, auto, pads, stride, dilation):
    x = _padded(x, auto, pads, kernel, stride, dilation, value=-math.inf)
    return F.max_pool2d(x, kernel, stride, 0, dilation)


def _b_maxpool(v: _View):
    v.only_outputs(1)
    if int(v.attr("ceil_mode", 0)) or int(v.attr("storage_order", 0)):
        raise OpError("MaxPool: ceil_mode=1 / storage_order=1 are not supported")
    kernel = v.spatial("kernel_shape", 0)
    auto, pads = _pads(v, kernel)
    return Step(_maxpool, v.ins(0), dict(kernel=kernel, auto=auto, pads=pads, stride=v.spatial("strides", 1),
                                         dilation=v.spatial("dilations", 1)))


_ROUND = {
    "round_prefer_floor": lambda c: torch.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: torch.floor(c + 0.5),
    "floor": torch.floor,
    "ceil": torch.ceil,
}


def _source(size: int, out: int, scale: float, coord: str, device) -> torch.Tensor:
    """Resize: the input coordinate of each output index (float32, as onnxruntime computes it)."""
    xr = torch.arange(out, device=device, dtype=torch.float32)
    if coord == "asymmetric":
        return xr / scale
    if coord == "align_corners":
        return xr * ((size - 1) / (out - 1)) if out > 1 else torch.zeros_like(xr)
    if coord == "pytorch_half_pixel" and out <= 1:
        return torch.zeros_like(xr)
    return (xr + 0.5) / scale - 0.5  # half_pixel, pytorch_half_pixel


def _resize(x, *, scales, sizes, mode, coord, nearest):
    for axis in (2, 3):
        size = x.shape[axis]
        if sizes is not None:
            out = int(sizes[axis])
            scale = out / size
        else:
            scale = float(scales[axis])
            out = int(math.floor(size * scale))
        if out == size and scale == 1.0:
            continue
        src = _source(size, out, scale, coord, x.device)
        if mode == "nearest":
            idx = _ROUND[nearest](src).clamp(0, size - 1).long()
            x = x.index_select(axis, idx)
            continue
        src = src.clamp(0, size - 1)
        i0 = src.floor().long().clamp(max=size - 1)
        i1 = (i0 + 1).clamp(max=size - 1)
        shape = [1] * x.ndim
        shape[axis] = out
        w1 = (src - i0.to(src.dtype)).to(x.dtype).reshape(shape)
        x = x.index_select(axis, i0) * (1 - w1) + x.index_select(axis, i1) * w1
    return x


def _b_resize(v: _View):
    v.only_outputs(1)
    mode, coord = v.text("mode", "nearest"), v.text("coordinate_transformation_mode", "half_pixel")
    nearest = v.text("nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear"):
        raise OpError(f"Resize: mode={mode!r} is not supported (nearest, linear)")
    if coord not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
        raise OpError(f"Resize: coordinate_transformation_mode={coord!r} is not supported")
    if nearest not in _ROUND:
        raise OpError(f"Resize: nearest_mode={nearest!r} is not supported")
    if int(v.attr("antialias", 0)) or v.attr("axes") is not None or v.text("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise OpError("Resize: antialias / axes / keep_aspect_ratio_policy are not supported")
    scales = v.const(2, "scales") if v.has(2) else None
    sizes = v.const(3, "sizes") if v.has(3) else None
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and sizes.size == 0:
        sizes = None
    if (scales is None) == (sizes is None) or len(scales if sizes is None else sizes) != 4:
        raise OpError("Resize: exactly one of scales / sizes, for 4 axes, is needed")
    if scales is not None and (tuple(scales[:2]) != (1, 1) or (scales[2:] <= 0).any()):
        raise OpError(f"Resize: scales {scales.tolist()}: only positive spatial scales are supported")
    return Step(_resize, v.ins(0), dict(scales=None if scales is None else scales.tolist(),
                                        sizes=None if sizes is None else sizes.tolist(), mode=mode, coord=coord,
                                        nearest=nearest))


def _reshape(x, *, shape, allowzero, lead_batch):
    target = [x.shape[i] if (s == 0 and not allowzero) else s for i, s in enumerate(shape)]
    if lead_batch and x.ndim:
        target[0] = x.shape[0]
    return x.reshape(target)


def _b_reshape(v: _View, lead_batch: bool):
    v.only_outputs(1)
    shape = [int(s) for s in v.const(1, "target shape").reshape(-1)]
    data_is_runtime = v.node.inputs[0] not in v.consts
    lead = lead_batch and data_is_runtime and bool(shape) and shape[0] == 1
    return Step(_reshape, v.ins(0), dict(shape=shape, allowzero=bool(int(v.attr("allowzero", 0))), lead_batch=lead))


def _affine(x, a, b):
    view = (1, -1) + (1,) * (x.ndim - 2)
    return torch.addcmul(b.reshape(view), x, a.reshape(view))


def _b_batchnorm(v: _View):
    v.only_outputs(1)
    if int(v.attr("training_mode", 0)):
        raise OpError("BatchNormalization: training_mode=1 is not supported")
    scale, bias, mean, var = (v.const(k, n).astype(np.float64) for k, n in
                              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    a = scale / np.sqrt(var + float(v.attr("epsilon", 1e-5)))
    return Step(_affine, [v.node.inputs[0], a.astype(np.float32), (bias - mean * a).astype(np.float32)])


def _prelu(x, slope):
    return torch.where(x > 0, x, x * slope)


def _b_prelu(v: _View):
    v.only_outputs(1)
    if len(v.node.inputs) != 2 or not all(v.node.inputs):
        raise OpError("PRelu takes 2 inputs")
    name, slope_name = v.node.inputs
    slope = v.consts.get(slope_name)
    # a constant (C, 1, ..., 1) slope broadcasts along axis 1 of a rank-(ndim + 1) input
    if slope is not None and slope.ndim >= 1 and slope.size == slope.shape[0] and slope.shape[0] > 1:
        return Step(_prelu_per_channel, [name, slope.reshape(-1).astype(np.float32)], dict(rank=slope.ndim + 1))
    return Step(_prelu, [name, slope_name])


def _prelu_per_channel(x, slope, *, rank):
    return F.prelu(x, slope) if x.ndim == rank else _prelu(x, slope.reshape((-1,) + (1,) * (rank - 2)))


def _gemm(a, b, c=None, *, alpha, beta, trans_a, trans_b):
    if trans_a:
        a = a.transpose(-1, -2)
    if alpha == 1.0 and beta == 1.0 and trans_b:
        return F.linear(a, b, c)
    y = a @ (b.transpose(-1, -2) if trans_b else b)
    y = y * alpha if alpha != 1.0 else y
    return y if c is None else y + c * beta


def _b_gemm(v: _View):
    v.only_outputs(1)
    return Step(_gemm, v.ins(0, 1, 2), dict(alpha=float(v.attr("alpha", 1.0)), beta=float(v.attr("beta", 1.0)),
                                            trans_a=bool(int(v.attr("transA", 0))), trans_b=bool(int(v.attr("transB", 0)))))


def _flatten(x, *, axis):
    k = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:k]), math.prod(x.shape[k:]))


def _transpose(x, *, perm):
    return x.permute(tuple(range(x.ndim - 1, -1, -1)) if perm is None else perm)


def _identity(x):
    return x


def _b_dropout(v: _View):
    v.only_outputs(1)
    if v.has(2) and bool(v.const(2, "training_mode").reshape(-1)[0]):
        raise OpError("Dropout: training_mode=true is not supported")
    return Step(_identity, v.ins(0))


def _b_constant(v: _View) -> np.ndarray:
    for name, a in v.node.attributes.items():
        if name == "value" and a.type == ATTR_TENSOR:
            return tensor_array(a.value)
        if name in ("value_float", "value_floats"):
            return np.array(a.value, np.float32)
        if name in ("value_int", "value_ints"):
            return np.array(a.value, np.int64)
    raise OpError(f"Constant: attribute(s) {list(v.node.attributes)} are not supported")


_QUANT = (np.int8, np.uint8, np.int16, np.uint16, np.int32)


def _b_dequantize(v: _View) -> np.ndarray:
    """y = (x - zero_point) * scale, per tensor, per axis or per block (opset 21's block_size)."""
    v.only_outputs(1)
    x, scale = v.const(0, "quantized input (a quantized-activation model?)"), v.const(1, "scale")
    zero = v.const(2, "zero point") if v.has(2) else np.zeros_like(scale, dtype=x.dtype)
    if x.dtype.type not in _QUANT or zero.dtype != x.dtype or scale.dtype.kind != "f" or zero.shape != scale.shape:
        raise OpError(f"DequantizeLinear: {x.dtype} values with {zero.dtype} zero points and {scale.dtype} scales "
                      f"of shapes {zero.shape} / {scale.shape} are not supported")
    if int(v.attr("output_dtype", 0)) not in (0, 1):
        raise OpError("DequantizeLinear: output_dtype other than float is not supported")
    block, axis = int(v.attr("block_size", 0)), int(v.attr("axis", 1))
    if scale.size > 1 or block:
        if not -x.ndim <= axis < x.ndim:
            raise OpError(f"DequantizeLinear: axis {axis} for a rank-{x.ndim} input")
        axis %= x.ndim
    if block:
        want = tuple(-(-n // block) if i == axis else n for i, n in enumerate(x.shape))
        if block < 0 or scale.shape != want:
            raise OpError(f"DequantizeLinear: scales of shape {scale.shape} for blocks of {block} along axis {axis} "
                          f"of {x.shape} (expected {want})")
        scale, zero = (np.repeat(a, block, axis).take(range(x.shape[axis]), axis) for a in (scale, zero))
    elif scale.size == 1:  # per tensor (a scalar, or a 1-element vector as onnxruntime reads it)
        scale, zero = scale.reshape(()), zero.reshape(())
    else:  # per axis
        if scale.ndim != 1 or scale.size != x.shape[axis]:
            raise OpError(f"DequantizeLinear: {scale.size} scales for axis {axis} of {x.shape}")
        view = [1] * x.ndim
        view[axis] = -1
        scale, zero = scale.reshape(view), zero.reshape(view)
    q = x.astype(np.int64) - zero.astype(np.int64)
    with np.errstate(all="ignore"):  # a damaged scale may overflow; the file's sha256 pin catches that
        return (q.astype(np.float32) * scale.astype(np.float32)).astype(np.float32)


_ELEMENTWISE = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Relu": torch.relu, "Sigmoid": torch.sigmoid,
                "Identity": _identity}
_BUILDERS = {"PRelu": _b_prelu, "Conv": _b_conv, "MaxPool": _b_maxpool, "Resize": _b_resize, "BatchNormalization": _b_batchnorm,
             "Gemm": _b_gemm, "Dropout": _b_dropout, "Constant": _b_constant, "DequantizeLinear": _b_dequantize}
SUPPORTED = tuple(sorted({*_ELEMENTWISE, *_BUILDERS, "Reshape", "Transpose", "Flatten"}))


def build(node: Node, consts: dict[str, np.ndarray], lead_batch: bool) -> Step | np.ndarray:
    """One node -> a Step, or the constant it makes. Raises OpError for what is not supported."""
    if node.domain not in ("", "ai.onnx"):
        raise OpError(f"operator {node.domain}.{node.op_type} (custom domain) is not supported")
    v = _View(node, consts)
    if not node.outputs or not node.outputs[0]:
        raise OpError(f"{node.op_type} has no output")
    try:
        if node.op_type in _ELEMENTWISE:
            v.only_outputs(1)
            arity = 2 if node.op_type in ("Add", "Sub", "Mul") else 1
            if len(node.inputs) != arity or not all(node.inputs):
                raise OpError(f"{node.op_type} takes {arity} input(s), the node has {len(node.inputs)}")
            return Step(_ELEMENTWISE[node.op_type], list(node.inputs))
        if node.op_type == "Reshape":
            return _b_reshape(v, lead_batch)
        if node.op_type == "Transpose":
            v.only_outputs(1)
            perm = v.attr("perm")
            return Step(_transpose, v.ins(0), dict(perm=None if perm is None else tuple(int(p) for p in perm)))
        if node.op_type == "Flatten":
            v.only_outputs(1)
            return Step(_flatten, v.ins(0), dict(axis=int(v.attr("axis", 1))))
        if node.op_type in _BUILDERS:
            return _BUILDERS[node.op_type](v)
    except ProtoError as e:
        raise OpError(f"{node.op_type}: {e}") from e
    raise OpError(f"operator {node.op_type} is not supported (supported: {', '.join(SUPPORTED)})")
