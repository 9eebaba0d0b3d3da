"""The TFLite operators that :mod:`refsd.detect.tflite` runs, written in plain torch.

``build(spec)`` turns one operator of the graph (an :class:`OpSpec`: its name, tensors, static
shapes and flatbuffer options) into a :class:`Step`: a torch function, its operands (runtime
tensor indices, or constants already laid out for the function) and keyword arguments.

Layout: the graph is NHWC (TFLite's order); inside the executor every rank-4 tensor is held
NCHW (the order torch's convolutions want), other ranks as they are. Each builder translates
what depends on the layout (axes, paddings, reshapes, constant operands) once, at load time.
The arithmetic follows TFLite's reference kernels: SAME padding puts the odd pixel at the
bottom/right, SAME average pooling divides by the in-image taps only, RESIZE_BILINEAR's three
coordinate modes, DEPTH_TO_SPACE's NHWC channel order, MediaPipe's
``Convolution2DTransposeBias`` output size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tflite
import torch
import torch.nn.functional as F

_SAME = tflite.Padding.SAME
_A = tflite.ActivationFunctionType
# TFLite's float kernels apply a fused activation as a clamp range (CalculateActivationRange):
# a fused TANH gives no clamp, so every TFLite runtime leaves the values as they are; so do we.
_ACTIVATIONS = {_A.NONE: None, _A.RELU: "relu", _A.RELU6: "relu6", _A.RELU_N1_TO_1: "relu1", _A.TANH: None}


class OpError(Exception):
    """An operator this executor cannot run (the model names the file in the error it raises)."""


@dataclass
class OpSpec:
    """One operator of the graph, with what its builder needs to know about its tensors."""

    name: str
    inputs: list[int]
    outputs: list[int]
    shapes: dict[int, tuple[int, ...]]  # static (file) shape of every tensor
    consts: dict[int, np.ndarray]  # file-layout constants, float ones already float32
    options: Any = None  # flatbuffer table of the builtin options, or None
    custom: bytes = b""  # custom options (CUSTOM ops)

    def shape(self, k: int) -> tuple[int, ...]:
        return self.shapes[self.inputs[k]]

    def out_shape(self) -> tuple[int, ...]:
        return self.shapes[self.outputs[0]]

    def const(self, k: int) -> np.ndarray:
        if k >= len(self.inputs) or self.inputs[k] not in self.consts:
            raise OpError(f"{self.name}: operand {k} must be a constant")
        return self.consts[self.inputs[k]]

    def opts(self, cls):
        if self.options is None:
            return None
        o = cls()
        o.Init(self.options.Bytes, self.options.Pos)
        return o

    def operand(self, k: int, rank: int):
        """Operand ``k`` for an elementwise op whose output has ``rank``: a runtime index or a constant."""
        i = self.inputs[k]
        if i in self.consts:
            a = self.consts[i]
            if rank == 4 and a.ndim < 4:
                a = a.reshape((1,) * (4 - a.ndim) + a.shape)
            return _internal(a)
        r = len(self.shapes[i])
        if r not in (0, rank) and rank == 4:
            raise OpError(f"{self.name}: broadcasting a rank-{r} tensor against a rank-4 one")
        return i


@dataclass
class Step:
    """A torch function with its operands (runtime tensor index, prepared constant or None)."""

    fn: Callable[..., torch.Tensor]
    ins: list
    kwargs: dict = field(default_factory=dict)


def _internal(a: np.ndarray) -> np.ndarray:
    a = a.transpose(0, 3, 1, 2) if a.ndim == 4 else a
    return np.ascontiguousarray(a, dtype=np.float32 if a.dtype.kind == "f" else a.dtype)


def _axis(axis: int, rank: int) -> int:
    """An NHWC axis of a rank-``rank`` tensor, as an axis of the internal layout."""
    axis %= max(rank, 1)
    return (0, 2, 3, 1)[axis] if rank == 4 else axis


def _act(code: int | None) -> str | None:
    if code not in _ACTIVATIONS:
        raise OpError(f"unsupported fused activation {code}")
    return _ACTIVATIONS[code]


def _activate(y: torch.Tensor, act: str | None) -> torch.Tensor:
    if act is None:
        return y
    if act == "relu":
        return torch.relu(y)
    if act == "relu6":
        return y.clamp(0.0, 6.0)
    return y.clamp(-1.0, 1.0)  # relu1


# --- convolution and pooling ------------------------------------------------------------------


def _window(size: int, k: int, stride: int, dilation: int, same: bool) -> tuple[int, int, int]:
    """TFLite's output size and (before, after) padding of one spatial axis."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride) if same else (size - eff + stride) // stride
    total = max((out - 1) * stride + eff - size, 0) if same else 0
    return out, total // 2, total - total // 2


