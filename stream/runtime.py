"""ONNX Runtime sessions configured for where they run.

On our 2-core CPU target the defaults matter: onnxruntime's default thread pool
spins waiting threads, which steals the core that decode and encode run on, so
spinning is off (measured by ``python -m bench.runtime``) and intra-op threads
default to the number of cores. With ``device: cuda`` every session asks for the
CUDA execution provider and we log the provider each session really got, because
onnxruntime silently falls back to the CPU.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream.config import RuntimeConfig

logger = logging.getLogger(__name__)


class RuntimeUnavailable(RuntimeError):
    """The requested device cannot be used (one-line message)."""


def providers_for(device: str) -> list[str]:
    """Execution providers to request for ``device`` ("auto", "cpu" or "cuda").

    Raises:
        RuntimeUnavailable: "cuda" was asked for but this onnxruntime has no CUDA provider.
    """
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeUnavailable(
            "--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu and a CUDA driver, "
            f"or use --device cpu); available: {', '.join(available)}"
        )
    return ["CPUExecutionProvider"]


def session_options(config: RuntimeConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = config.intra_op_threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = config.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if config.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 3  # onnxruntime's own warnings go to stderr unformatted; keep errors only
    return options


def denormal_mask(array: np.ndarray) -> np.ndarray:
    """Boolean mask of the denormal (subnormal) entries of a float32 array.

    Read from the bits (exponent 0, mantissa not 0), not by comparing values: with flush-to-zero on in this
    process (``torch.set_flush_denormal(True)``, which training turns on), a denormal compares equal to zero.
    """
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    return ((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)


def flush_denormal_weights(path: Path) -> tuple[bytes | None, int]:
    """The model's bytes with denormal float32 weights set to zero, or None if it has none.

    Some published weights (the Cydral age network: 6,667 of its first two layers' weights) hold
    denormal floats (|w| < 1.2e-38). x86 CPUs compute with denormals through a microcode slow path,
    and onnxruntime's ``session.set_denormal_as_zero`` does not reach the thread that runs a
    single-threaded session, so such a model ran an order of magnitude slower on the CPU. Zeroing
    them changes every output by less than float32 rounding; the file on disk, and so its sha256,
    stay untouched.

    Returns:
        The patched ONNX bytes (or None) and how many weights were flushed.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    flushed = 0
    for initializer in model.graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(initializer)
        denormal = denormal_mask(weights)
        if denormal.any():
            flushed += int(denormal.sum())
            initializer.CopyFrom(numpy_helper.from_array(np.where(denormal, 0, weights).astype(np.float32),
                                                         initializer.name))
    return (model.SerializeToString() if flushed else None), flushed


def create_session(path: Path, config: RuntimeConfig, label: str) -> ort.InferenceSession:
    """An inference session for the model at ``path``, logging the provider it actually runs on.

    Args:
        path: Verified ONNX file.
        config: Runtime section (device, threads, spinning).
        label: Model name for log lines.

    Raises:
        RuntimeUnavailable: The device is unavailable, or the file is not a loadable ONNX model.
    """
    from google.protobuf.message import DecodeError

    providers = providers_for(config.device)
    try:
        patched, flushed = flush_denormal_weights(path)
        if flushed:
            logger.info("model %s: %d denormal weights flushed to zero (CPU slow path avoided)", label, flushed)
        model: str | bytes = patched if patched is not None else str(path)
        session = ort.InferenceSession(model, sess_options=session_options(config), providers=providers)
    except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidGraph,
            ort.capi.onnxruntime_pybind11_state.InvalidProtobuf, RuntimeError, ValueError, DecodeError) as error:
        first = str(error).splitlines()[0][:200]
        raise RuntimeUnavailable(f"model {label}: {path} could not be loaded by onnxruntime: {first}") from None
    active = session.get_providers()
    if config.device == "cuda" and active[0] != "CUDAExecutionProvider":
        raise RuntimeUnavailable(f"model {label}: CUDA was requested but the session runs on {active[0]}")
    logger.info("model %s runs on %s", label, active[0])
    return session
