"""Run an ONNX model file in plain torch: :class:`ONNXModel` and :class:`ONNXModelError`.

The file is decoded by RefSD's own protobuf reader (:mod:`refsd.detect.onnx_proto`: no
``onnx`` package, no onnxruntime, no OpenCV); constants are dequantized (``DequantizeLinear``
of int8 weights, blocked quantization included) and folded (the ``Reshape`` of those weights,
``Constant`` nodes, any node whose inputs are all constants) once, at load, into float32
torch tensors on the model's device; an inference BatchNormalization that follows a Conv is
folded into its weights (as onnxruntime does). Every other node becomes a torch step
(:mod:`refsd.detect.onnx_ops`), NCHW as in the file (rank-4 inputs and weights are stored
channels-last, which the CPU convolutions run several times faster).

The runtime inputs are the graph inputs that have no initializer and that some node reads:
older exporters list every weight among the graph inputs too (SFace does, and it even keeps
inputs that nothing reads after its weights were quantized); those are constants or ignored,
as OpenCV 4 and onnxruntime treat them.

Batch and image size: a graph exported with batch 1 writes that 1 into its ``Reshape``
targets (YuNet's heads reshape to ``[1, -1, C]``); such a leading 1 is read as "the batch"
(OpenCV's importer does the same), so any batch size runs. YuNet's targets have no
input-size-derived numbers (the rest is ``-1``) and its ``Resize`` nodes use scales, so any
input whose sides are multiples of 32 runs; a size the graph cannot take fails with an
error naming the node.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import RefSDError
from . import onnx_ops as ops
from .onnx_proto import Node, ProtoError, parse_model, tensor_array
from .tflite import _full_fp32

__all__ = ["ONNXModel", "ONNXModelError"]

_FIX = "re-fetch it with `refsd models fetch`"
MIN_OPSET = 13


class ONNXModelError(RefSDError):
    """An ONNX model file is missing, damaged, or uses an operator the executor does not run."""


def _fuse_batchnorm(conv: Node, readers: dict[str, list[Node]], consts: dict[str, np.ndarray],
                    keep: set[str]) -> tuple[Node, Node] | None:
    """``(conv', the BatchNormalization)`` when an inference BatchNormalization alone reads ``conv``'s
    output and every weight is a constant: W' = W a, b' = b a + beta - mean a, a = gamma / sqrt(var
    + eps) (onnxruntime folds them the same way); else None."""
    users = readers.get(conv.outputs[0], []) if conv.outputs else []
    if len(users) != 1 or conv.outputs[0] in keep or len(conv.inputs) < 2:
        return None
    bn = users[0]
    if (bn.op_type != "BatchNormalization" or len(bn.inputs) != 5 or bn.inputs[0] != conv.outputs[0]
            or any(bn.outputs[1:]) or "training_mode" in bn.attributes
            or not all(i in consts for i in [*bn.inputs[1:], *(i for i in conv.inputs[1:] if i)])
            or consts[conv.inputs[1]].ndim != 4):
        return None
    gamma, beta, mean, var = (consts[i].astype(np.float64) for i in bn.inputs[1:])
    eps = float(bn.attributes["epsilon"].value) if "epsilon" in bn.attributes else 1e-5
    a = gamma / np.sqrt(var + eps)
    w = consts[conv.inputs[1]].astype(np.float64)
    b = consts[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] else 0.0
    if a.shape != (w.shape[0],):
        return None
    names = (f"{bn.outputs[0]}::folded_weight", f"{bn.outputs[0]}::folded_bias")
    consts[names[0]] = (w * a.reshape(-1, 1, 1, 1)).astype(np.float32)
    consts[names[1]] = (b * a + beta - mean * a).astype(np.float32)
    return replace(conv, inputs=[conv.inputs[0], *names], outputs=[bn.outputs[0]]), bn


def _layout(t: torch.Tensor) -> torch.Tensor:
    """Rank-4 tensors channels-last: the same NCHW tensor to every op, stored NHWC, which oneDNN's
    CPU convolutions run 5-6x faster at YuNet's shapes."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _fold(step: ops.Step, consts: dict[str, np.ndarray]) -> np.ndarray:
    args = [None if r is None else torch.from_numpy(np.array(consts[r])) for r in step.ins]
    with torch.inference_mode():
        out = step.fn(*args, **step.kwargs)
    return out.contiguous().numpy().copy()


class ONNXModel(torch.nn.Module):
    """An ONNX model file as a torch module: ``model(x, ...)`` or ``model(name=x)`` -> ``{output name: tensor}``.

    Attributes:
        path: the file.
        input_names / input_shapes: the runtime inputs and their declared shapes (a dimension
            is an int, a symbolic name or None).
        output_names: the graph outputs, in the file's order.
        opset: the ai.onnx opset the file was exported for.
    """

    def __init__(self, path: str | Path, device=None):
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise ONNXModelError(f"model file {self.path} is missing: {_FIX}")
        data = self.path.read_bytes()
        if not data:
            raise ONNXModelError(f"model file {self.path} is empty: {_FIX}")
        try:
            model = parse_model(data)
            graph = model.graph
            consts = {t.name: tensor_array(t) for t in graph.initializers}
        except ProtoError as e:
            raise ONNXModelError(f"model file {self.path} is damaged or not an ONNX model ({e}): {_FIX}") from e
        except (ValueError, TypeError, OverflowError, MemoryError) as e:
            raise ONNXModelError(f"model file {self.path} is damaged ({type(e).__name__}: {e}): {_FIX}") from e
        self.opset = model.opsets.get("", model.opsets.get("ai.onnx", 0))
        self._unsupported(graph, model)
        for name, c in consts.items():
            if c.dtype.kind == "f" and c.dtype != np.float32:
                consts[name] = c.astype(np.float32)
        used = {i for n in graph.nodes for i in n.inputs if i}
        runtime = [vi for vi in graph.inputs if vi.name not in consts and vi.name in used]
        if not runtime:
            raise ONNXModelError(f"model file {self.path} has no input that the graph reads: {_FIX}")
        self.input_names = [vi.name for vi in runtime]
        self.input_shapes = [vi.shape for vi in runtime]
        self.output_names = [vo.name for vo in graph.outputs]
        lead_batch = all(vi.shape and vi.shape[0] == 1 for vi in runtime)
        device = torch.device(device) if device is not None else torch.device("cpu")

        steps, produced, buffer_of = [], set(self.input_names), {}
        readers: dict[str, list] = {}
        for node in graph.nodes:
            for i in set(node.inputs):
                readers.setdefault(i, []).append(node)
        folded = set()  # ids of BatchNormalization nodes folded into their Conv
        for k, node in enumerate(graph.nodes):
            if id(node) in folded:
                continue
            if node.op_type == "Conv":
                fused = _fuse_batchnorm(node, readers, consts, set(self.output_names))
                if fused is not None:
                    node = fused[0]
                    folded.add(id(fused[1]))
            where = f"node {k} {node.name!r} ({node.op_type})"
            missing = [i for i in node.inputs if i and i not in produced and i not in consts]
            if missing:
                raise ONNXModelError(f"model file {self.path}: {where} reads {missing}, which nothing computes "
                                     f"before it (damaged, or not topologically sorted): {_FIX}")
            try:
                step = ops.build(node, consts, lead_batch)
                if isinstance(step, np.ndarray):
                    consts[node.outputs[0]] = step
                    continue
                if all(r is None or r in consts for r in step.ins):
                    consts[node.outputs[0]] = _fold(step, consts)
                    continue
            except ops.OpError as e:
                raise ONNXModelError(f"model file {self.path}: {where}: {e}. RefSD runs the face models it pins; "
                                     f"if this is one of them, {_FIX}") from e
            except (RuntimeError, ValueError, IndexError, ProtoError) as e:
                raise ONNXModelError(f"model file {self.path} is damaged: {where}: {e}: {_FIX}") from e
            refs = []
            for j, ref in enumerate(step.ins):
                if isinstance(ref, np.ndarray) or (ref is not None and ref in consts):
                    key = f"c{k}_{j}" if isinstance(ref, np.ndarray) else ref
                    if key not in buffer_of:  # one buffer per constant, however many nodes read it
                        buffer_of[key] = f"c{len(buffer_of)}"
                        value = ref if isinstance(ref, np.ndarray) else consts[ref]
                        self.register_buffer(buffer_of[key], _layout(torch.from_numpy(np.array(value)).to(device)),
                                             persistent=False)
                    ref = ("const", buffer_of[key])
                refs.append(ref)
            steps.append([step.fn, tuple(refs), node.outputs[0], step.kwargs, (), where])
            produced.add(node.outputs[0])
        never = [o for o in self.output_names if o not in produced and o not in consts]
        if never:
            raise ONNXModelError(f"model file {self.path}: outputs {never} are never computed: {_FIX}")
        self._const_outputs = {o: torch.from_numpy(np.array(consts[o])) for o in self.output_names
                               if o not in produced}
        last = {}  # free every intermediate after its last use
        for n, step in enumerate(steps):
            for ref in step[1]:
                if isinstance(ref, str):
                    last[ref] = n
        for ref, n in last.items():
            if ref not in self.output_names:
                steps[n][4] += (ref,)
        self._steps = [tuple(s) for s in steps]
        self._device = device

    def _unsupported(self, graph, model) -> None:
        if model.graph.sparse_initializers:
            raise ONNXModelError(f"model file {self.path} has sparse initializers, which RefSD does not load: {_FIX}")
        if self.opset < MIN_OPSET:
            raise ONNXModelError(f"model file {self.path} targets ai.onnx opset {self.opset}; RefSD runs opset "
                                 f"{MIN_OPSET} or later: {_FIX}")
        if not graph.nodes or not graph.outputs:
            raise ONNXModelError(f"model file {self.path} has an empty graph: {_FIX}")
        bad = [vi.name for vi in graph.inputs if vi.elem_type not in (0, 1)]
        bad = [n for n in bad if n not in {t.name for t in graph.initializers}]
        if bad and any(n in {i for node in graph.nodes for i in node.inputs} for n in bad):
            raise ONNXModelError(f"model file {self.path}: inputs {bad} are not float tensors: {_FIX}")

    @property
    def device(self) -> torch.device:
        return next(iter(self._buffers.values())).device if self._buffers else self._device

    @property
    def dtype(self) -> torch.dtype:
        floats = [b.dtype for b in self._buffers.values() if b.is_floating_point()]
        return floats[0] if floats else torch.float32

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The runtime inputs (positional in :attr:`input_names` order, or by name), float
        tensors of any batch size -> ``{output name: tensor}`` in the file's output order."""
        given = dict(zip(self.input_names, args, strict=False))
        if len(args) > len(self.input_names) or set(kwargs) - set(self.input_names) or set(given) & set(kwargs):
            raise ONNXModelError(f"{self.path.name} takes the input(s) {self.input_names}; got "
                                 f"{len(args)} positional and {sorted(kwargs)}")
        given.update(kwargs)
        if set(given) != set(self.input_names):
            raise ONNXModelError(f"{self.path.name}: missing input(s) {sorted(set(self.input_names) - set(given))}")
        device, dtype = self.device, self.dtype
        with torch.inference_mode(), _full_fp32(device):
            values = {}
            for name, shape in zip(self.input_names, self.input_shapes, strict=True):
                x = torch.as_tensor(given[name])
                if shape is not None and (x.dim() != len(shape) or (x.dim() > 1 and isinstance(shape[1], int)
                                                                     and x.shape[1] != shape[1])):
                    raise ONNXModelError(f"{self.path.name}: input {name!r} has shape {tuple(x.shape)}, expected "
                                         f"(N, {', '.join(str(d) for d in shape[1:])})")
                values[name] = _layout(x.to(device=device, dtype=dtype))
            buffers = self._buffers
            for fn, refs, out, kwargs_, free, where in self._steps:
                args_ = [buffers[r[1]] if isinstance(r, tuple) else (None if r is None else values[r]) for r in refs]
                try:
                    values[out] = fn(*args_, **kwargs_)
                except (RuntimeError, ValueError, IndexError) as e:
                    shapes = [tuple(a.shape) for a in args_ if a is not None]
                    raise ONNXModelError(f"{self.path.name}: {where} failed on operands of shape {shapes} "
                                         f"(inputs {[tuple(values[n].shape) for n in self.input_names if n in values]}): "
                                         f"{e}") from e
                for r in free:
                    values.pop(r, None)
            return {o: (values[o] if o in values else self._const_outputs[o].to(device)).contiguous()
                    for o in self.output_names}

