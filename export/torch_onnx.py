"""Torch → ONNX for the project's own networks, with ``onnx.checker`` and an onnxruntime-vs-torch parity check.

Uses the TorchScript exporter (``dynamo=False``: no onnxscript dependency) at a pinned opset, with a dynamic
batch axis. ``fp16=True`` stores the weights in float16 and casts at the graph edges, so the runtime still feeds
and reads float32 (halves the file; onnxruntime on CPU computes fp16 convs slowly, so it is off by default).

Self-contained on purpose (onnx, onnxruntime, torch only), so training does not depend on the other export
modules' manifest machinery.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

#: Opset of every torch export (supported by onnxruntime >= 1.14).
OPSET = 17
#: Parity tolerance (max absolute difference over all outputs) for float32 exports on random inputs of the
#: network's normalised scale; logits and years are O(1..100), so 1e-3 is far below anything visible.
PARITY_TOLERANCE_FP32 = 1e-3
#: For fp16 weights: years may move by a few hundredths, logits by ~1e-2.
PARITY_TOLERANCE_FP16 = 0.1


class ParityError(ValueError):
    """onnxruntime and torch disagree beyond the tolerance."""


def export_onnx(model: torch.nn.Module, sample: torch.Tensor, output_names: Sequence[str], *,
                input_name: str = "images", opset: int = OPSET, fp16: bool = False) -> onnx.ModelProto:
    """Export ``model`` (eval mode) to an ONNX model with a dynamic batch axis, checked by ``onnx.checker``.

    Args:
        model: Module whose ``forward(x)`` returns a tensor or a tuple of tensors, one per output name.
        sample: ``(n, C, H, W)`` float32 example input (its H, W become fixed in the graph).
        output_names: ONNX output names, in ``forward`` order.
        input_name: ONNX input name.
        opset: ONNX opset.
        fp16: Store float16 weights (inputs/outputs stay float32).

    Returns:
        The checked ``onnx.ModelProto``.

    Raises:
        ValueError: ``sample`` is not a 4-D float tensor.
    """
    if sample.ndim != 4 or not sample.is_floating_point():
        raise ValueError(f"sample must be a (n, C, H, W) float tensor, got {tuple(sample.shape)} {sample.dtype}")
    model = model.eval()
    buffer = io.BytesIO()
    dynamic = {input_name: {0: "N"}, **{name: {0: "N"} for name in output_names}}
    with torch.no_grad():
        torch.onnx.export(model, (sample,), buffer, input_names=[input_name], output_names=list(output_names),
                          opset_version=opset, dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    if fp16:
        proto = _to_fp16_weights(proto)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _to_fp16_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Float initializers stored as float16, each followed by a Cast back to float32 (weights-only fp16)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < 16:
            continue
        half_name = init.name + "_fp16"
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return proto


def parity(model: torch.nn.Module, proto: onnx.ModelProto, inputs: np.ndarray) -> float:
    """Max absolute difference between torch and onnxruntime (CPU) outputs on ``inputs``.

    Args:
        model: The torch module (eval mode is set).
        proto: Its export.
        inputs: ``(n, C, H, W)`` float32.

    Raises:
        ValueError: Output counts or shapes differ.
    """
    model = model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs))
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: inputs})
    if len(actual) != len(expected):
        raise ValueError(f"onnx model has {len(actual)} outputs, torch model {len(expected)}")
    worst = 0.0
    for i, (ref, out) in enumerate(zip(expected, actual)):
        ref_np = ref.numpy()
        if ref_np.shape != out.shape:
            raise ValueError(f"output {i}: onnx shape {out.shape} != torch shape {ref_np.shape}")
        worst = max(worst, float(np.max(np.abs(ref_np.astype(np.float64) - out.astype(np.float64)))))
    return worst


def export_with_parity(model: torch.nn.Module, path: str | Path, size: int, output_names: Sequence[str], *,
                       fp16: bool = False, tolerance: float | None = None, seed: int = 0) -> float:
    """Export to ``path``, then require onnxruntime to match torch within ``tolerance`` on random inputs.

    Args:
        model: Network taking ``(n, 3, size, size)`` float32.
        path: Output ``.onnx`` file.
        size: Input side.
        output_names: ONNX output names.
        fp16: Weights-only fp16.
        tolerance: Max abs difference allowed; default :data:`PARITY_TOLERANCE_FP32` or ``..._FP16``.
        seed: Seed of the parity inputs.

    Returns:
        The measured max absolute difference.

    Raises:
        ParityError: The difference exceeds the tolerance (nothing is written then).
    """
    limit = tolerance if tolerance is not None else (PARITY_TOLERANCE_FP16 if fp16 else PARITY_TOLERANCE_FP32)
    proto = export_onnx(model, torch.zeros(1, 3, size, size), output_names, fp16=fp16)
    # Inputs on the scale the network sees ((x - mean) / 256 is within about +-0.5), batch of 5 (not 1) to
    # exercise the dynamic axis.
    inputs = (np.random.default_rng(seed).random((5, 3, size, size), dtype=np.float32) - 0.5)
    worst = parity(model, proto, inputs)
    if worst > limit:
        raise ParityError(f"onnxruntime differs from torch by {worst:.2e} > tolerance {limit:.0e}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(proto.SerializeToString(deterministic=True))
    return worst