def _geometry(spec: OpSpec, kh: int, kw: int, o, dilation=(1, 1)) -> dict:
    """stride, dilation and padding kwargs (symmetric -> ``padding``, else an explicit ``pre_pad``)."""
    if o is None:
        raise OpError(f"{spec.name}: options missing")
    _, h, w, _ = spec.shape(0)
    stride = (o.StrideH(), o.StrideW())
    if min(stride) < 1 or min(dilation) < 1:
        raise OpError(f"{spec.name}: bad stride {stride} or dilation {dilation}")
    same = o.Padding() == _SAME
    oh, top, bottom = _window(h, kh, stride[0], dilation[0], same)
    ow, left, right = _window(w, kw, stride[1], dilation[1], same)
    if (oh, ow) != tuple(spec.out_shape()[1:3]):
        raise OpError(f"{spec.name}: output {spec.out_shape()} does not match input {spec.shape(0)}")
    if top == bottom and left == right:
        return {"stride": stride, "padding": (top, left), "pre_pad": None}
    return {"stride": stride, "padding": (0, 0), "pre_pad": (left, right, top, bottom)}


def _conv(x, w, b, *, stride, padding, pre_pad, dilation, groups, act):
    if pre_pad is not None:
        x = F.pad(x, pre_pad)
    return _activate(F.conv2d(x, w, b, stride, padding, dilation, groups), act)


