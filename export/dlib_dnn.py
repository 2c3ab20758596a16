"""dlib's DNN file format (``dlib_face_recognition_resnet_model_v1.dat``) read into numpy: its named layers.

dlib writes a net innermost layer first: each layer's name string (``con_4``, ``affine_``, ``relu_``,
``max_pool_2``, ``avg_pool_2``, ``add_prev_``, ``fc_2``) and its fields; integers use dlib's variable-length
encoding (a byte with the length and sign bit, then little-endian bytes) and tensors (version 2) are four such
integers (dims) followed by raw little-endian float32. Tag and skip layers write no name; the topology they encode is
dlib's ``dnn_face_recognition_ex`` ResNet (see :mod:`export.dlib_face`, which builds the ONNX graph, and
``models.training.dlib_resnet``, which builds the torch module, from these layers).

Numpy only: the export of the tracker's face embedding runs without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_NAME = re.compile(rb"\x01([\x03-\x20])(con_|affine_|relu_|max_pool_|avg_pool_|add_prev_|fc_)")


@dataclass
class Layer:
    """One named layer read from the file: its kind, integer fields and float32 parameters."""

    kind: str
    ints: list[int]
    params: np.ndarray | None = None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int(self) -> int:
        head = self.data[self.pos]
        size = head & 0x7F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ValueError(f"dlib tensor version {version} at byte {self.pos}; only version 2 is read")
        count = int(np.prod([self.int() for _ in range(4)]))
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos += 4 * count
        return values


def read_layers(source: str | Path | bytes) -> list[Layer]:
    """The named layers of a dlib DNN file (a path, or the file's bytes), input side first.

    Raises:
        ValueError: The file is not a dlib DNN file this reader understands.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    path = "<bytes>" if isinstance(source, bytes) else source
    if b"loss_metric_" not in data[:64]:
        raise ValueError(f"{path}: not a dlib metric-learning network (no loss_metric_ header)")
    reader, layers = _Reader(data), []
    while (match := _NAME.search(data, reader.pos)) is not None:
        reader.pos = match.start() + 2 + match.group(1)[0]
        kind = match.group(2).decode().rstrip("_")
        if kind == "con":  # params (filters then biases); num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x
            params = reader.tensor()
            layers.append(Layer(kind, [reader.int() for _ in range(7)], params))
        elif kind == "affine":  # params: gamma then beta
            layers.append(Layer(kind, [], reader.tensor()))
        elif kind in ("max_pool", "avg_pool"):  # nr, nc (0: everything), stride_y, stride_x, pad_y, pad_x
            layers.append(Layer(kind, [reader.int() for _ in range(6)]))
        elif kind == "fc":  # num_outputs, num_inputs, then the (inputs [+1 bias row], outputs) weights
            outputs, inputs = reader.int(), reader.int()
            layers.append(Layer(kind, [outputs, inputs], reader.tensor()))
            break
        else:
            layers.append(Layer(kind, []))
    if not layers or layers[-1].kind != "fc":
        raise ValueError(f"{path}: no fc layer found; not dlib's face-recognition ResNet")
    return layers
