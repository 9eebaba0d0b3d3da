"""Run a TFLite model file in plain torch: :class:`TFLiteModel` and :class:`TFLiteModelError`.

The file is parsed with the pure-Python ``tflite`` flatbuffer reader (no TensorFlow, no
LiteRT); its constants are densified (sparse weights) and dequantized (float16 / int8 weights)
once, into float32 torch tensors, and every operator becomes a torch step
(:mod:`refsd.detect.tflite_ops`). Inputs and outputs are NHWC like the file; in between every
rank-4 tensor is NCHW. The batch size may exceed the file's 1.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import tflite
import torch

from ..errors import RefSDError
from . import tflite_ops as ops

_FIX = "re-fetch it with `refsd models fetch`"
_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_T = tflite.TensorType
_DTYPES = {_T.FLOAT32: np.float32, _T.FLOAT16: np.float16, _T.FLOAT64: np.float64, _T.INT32: np.int32,
           _T.INT64: np.int64, _T.INT16: np.int16, _T.INT8: np.int8, _T.UINT8: np.uint8, _T.BOOL: np.bool_}
_FOLDED = ("DEQUANTIZE", "DENSIFY")  # on constants: done once at load time


class TFLiteModelError(RefSDError):
    """A TFLite model file is missing, damaged, or uses an operator the executor does not run."""


class _Bad(Exception):
    """A parse problem, before the file name is added."""


class _Unsupported(Exception):
    """A well-formed model this executor does not run, before the file name is added."""


def _count(n: int, data: bytes) -> int:
    """A flatbuffer vector length, bounded by the file size (garbage bytes give absurd lengths)."""
    if not 0 <= n <= len(data) // 4:
        raise _Bad(f"a table claims {n} entries")
    return n


def _densify(values: np.ndarray, shape: tuple[int, ...], sp) -> np.ndarray:
    """TFLite's sparse format (per-level DENSE / SPARSE_CSR, optional blocks) to a dense array."""
    rank, levels = len(shape), sp.DimMetadataLength()
    order = [int(v) for v in sp.TraversalOrderAsNumpy()] if sp.TraversalOrderLength() else list(range(rank))
    block_map = [int(v) for v in sp.BlockMapAsNumpy()] if sp.BlockMapLength() else []
    if len(order) != levels or levels != rank + len(block_map) or sorted(order) != list(range(levels)):
        raise _Bad("inconsistent sparsity parameters")
    idx, prev = np.zeros((1, 0), np.int64), np.zeros(1, np.int64)
    sizes = [0] * levels
    for level in range(levels):
        dm = sp.DimMetadata(level)
        if dm.Format() == tflite.DimensionType.DENSE:
            n = sizes[level] = dm.DenseSize()
            k = np.tile(np.arange(n, dtype=np.int64), len(prev))
            idx, prev = np.concatenate([np.repeat(idx, n, 0), k[:, None]], 1), np.repeat(prev, n) * n + k
            continue
        seg, ind = (_index_vector(dm.ArraySegmentsType(), dm.ArraySegments()),
                    _index_vector(dm.ArrayIndicesType(), dm.ArrayIndices()))
        start, counts = seg[prev], seg[prev + 1] - seg[prev]
        if (counts < 0).any():
            raise _Bad("bad sparse segments")
        owner = np.repeat(np.arange(len(prev)), counts)
        pos = start[owner] + np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        idx, prev = np.concatenate([idx[owner], ind[pos][:, None]], 1), pos
    if len(idx) != values.size:
        raise _Bad(f"sparse tensor has {values.size} values for {len(idx)} positions")
    orig = np.zeros((len(idx), rank), np.int64)
    for level in range(rank):
        orig[:, order[level]] = idx[:, level]
    for level in range(rank, levels):  # block levels refine the dimension they block
        b = order[level] - rank
        orig[:, block_map[b]] = orig[:, block_map[b]] * sizes[order.index(rank + b)] + idx[:, level]
    dense = np.zeros(int(np.prod(shape)), values.dtype)
    dense[np.ravel_multi_index(tuple(orig.T), shape)] = values
    return dense.reshape(shape)


def _index_vector(kind: int, table) -> np.ndarray:
    classes = {tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
               tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
               tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector}
    if kind not in classes or table is None:
        raise _Bad("bad sparse index vector")
    vec = classes[kind]()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64) if vec.ValuesLength() else np.zeros(0, np.int64)


