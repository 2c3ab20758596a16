"""Write ``tests/data/mtcnn_golden.npz``: facenet-pytorch 2.6.0's own MTCNN on the frames the MTCNN parity test reads.

    python -m tests.support.mtcnn_golden            # from the repository root; needs ../shared and the cached wheel

facenet-pytorch cannot be installed beside our pins (it pins torch < 2.3), so its code is run from the
facenet_pytorch-2.6.0 wheel that ``python -m export.mtcnn`` already keeps in the model cache (the same wheel the
exported weights come from), unpacked into a temporary folder, with the torch we have. Its one compiled
dependency, torchvision's NMS kernel, cannot load here (PyPI's torchvision is built for CUDA torch), so
``torchvision.ops.boxes.batched_nms`` is given by :func:`batched_nms` below: torchvision's algorithm (greedy, by
descending score, IoU without the +1 pixel convention, boxes of different images never suppress each other)
written in torch. Everything else — pyramid, P/R/O-Net, box regression, squaring, padding, landmark decoding,
thresholds (0.6, 0.7, 0.7), factor 0.709, min face 20 px — is facenet-pytorch's code, unmodified.

Both sides get the same input: the frame resized so its long side is 640 (``cv2.INTER_AREA``), as
``stream.detectors.mtcnn.MtcnnDetector`` does before its pyramid; the golden file stores the results in frame
pixels (divided by that factor). Rerun this script only when the frames or facenet-pytorch's version change.
"""

from __future__ import annotations

import sys
import tempfile
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import REPO, SHARED

GOLDEN = REPO / "tests" / "data" / "mtcnn_golden.npz"
WHEEL = "facenet_pytorch-2.6.0-py3-none-any.whl"
LONG_SIDE = 640
#: name → (clip under ../shared/videos, frame index; -1 for a still image)
FRAMES = {"multiface": ("multiface.jpg", -1), "crowd": ("crowd_1080p.mp4", 30), "woman": ("woman_1280x720.mp4", 10)}


def read_frame(name: str) -> np.ndarray:
    """One of :data:`FRAMES` as a BGR array."""
    file_name, index = FRAMES[name]
    path = SHARED / "videos" / file_name
    if index < 0:
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError(path)
        return image
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise FileNotFoundError(f"{path} frame {index}")
    return image


def resized_rgb(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame as the MTCNN cascade sees it: long side 640 (INTER_AREA), RGB uint8; and the factor."""
    h, w = image.shape[:2]
    factor = LONG_SIDE / max(h, w)
    resized = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), factor


def batched_nms(boxes, scores, idxs, iou_threshold):  # noqa: ANN001, ANN201 - torchvision's signature
    """torchvision.ops.batched_nms: greedy NMS per ``idxs`` group, kept indices by descending score."""
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    # torchvision's coordinate trick: offset each group's boxes so groups never overlap.
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    shifted = boxes + offsets[:, None]
    x1, y1, x2, y2 = shifted.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True, stable=True)
    keep = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for position, i in enumerate(order.tolist()):
        if suppressed[position]:
            continue
        keep.append(i)
        rest = order[position + 1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[position + 1:] |= iou > iou_threshold
    return torch.as_tensor(keep, dtype=torch.int64)


def _facenet_mtcnn(folder: Path):  # noqa: ANN202
    from models.cache import wheels_dir

    wheel = wheels_dir() / WHEEL
    if not wheel.exists():
        raise SystemExit(f"error: {wheel} is missing; run `python -m export.mtcnn` first (it fetches the wheel)")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    torchvision = types.ModuleType("torchvision")
    ops, boxes = types.ModuleType("torchvision.ops"), types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")  # imported by detect_face, unused by detect
    boxes.batched_nms = batched_nms
    torchvision.ops, ops.boxes, torchvision.transforms, transforms.functional = ops, boxes, transforms, functional
    sys.modules.update({"torchvision": torchvision, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
                        "torchvision.transforms": transforms, "torchvision.transforms.functional": functional})
    # The package's __init__ also imports its face-recognition net (which needs requests); only the MTCNN
    # modules are wanted, so the package is entered without running its __init__.
    package = types.ModuleType("facenet_pytorch")
    package.__path__ = [str(folder / "facenet_pytorch")]
    sys.modules["facenet_pytorch"] = package
    from facenet_pytorch.models.mtcnn import MTCNN

    return MTCNN(keep_all=True, device="cpu")


def main() -> int:
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as folder:
        detector = _facenet_mtcnn(Path(folder))
        for name in FRAMES:
            rgb, factor = resized_rgb(read_frame(name))
            boxes, probs, points = detector.detect(rgb, landmarks=True)
            if boxes is None:
                boxes, probs, points = np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
            out[f"{name}_xyxy"] = (np.asarray(boxes, np.float64) / factor).astype(np.float32)
            out[f"{name}_score"] = np.asarray(probs, np.float32)
            out[f"{name}_landmarks"] = (np.asarray(points, np.float64) / factor).astype(np.float32)
            print(f"{name}: {len(boxes)} faces (facenet-pytorch 2.6.0), factor {factor:.4f}")
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN.relative_to(REPO)} ({GOLDEN.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