def _build_conv(spec: OpSpec) -> Step:
    depthwise = spec.name == "DEPTHWISE_CONV_2D"
    o = spec.opts(tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
    w = spec.const(1)
    if w.ndim != 4 or len(spec.shape(0)) != 4:
        raise OpError(f"{spec.name}: needs a rank-4 input and weights")
    cin, cout = spec.shape(0)[3], w.shape[3] if depthwise else w.shape[0]
    groups = cin if depthwise else cin // max(w.shape[3], 1)
    if groups < 1 or cin % groups or cout % groups:
        raise OpError(f"{spec.name}: weights {w.shape} do not fit {cin} input channels")
    if spec.out_shape()[3:] != (cout,):
        raise OpError(f"{spec.name}: weights {w.shape} do not give output {spec.out_shape()}")
    weight = w[0].transpose(2, 0, 1)[:, None] if depthwise else w.transpose(0, 3, 1, 2)
    bias = spec.const(2).reshape(-1) if len(spec.inputs) > 2 and spec.inputs[2] >= 0 else None
    dilation = (o.DilationHFactor(), o.DilationWFactor()) if o is not None else (1, 1)
    kw = _geometry(spec, w.shape[1], w.shape[2], o, dilation)
    kw.update(dilation=dilation, groups=groups, act=_act(o.FusedActivationFunction()))
    return Step(_conv, [spec.inputs[0], np.ascontiguousarray(weight), bias], kw)


def _tconv(x, w, b, *, stride, crop, act):
    """Transposed convolution, cropped/zero-extended to TFLite's output window, plus bias."""
    y = F.conv_transpose2d(x, w, None, stride)
    top, out_h, left, out_w = crop
    y = F.pad(y, (-left, out_w + left - y.shape[3], -top, out_h + top - y.shape[2]))
    return _activate(y if b is None else y + b.view(1, -1, 1, 1), act)


def _build_transpose_conv(spec: OpSpec) -> Step:
    custom = spec.name.startswith("CUSTOM:")
    if custom:  # MediaPipe's op: input, OHWI weights, bias; options are TfLiteTransposeConvParams
        if len(spec.custom) < 12:
            raise OpError(f"{spec.name}: options missing")
        padding, sw, sh = struct.unpack_from("<3i", spec.custom)
        x_at, w, bias = 0, spec.const(1), spec.const(2).reshape(-1)
        same, act = padding == 1, None
    else:  # builtin: output shape, OHWI weights, input, optional bias
        o = spec.opts(tflite.TransposeConvOptions)
        if o is None:
            raise OpError(f"{spec.name}: options missing")
        x_at, w, sh, sw, same = 2, spec.const(1), o.StrideH(), o.StrideW(), o.Padding() == _SAME
        bias = spec.const(3).reshape(-1) if len(spec.inputs) > 3 and spec.inputs[3] >= 0 else None
        act = _act(o.FusedActivationFunction())
    _, h, wd, cin = spec.shapes[spec.inputs[x_at]]
    _, oh, ow, cout = spec.out_shape()
    kh, kw = w.shape[1], w.shape[2]
    if min(sh, sw) < 1 or w.shape[3] != cin or w.shape[0] != cout:
        raise OpError(f"{spec.name}: weights {w.shape} / strides ({sh}, {sw}) do not fit")
    if custom:
        ph = max(0, kh - (h - 1) % sh - 1) if same else 0
        pw = max(0, kw - (wd - 1) % sw - 1) if same else 0
        if (oh, ow) != (sh * (h - 1) + kh - ph, sw * (wd - 1) + kw - pw):
            raise OpError(f"{spec.name}: output {spec.out_shape()} does not match input {(h, wd)}")
        top, left = ph // 2, pw // 2
    else:  # TFLite pads as for the forward convolution from the output back to the input
        top, left = _window(oh, kh, sh, 1, same)[1], _window(ow, kw, sw, 1, same)[1]
    weight = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # (in, out, kh, kw)
    return Step(_tconv, [spec.inputs[x_at], weight, bias], {"stride": (sh, sw), "crop": (top, oh, left, ow), "act": act})


def _pool(x, *, kind, kernel, stride, padding, pre_pad, act):
    if kind == "max":
        if pre_pad is not None:
            x = F.pad(x, pre_pad, value=float("-inf"))
        y = F.max_pool2d(x, kernel, stride, padding)
    elif pre_pad is not None:  # asymmetric SAME: average over the taps inside the image only
        ones = torch.ones_like(x[:1, :1])
        y = F.avg_pool2d(F.pad(x, pre_pad), kernel, stride) / F.avg_pool2d(F.pad(ones, pre_pad), kernel, stride)
    else:
        y = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False)
    return _activate(y, act)


def _build_pool(spec: OpSpec) -> Step:
    o = spec.opts(tflite.Pool2DOptions)
    if o is None or min(o.FilterHeight(), o.FilterWidth()) < 1:
        raise OpError(f"{spec.name}: options missing")
    kernel = (o.FilterHeight(), o.FilterWidth())
    kw = _geometry(spec, *kernel, o)
    kw.update(kind="max" if spec.name == "MAX_POOL_2D" else "avg", kernel=kernel, act=_act(o.FusedActivationFunction()))
    return Step(_pool, [spec.inputs[0]], kw)


# --- elementwise --------------------------------------------------------------------------------

_BINARY = {"ADD": torch.add, "SUB": torch.sub, "MUL": torch.mul, "DIV": torch.div,
           "MAXIMUM": torch.maximum, "MINIMUM": torch.minimum}
_BINARY_OPTIONS = {"ADD": tflite.AddOptions, "SUB": tflite.SubOptions, "MUL": tflite.MulOptions, "DIV": tflite.DivOptions}


def _binary(a, b, *, fn, act):
    return _activate(fn(a, b), act)


def _prelu(x, alpha):
    return torch.where(x >= 0, x, x * alpha)