def _constant(tensor, buffer, data: bytes, shape: tuple[int, ...]) -> np.ndarray | None:
    """The constant held by ``buffer`` (None for a runtime tensor), in the file's layout."""
    if buffer.DataLength():
        raw = buffer.DataAsNumpy()
    elif buffer.Offset() > 1:  # data stored after the flatbuffer (large models)
        if buffer.Offset() + buffer.Size() > len(data):
            raise _Bad("a weight buffer lies past the end of the file (truncated?)")
        raw = np.frombuffer(data, np.uint8, buffer.Size(), buffer.Offset())
    else:
        return None
    if tensor.Type() not in _DTYPES:
        raise _Bad(f"constant of unsupported type {tensor.Type()}")
    values = np.frombuffer(raw.tobytes(), _DTYPES[tensor.Type()])
    if tensor.Sparsity() is not None:
        return _densify(values, shape, tensor.Sparsity())
    if values.size != int(np.prod(shape)):
        raise _Bad(f"constant {tensor.Name()!r} has {values.size} values for shape {shape}")
    return values.reshape(shape)


def _per_axis(v: np.ndarray, ndim: int, dim: int):
    if v.size <= 1:
        return np.float32(v.reshape(-1)[0]) if v.size else np.float32(0)
    view = [1] * ndim
    view[dim] = -1
    return v.astype(np.float32).reshape(view)


def _dequantize(tensor, values: np.ndarray) -> np.ndarray:
    q = tensor.Quantization()
    if values.dtype.kind == "f" or q is None or not q.ScaleLength():
        return values.astype(np.float32)
    dim = q.QuantizedDimension()
    scale = _per_axis(q.ScaleAsNumpy(), values.ndim, dim)
    zero = _per_axis(q.ZeroPointAsNumpy(), values.ndim, dim) if q.ZeroPointLength() else np.float32(0)
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


def _parse(data: bytes):
    """(op specs, input indices, output indices, static shapes, tensor names) of subgraph 0."""
    model = tflite.Model.GetRootAsModel(data, 0)
    if _count(model.SubgraphsLength(), data) < 1:
        raise _Bad("it holds no graph")
    sg = model.Subgraphs(0)
    buffers = [model.Buffers(i) for i in range(_count(model.BuffersLength(), data))]
    for b in buffers:  # every buffer must lie inside the file: this catches most truncations
        if b.DataLength():
            b.DataAsNumpy()
    n_tensors = _count(sg.TensorsLength(), data)
    shapes, names, consts, runtime_types, quantized = {}, {}, {}, {}, set()
    for i in range(n_tensors):
        t = sg.Tensors(i)
        shapes[i] = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        names[i] = (t.Name() or b"").decode("utf-8", "replace")
        value = _constant(t, buffers[t.Buffer()], data, shapes[i]) if t.Buffer() > 0 else None
        if value is not None:
            consts[i] = value.astype(np.float32) if value.dtype.kind == "f" else value
            if value.dtype.kind in "iu" and t.Quantization() is not None and t.Quantization().ScaleLength():
                quantized.add(i)
        else:
            runtime_types[i] = t.Type()
    codes = []
    for i in range(_count(model.OperatorCodesLength(), data)):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, f"with code {code}")
        codes.append(f"CUSTOM:{(oc.CustomCode() or b'').decode('utf-8', 'replace')}" if name == "CUSTOM" else name)

    def tensors(n: int, get) -> list[int]:
        out = [int(get(j)) for j in range(_count(n, data))]
        if any(not -1 <= i < n_tensors for i in out):
            raise _Bad("an operator names a tensor that does not exist")
        return out

    specs = []
    for k in range(_count(sg.OperatorsLength(), data)):
        op = sg.Operators(k)
        if not 0 <= op.OpcodeIndex() < len(codes):
            raise _Bad(f"operator {k} has no operator code")
        name, ins, outs = codes[op.OpcodeIndex()], tensors(op.InputsLength(), op.Inputs), tensors(op.OutputsLength(), op.Outputs)
        if name in _FOLDED and ins and ins[0] in consts and outs:
            src = consts[ins[0]]
            consts[outs[0]] = _dequantize(sg.Tensors(ins[0]), src) if name == "DEQUANTIZE" else src
            continue
        custom = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        specs.append(ops.OpSpec(name, ins, outs, shapes, consts, op.BuiltinOptions(), custom))
    inputs, outputs = tensors(sg.InputsLength(), sg.Inputs), tensors(sg.OutputsLength(), sg.Outputs)
    used = {i for s in specs for i in s.inputs + s.outputs}
    bad = sorted({runtime_types[i] for i in used if i in runtime_types and runtime_types[i] not in (_T.FLOAT32, _T.FLOAT16)})
    if bad or used & quantized:
        raise _Unsupported("it is a quantized model (integer tensors or weights): only float models are supported")
    return specs, inputs, outputs, shapes, names


