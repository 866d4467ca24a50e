"""A tiny ONNX file written without the `onnx` package: the U2-Net stand-in for tests.

`torch.onnx.export` needs the `onnx` package, which nothing else here does; the stand-in is one
1 x 1 convolution and a sigmoid, whose ModelProto is a few protobuf fields, written here by hand
(proto2 wire format: varints and length-delimited fields, repeated fields unpacked).
"""

from __future__ import annotations

import numpy as np

_FLOAT = 1  # TensorProto.DataType.FLOAT
_IR_VERSION = 8
_OPSET = 13


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9)."""
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, _FLOAT) + _bytes(8, name) + _bytes(9, array.astype("<f4").tobytes())


def _value_info(name: str, shape: tuple[int, ...]) -> bytes:
    """ValueInfoProto: name (1), type (2) = TypeProto.tensor_type (1) {elem_type (1), shape (2)
    {dim (1) {dim_value (1)}}}."""
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    tensor_type = _int(1, _FLOAT) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _node(op: str, inputs: list[str], outputs: list[str]) -> bytes:
    """NodeProto: input (1), output (2), op_type (4)."""
    return b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs) + _bytes(4, op)


def conv_sigmoid_model(weight: np.ndarray, bias: np.ndarray, side: int, input_name: str = "input.1") -> bytes:
    """ModelProto bytes: (1, C, side, side) -> sigmoid(1 x 1 conv) (1, O, side, side);
    weight (O, C, 1, 1), bias (O,)."""
    out_ch, in_ch = weight.shape[:2]
    graph = (
        _bytes(1, _node("Conv", [input_name, "weight", "bias"], ["conv"]))
        + _bytes(1, _node("Sigmoid", ["conv"], ["d1"]))
        + _bytes(2, "tiny-u2net")
        + _bytes(5, _tensor("weight", weight))
        + _bytes(5, _tensor("bias", bias))
        + _bytes(11, _value_info(input_name, (1, in_ch, side, side)))
        + _bytes(12, _value_info("d1", (1, out_ch, side, side)))
    )
    opset = _bytes(1, "") + _int(2, _OPSET)
    return _int(1, _IR_VERSION) + _bytes(2, "sketch-abstraction") + _bytes(7, graph) + _bytes(8, opset)
