"""A minimal, dependency-free reader of ONNX model files (the protobuf wire format).

Only the subset that RefSD's executor (:mod:`refsd.detect.onnx`) needs is decoded:
``ModelProto`` (ir_version, opset_import, producer, graph), ``GraphProto`` (node,
initializer, input, output), ``NodeProto`` (input, output, name, op_type, domain, attribute),
``AttributeProto`` (name, type, f, i, s, t, floats, ints, strings) and ``TensorProto`` (dims,
data_type, raw_data, float_data, int32_data, int64_data, double_data, uint64_data, name,
data_location); ``ValueInfoProto`` gives a name, an element type and a shape. Every other
field is skipped by its wire type, as protobuf readers do.

Damaged bytes raise :class:`ProtoError` (the executor adds the file name): every length is
checked against the bytes that hold it before anything is sliced or allocated, so garbage
gives an error at once, never a hang or a huge allocation. Nothing here imports ``onnx``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ProtoError", "Tensor", "Attribute", "Node", "ValueInfo", "Graph", "Model", "parse_model",
           "tensor_array", "DATA_TYPES"]

# wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

#: TensorProto.DataType -> numpy dtype (the ones these readers decode); 8 (STRING) and the
#: float8 / int4 / bfloat16 types are not supported.
DATA_TYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("u1"), 3: np.dtype("i1"), 4: np.dtype("<u2"), 5: np.dtype("<i2"),
    6: np.dtype("<i4"), 7: np.dtype("<i8"), 9: np.dtype("?"), 10: np.dtype("<f2"), 11: np.dtype("<f8"),
    12: np.dtype("<u4"), 13: np.dtype("<u8"),
}
#: AttributeProto.AttributeType
ATTR_FLOAT, ATTR_INT, ATTR_STRING, ATTR_TENSOR, ATTR_GRAPH = 1, 2, 3, 4, 5
ATTR_FLOATS, ATTR_INTS, ATTR_STRINGS, ATTR_TENSORS, ATTR_GRAPHS = 6, 7, 8, 9, 10


class ProtoError(Exception):
    """The bytes are not a well-formed ONNX model (truncated, garbage, or an unsupported encoding)."""


@dataclass
class Tensor:
    """A TensorProto: its values stay in the file's encoding until :func:`tensor_array`."""

    name: str = ""
    dims: tuple[int, ...] = ()
    data_type: int = 0
    raw_data: memoryview | None = None
    float_data: list[np.ndarray] = field(default_factory=list)
    int32_data: list[np.ndarray] = field(default_factory=list)
    int64_data: list[np.ndarray] = field(default_factory=list)
    double_data: list[np.ndarray] = field(default_factory=list)
    uint64_data: list[np.ndarray] = field(default_factory=list)
    external: bool = False


@dataclass
class Attribute:
    """An AttributeProto; ``value`` is the field its ``type`` names (a float, an int, bytes, a
    Tensor, a tuple of those), or None for graphs (which no supported operator takes)."""

    name: str = ""
    type: int = 0
    value: object = None


@dataclass
class Node:
    op_type: str = ""
    name: str = ""
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attributes: dict[str, Attribute] = field(default_factory=dict)


@dataclass
class ValueInfo:
    """A graph input or output: name, element type (0: unknown) and shape (None: unknown rank;
    a dimension is an int, a symbolic name, or None)."""

    name: str = ""
    elem_type: int = 0
    shape: tuple | None = None


@dataclass
class Graph:
    name: str = ""
    nodes: list[Node] = field(default_factory=list)
    initializers: list[Tensor] = field(default_factory=list)
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    sparse_initializers: int = 0


@dataclass
class Model:
    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)  # domain ("" = ai.onnx) -> version
    graph: Graph | None = None