def _load(path: Path):
    if not path.is_file():
        raise TFLiteModelError(f"model file {path} is missing: {_FIX}")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        what = "is empty" if not data else "is not a TFLite model (no TFL3 marker)"
        raise TFLiteModelError(f"model file {path} {what}: {_FIX}")
    try:
        return _parse(data)
    except _Unsupported as e:
        raise TFLiteModelError(f"model file {path} is not one RefSD can run: {e}; {_FIX}") from e
    except Exception as e:  # the flatbuffer reader fails in arbitrary ways on damaged bytes
        why = str(e) if isinstance(e, _Bad) else f"{type(e).__name__}: {e}"
        raise TFLiteModelError(f"model file {path} is damaged or truncated ({why}): {_FIX}") from e


@contextlib.contextmanager
def _full_fp32(device: torch.device):
    """cuDNN runs float32 convolutions in TF32 by default; these small models want IEEE float32."""
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    owner, name, value = ((conv, "fp32_precision", "ieee") if hasattr(conv, "fp32_precision")
                          else (torch.backends.cudnn, "allow_tf32", False))
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


class TFLiteModel(torch.nn.Module):
    """A TFLite model file as a torch module: ``model(x_nhwc, ...) -> [outputs, NHWC]``."""

    def __init__(self, path: str | Path, device=None):
        super().__init__()
        self.path = Path(path)
        specs, self._inputs, self._outputs, shapes, names = _load(self.path)
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.input_shapes: list[tuple[int, ...]] = [shapes[i] for i in self._inputs]
        self.output_names: list[str] = [names[i] for i in self._outputs]
        self._ranks = {i: len(s) for i, s in shapes.items()}
        steps, produced = [], set(self._inputs)
        for k, spec in enumerate(specs):
            try:
                step = ops.build(spec)
            except ops.OpError as e:
                raise TFLiteModelError(f"model file {self.path}: operator {k} {e}: {_FIX}") from e
            except Exception as e:  # damaged options tables
                raise TFLiteModelError(f"model file {self.path} is damaged: operator {k} ({spec.name}): {e}: {_FIX}") from e
            refs = []
            for j, ref in enumerate(step.ins):
                if isinstance(ref, np.ndarray):
                    self.register_buffer(f"c{k}_{j}", torch.from_numpy(np.array(ref)).to(device), persistent=False)
                    ref = f"c{k}_{j}"
                elif ref is not None and ref not in produced:
                    raise TFLiteModelError(f"model file {self.path}: operator {k} ({spec.name}) reads a tensor "
                                           f"nothing computes: {_FIX}")
                refs.append(ref)
            steps.append([step.fn, tuple(refs), spec.outputs[0], step.kwargs, ()])
            produced.add(spec.outputs[0])
        missing = [names[i] for i in self._outputs if i not in produced]
        if missing:
            raise TFLiteModelError(f"model file {self.path}: outputs {missing} are never computed: {_FIX}")
        last = {}  # free every intermediate after its last use
        for n, step in enumerate(steps):
            for ref in step[1]:
                if isinstance(ref, int):
                    last[ref] = n
        for ref, n in last.items():
            if ref not in self._outputs:
                steps[n][4] += (ref,)
        self._steps = [tuple(s) for s in steps]
        self._device = device

    @property
    def device(self) -> torch.device:
        return next(iter(self._buffers.values())).device if self._buffers else self._device

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """NHWC float inputs (any batch size) -> the outputs in the file's order, NHWC."""
        if len(inputs) != len(self._inputs):
            raise TFLiteModelError(f"{self.path.name} takes {len(self._inputs)} input(s), got {len(inputs)}")
        device = self.device
        with torch.inference_mode(), _full_fp32(device):
            values = {}
            for k, (i, shape, x) in enumerate(zip(self._inputs, self.input_shapes, inputs, strict=True)):
                x = torch.as_tensor(x)
                if x.dim() != len(shape) or tuple(x.shape[1:]) != tuple(shape[1:]):
                    raise TFLiteModelError(f"{self.path.name}: input {k} has shape {tuple(x.shape)}, "
                                           f"expected (N, {', '.join(map(str, shape[1:]))})")
                x = x.to(device=device, dtype=torch.float32)
                values[i] = x.permute(0, 3, 1, 2) if x.dim() == 4 else x  # NCHW, stored channels-last
            buffers = self._buffers
            for fn, refs, out, kwargs, free in self._steps:
                args = [values[r] if isinstance(r, int) else (None if r is None else buffers[r]) for r in refs]
                try:
                    values[out] = fn(*args, **kwargs)
                except ops.OpError as e:
                    raise TFLiteModelError(f"{self.path.name}: {e}") from e
                for r in free:
                    del values[r]
            return [values[i].permute(0, 2, 3, 1).contiguous() if self._ranks[i] == 4 else values[i].contiguous()
                    for i in self._outputs]