def _build_binary(spec: OpSpec) -> Step:
    rank = len(spec.out_shape())
    ins = [spec.operand(0, rank), spec.operand(1, rank)]
    if spec.name == "PRELU":
        return Step(_prelu, ins)
    o = spec.opts(_BINARY_OPTIONS[spec.name]) if spec.name in _BINARY_OPTIONS else None
    return Step(_binary, ins, {"fn": _BINARY[spec.name], "act": _act(o.FusedActivationFunction()) if o else None})


def _hard_swish(x):
    return x * (x + 3.0).clamp(0.0, 6.0) / 6.0


_UNARY = {"LOGISTIC": torch.sigmoid, "TANH": torch.tanh, "RELU": torch.relu, "HARD_SWISH": _hard_swish,
          "RELU6": lambda x: x.clamp(0.0, 6.0), "RELU_N1_TO_1": lambda x: x.clamp(-1.0, 1.0),
          "DEQUANTIZE": torch.Tensor.float}  # DEQUANTIZE / DENSIFY of constants run at load time


def _build_unary(spec: OpSpec) -> Step:
    return Step(_UNARY[spec.name], [spec.inputs[0]])


# --- shape and layout ---------------------------------------------------------------------------


def _concat(*xs, dim, act):
    return _activate(torch.cat(xs, dim), act)


def _build_concat(spec: OpSpec) -> Step:
    o = spec.opts(tflite.ConcatenationOptions)
    rank = len(spec.out_shape())
    ins = [spec.operand(k, rank) for k in range(len(spec.inputs))]
    return Step(_concat, ins, {"dim": _axis(o.Axis() if o else 0, rank), "act": _act(o.FusedActivationFunction() if o else 0)})


def _reshape(x, *, shape, keep_batch, from4, to4):
    if from4:
        x = x.permute(0, 2, 3, 1)  # reshapes run in the graph's (NHWC) element order
    if keep_batch:
        shape = (x.shape[0], *shape[1:])
    elif x.shape[0] != 1:
        raise OpError("this model reshapes across the batch axis: run one image at a time")
    y = x.reshape(shape)
    return y.permute(0, 3, 1, 2) if to4 else y


def _build_reshape(spec: OpSpec) -> Step:
    src, shape = spec.shape(0), list(spec.out_shape())
    if not shape and spec.name == "RESHAPE" and len(spec.inputs) > 1 and spec.inputs[1] in spec.consts:
        shape = [int(d) for d in spec.const(1).reshape(-1)]
    size = int(np.prod(src))
    if shape.count(-1) == 1:
        rest = int(np.prod([d for d in shape if d != -1]))
        shape[shape.index(-1)] = size // max(rest, 1)
    if int(np.prod(shape)) != size or min(shape, default=1) < 0:
        raise OpError(f"{spec.name}: cannot reshape {src} to {shape}")
    keep = bool(src) and bool(shape) and src[0] == shape[0]
    return Step(_reshape, [spec.inputs[0]], {"shape": tuple(shape), "keep_batch": keep,
                                             "from4": len(src) == 4, "to4": len(shape) == 4})


def _pad(x, *, pads, value):
    return F.pad(x, pads, value=value)


def _build_pad(spec: OpSpec) -> Step:
    rank = len(spec.shape(0))
    p = spec.const(1).reshape(-1, 2).astype(int)
    if p.shape[0] != rank or (p < 0).any():
        raise OpError(f"{spec.name}: paddings {p.tolist()} do not fit rank {rank}")
    order = (0, 3, 1, 2) if rank == 4 else range(rank)  # file axis of each internal axis
    pads = tuple(int(v) for d in reversed(list(order)) for v in p[d])
    value = float(spec.const(2).reshape(-1)[0]) if spec.name == "PADV2" and len(spec.inputs) > 2 else 0.0
    return Step(_pad, [spec.inputs[0]], {"pads": pads, "value": value})