class _Reader:
    """Iterates the fields of one message: ``buf[start:end]``."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview, start: int, end: int):
        self.buf, self.pos, self.end = buf, start, end

    def varint(self) -> int:
        buf, pos, end = self.buf, self.pos, self.end
        value = shift = 0
        while True:
            if pos >= end:
                raise ProtoError("a number runs past the end of its message (truncated file?)")
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift >= 70:
                raise ProtoError("a number is longer than 10 bytes")
        self.pos = pos
        return value & 0xFFFFFFFFFFFFFFFF

    def fields(self, expect: dict[int, int] | None = None):
        """Yield ``(field number, wire type, value)``: an int for varints, bytes for fixed-size
        numbers, ``(start, end)`` for length-delimited fields (checked to lie inside the
        message). ``expect``: {field number: the only wire type it may have}."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ProtoError("field number 0 (garbage bytes?)")
            if expect and expect.get(number, wire) != wire:
                raise ProtoError(f"field {number} has wire type {wire}, expected {expect[number]} (garbage bytes?)")
            if wire == _VARINT:
                yield number, wire, self.varint()
            elif wire == _LEN:
                n = self.varint()
                if n > self.end - self.pos:
                    raise ProtoError(f"field {number} claims {n} bytes, {self.end - self.pos} remain (truncated file?)")
                yield number, wire, (self.pos, self.pos + n)
                self.pos += n
            elif wire in (_I32, _I64):
                size = 4 if wire == _I32 else 8
                if self.pos + size > self.end:
                    raise ProtoError("a fixed-size number runs past the end of its message (truncated file?)")
                raw = bytes(self.buf[self.pos : self.pos + size])
                self.pos += size
                yield number, wire, raw
            else:
                raise ProtoError(f"field {number} has wire type {wire}, which ONNX files never use (garbage bytes?)")


def _signed(v: int, bits: int = 64) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", "replace")


def _varints(data: memoryview) -> np.ndarray:
    """A packed run of varints -> int64 (two's complement, as protobuf encodes negative ints)."""
    b = np.frombuffer(data, np.uint8)
    if b.size == 0:
        return np.zeros(0, np.int64)
    if b[-1] & 0x80:
        raise ProtoError("a packed number list ends inside a number (truncated file?)")
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if int(lengths.max()) > 10:
        raise ProtoError("a number is longer than 10 bytes")
    pos = np.arange(b.size) - np.repeat(starts, lengths)
    vals = (b & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    return np.bitwise_or.reduceat(vals, starts).view(np.int64)


def _fixed(data: memoryview, dtype: str) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    if len(data) % size:
        raise ProtoError(f"a packed list of {size}-byte numbers has {len(data)} bytes")
    return np.frombuffer(data, dtype)


def _repeated(buf: memoryview, wire: int, value, kind: str) -> np.ndarray:
    """One occurrence of a repeated numeric field, packed (``_LEN``) or a single element."""
    if wire == _LEN:
        chunk = buf[value[0] : value[1]]
        return _varints(chunk) if kind == "varint" else _fixed(chunk, kind)
    if kind == "varint" and wire == _VARINT:
        return np.array([_signed(value)], np.int64)
    if kind == "<f4" and wire == _I32 or kind in ("<f8", "<u8") and wire == _I64:
        return np.frombuffer(value, kind).copy()
    raise ProtoError(f"a numeric list has wire type {wire}")


def _tensor(buf: memoryview, start: int, end: int) -> Tensor:
    t = Tensor()
    dims: list[np.ndarray] = []
    for number, wire, value in _Reader(buf, start, end).fields({2: _VARINT, 8: _LEN, 9: _LEN, 14: _VARINT}):
        if number == 1:
            dims.append(_repeated(buf, wire, value, "varint"))
        elif number == 2:
            t.data_type = value
        elif number == 4:
            t.float_data.append(_repeated(buf, wire, value, "<f4"))
        elif number == 5:
            t.int32_data.append(_repeated(buf, wire, value, "varint"))
        elif number == 7:
            t.int64_data.append(_repeated(buf, wire, value, "varint"))
        elif number == 8:
            t.name = _text(buf, value)
        elif number == 9:
            t.raw_data = buf[value[0] : value[1]]
        elif number == 10:
            t.double_data.append(_repeated(buf, wire, value, "<f8"))
        elif number == 11:
            t.uint64_data.append(_repeated(buf, wire, value, "varint"))
        elif number == 14:
            t.external = value == 1
        elif number == 13:
            t.external = True
    t.dims = tuple(int(d) for d in (np.concatenate(dims) if dims else ()))
    return t


def tensor_array(t: Tensor) -> np.ndarray:
    """The values of ``t`` as a numpy array of its shape (a copy, independent of the file's bytes)."""
    if t.external:
        raise ProtoError(f"tensor {t.name!r} keeps its data in an external file; only self-contained models load")
    if t.data_type not in DATA_TYPES:
        raise ProtoError(f"tensor {t.name!r} has data type {t.data_type}, which is not supported")
    if any(d < 0 for d in t.dims):
        raise ProtoError(f"tensor {t.name!r} has a negative dimension {t.dims}")
    dtype = DATA_TYPES[t.data_type]
    count = 1
    for d in t.dims:
        count *= d
    if t.raw_data is not None:
        if count * dtype.itemsize != len(t.raw_data):
            raise ProtoError(f"tensor {t.name!r} holds {len(t.raw_data)} bytes for shape {t.dims} "
                             f"({count * dtype.itemsize} expected)")
        return np.frombuffer(t.raw_data, dtype).reshape(t.dims).copy()
    if t.data_type == 1:
        chunks = t.float_data
    elif t.data_type == 7:
        chunks = t.int64_data
    elif t.data_type == 11:
        chunks = t.double_data
    elif t.data_type in (12, 13):
        chunks = t.uint64_data
    else:
        chunks = t.int32_data
    values = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
    if values.size != count:
        raise ProtoError(f"tensor {t.name!r} holds {values.size} values for shape {t.dims}")
    if t.data_type == 10:  # float16 bit patterns in int32_data
        values = values.astype(np.uint16).view(np.float16)
    elif t.data_type == 9:
        values = values != 0
    return values.astype(dtype).reshape(t.dims)


def _attribute(buf: memoryview, start: int, end: int) -> Attribute:
    a = Attribute()
    seen: dict[int, object] = {}
    floats: list[np.ndarray] = []
    ints: list[np.ndarray] = []
    strings: list[bytes] = []
    tensors: list[Tensor] = []
    expect = {1: _LEN, 20: _VARINT, 2: _I32, 3: _VARINT, 4: _LEN, 5: _LEN, 9: _LEN, 10: _LEN}
    for number, wire, value in _Reader(buf, start, end).fields(expect):
        if number == 1:
            a.name = _text(buf, value)
        elif number == 20:
            a.type = value
        elif number == 2:
            seen[ATTR_FLOAT] = float(np.frombuffer(value, "<f4")[0])
        elif number == 3:
            seen[ATTR_INT] = _signed(value)
        elif number == 4:
            seen[ATTR_STRING] = bytes(buf[value[0] : value[1]])
        elif number == 5:
            seen[ATTR_TENSOR] = _tensor(buf, *value)
        elif number in (6, 11):
            seen[ATTR_GRAPH if number == 6 else ATTR_GRAPHS] = None  # subgraphs: no supported operator takes them
        elif number == 7:
            floats.append(_repeated(buf, wire, value, "<f4"))
        elif number == 8:
            ints.append(_repeated(buf, wire, value, "varint"))
        elif number == 9:
            strings.append(bytes(buf[value[0] : value[1]]))
        elif number == 10:
            tensors.append(_tensor(buf, *value))
    if floats:
        seen[ATTR_FLOATS] = tuple(float(v) for v in np.concatenate(floats))
    if ints:
        seen[ATTR_INTS] = tuple(int(v) for v in np.concatenate(ints))
    if strings:
        seen[ATTR_STRINGS] = tuple(strings)
    if tensors:
        seen[ATTR_TENSORS] = tuple(tensors)
    if a.type == 0 and len(seen) == 1:  # very old files leave the type out
        a.type = next(iter(seen))
    empty_list = {ATTR_FLOATS: (), ATTR_INTS: (), ATTR_STRINGS: (), ATTR_TENSORS: (), ATTR_GRAPHS: ()}
    if a.type in seen:
        a.value = seen[a.type]
    elif a.type in empty_list:
        a.value = empty_list[a.type]
    elif a.type in (ATTR_FLOAT, ATTR_INT):
        a.value = 0.0 if a.type == ATTR_FLOAT else 0  # proto3 leaves zero values out
    elif a.type == ATTR_STRING:
        a.value = b""
    else:
        raise ProtoError(f"attribute {a.name!r} has type {a.type} but no value of that type")
    return a


def _node(buf: memoryview, start: int, end: int) -> Node:
    n = Node()
    for number, _, value in _Reader(buf, start, end).fields({1: _LEN, 2: _LEN, 3: _LEN, 4: _LEN, 5: _LEN, 7: _LEN}):
        if number == 5:
            attr = _attribute(buf, *value)
            n.attributes[attr.name] = attr
        elif number in (1, 2):
            (n.inputs if number == 1 else n.outputs).append(_text(buf, value))
        elif number in (3, 4, 7):
            setattr(n, {3: "name", 4: "op_type", 7: "domain"}[number], _text(buf, value))
    return n


def _dims(buf: memoryview, start: int, end: int) -> tuple:
    """TensorShapeProto -> its dimensions (an int, a symbolic name, or None)."""
    dims = []
    for _, _, span in _Reader(buf, start, end).fields({1: _LEN}):
        dim = None
        for n, wire, value in _Reader(buf, *span).fields():
            if n == 1 and wire == _VARINT:
                dim = _signed(value)
            elif n == 2 and wire == _LEN:
                dim = _text(buf, value)
        dims.append(dim)
    return tuple(dims)


def _value_info(buf: memoryview, start: int, end: int) -> ValueInfo:
    v = ValueInfo()
    for number, _, value in _Reader(buf, start, end).fields({1: _LEN, 2: _LEN}):
        if number == 1:
            v.name = _text(buf, value)
            continue
        for n2, w2, v2 in _Reader(buf, *value).fields():  # TypeProto: only tensor_type (1) is read
            for n3, w3, v3 in _Reader(buf, *v2).fields() if n2 == 1 and w2 == _LEN else ():
                if n3 == 1 and w3 == _VARINT:
                    v.elem_type = v3
                elif n3 == 2 and w3 == _LEN:
                    v.shape = _dims(buf, *v3)
    return v


def _graph(buf: memoryview, start: int, end: int) -> Graph:
    g = Graph()
    for number, _, value in _Reader(buf, start, end).fields({n: _LEN for n in (1, 2, 5, 11, 12, 15)}):
        if number == 1:
            g.nodes.append(_node(buf, *value))
        elif number == 2:
            g.name = _text(buf, value)
        elif number == 5:
            g.initializers.append(_tensor(buf, *value))
        elif number in (11, 12):
            (g.inputs if number == 11 else g.outputs).append(_value_info(buf, *value))
        elif number == 15:
            g.sparse_initializers += 1
    return g


def parse_model(data: bytes) -> Model:
    """Decode a ModelProto. Raises ProtoError on damaged bytes or a file with no graph."""
    buf = memoryview(data)
    m = Model()
    for number, _, value in _Reader(buf, 0, len(buf)).fields({1: _VARINT, 2: _LEN, 7: _LEN, 8: _LEN}):
        if number == 1:
            m.ir_version = _signed(value)
        elif number == 2:
            m.producer = _text(buf, value)
        elif number == 7:
            m.graph = _graph(buf, *value)
        elif number == 8:
            domain, version = "", 0
            for n2, _, v2 in _Reader(buf, *value).fields({1: _LEN, 2: _VARINT}):
                if n2 == 1:
                    domain = _text(buf, v2)
                elif n2 == 2:
                    version = _signed(v2)
            m.opsets[domain] = version
    if m.graph is None:
        raise ProtoError("it holds no graph (not an ONNX model?)")
    return m