def _interp(n_in: int, n_out: int):
    """TFLite's legacy bilinear rows (neither align_corners nor half_pixel_centers): src = dst * in / out."""
    f = np.float32
    src = np.arange(n_out, dtype=f) * (f(n_in) / f(n_out))
    lo = np.clip(np.floor(src), 0, n_in - 1).astype(np.int64)
    hi = np.minimum(np.ceil(src), n_in - 1).astype(np.int64)
    frac = (src - lo.astype(f)).astype(f)
    return lo, hi, (f(1) - frac).astype(f), frac


def _resize_legacy(x, ylo, yhi, y0, y1, xlo, xhi, x0, x1):
    t = x.index_select(2, ylo) * y0 + x.index_select(2, yhi) * y1
    return t.index_select(3, xlo) * x0 + t.index_select(3, xhi) * x1


def _resize(x, *, size, align_corners):
    # torch's two modes are TFLite's: align_corners src = dst * (in - 1) / (out - 1); half-pixel
    # src = (dst + 0.5) * in / out - 0.5, both clamped to the image like TFLite's kernel
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def _build_resize(spec: OpSpec) -> Step:
    o = spec.opts(tflite.ResizeBilinearOptions)
    align, half = (bool(o.AlignCorners()), bool(o.HalfPixelCenters())) if o else (False, False)
    (_, h, w, _), (_, oh, ow, _) = spec.shape(0), spec.out_shape()
    if align and half:
        raise OpError(f"{spec.name}: align_corners and half_pixel_centers cannot both be set")
    if align or half:
        return Step(_resize, [spec.inputs[0]], {"size": (oh, ow), "align_corners": align})
    ylo, yhi, y0, y1 = _interp(h, oh)
    xlo, xhi, x0, x1 = _interp(w, ow)
    return Step(_resize_legacy, [spec.inputs[0], ylo, yhi, y0[:, None], y1[:, None], xlo, xhi, x0, x1])


def _depth_to_space(x, *, bs):
    n, c, h, w = x.shape  # NHWC channel (i * bs + j) * c_out + c goes to pixel (h * bs + i, w * bs + j)
    return x.reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, -1, h * bs, w * bs)


def _build_block(spec: OpSpec) -> Step:
    o = spec.opts(tflite.DepthToSpaceOptions)
    bs = o.BlockSize() if o else 0
    (_, h, w, c), out = spec.shape(0), spec.out_shape()
    if bs < 1 or tuple(out[1:]) != (h * bs, w * bs, c // (bs * bs)):
        raise OpError(f"{spec.name}: block size {bs} does not fit {spec.shape(0)} -> {out}")
    return Step(_depth_to_space, [spec.inputs[0]], {"bs": bs})


_BUILDERS: dict[str, Callable[[OpSpec], Step]] = {
    "CONV_2D": _build_conv, "DEPTHWISE_CONV_2D": _build_conv, "TRANSPOSE_CONV": _build_transpose_conv,
    "CUSTOM:Convolution2DTransposeBias": _build_transpose_conv, "MAX_POOL_2D": _build_pool, "AVERAGE_POOL_2D": _build_pool,
    **{name: _build_binary for name in (*_BINARY, "PRELU")},
    **{name: _build_unary for name in _UNARY},
    "CONCATENATION": _build_concat, "RESHAPE": _build_reshape, "SQUEEZE": _build_reshape,
    "EXPAND_DIMS": _build_reshape, "PAD": _build_pad, "PADV2": _build_pad, "RESIZE_BILINEAR": _build_resize,
    "DEPTH_TO_SPACE": _build_block,
}

SUPPORTED = frozenset(_BUILDERS)


def build(spec: OpSpec) -> Step:
    """The torch step of one operator; :class:`OpError` when it is unsupported or inconsistent."""
    builder = _BUILDERS.get(spec.name)
    if builder is None:
        raise OpError(f"uses the TFLite operator {spec.name}, which RefSD's TFLite executor does not implement")
    if len(spec.outputs) != 1:
        raise OpError(f"{spec.name}: expected one output, got {len(spec.outputs)}")
    return builder(spec)
