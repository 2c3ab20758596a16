"""RetinaFace MobileNet-0.25: SSD-style anchors (2 sizes per cell) at strides 8/16/32."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from stream.detectors.base import Letterbox, OnnxFaceDetector, grid_centers

_STRIDES = (8, 16, 32)
_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
_CENTER_VARIANCE, _SIZE_VARIANCE = 0.1, 0.2


@lru_cache(maxsize=16)
def _anchors(width: int, height: int) -> np.ndarray:
    """``(A, 4)`` anchors ``cx, cy, w, h`` in network pixels, in the network's output order."""
    parts = []
    for stride, sizes in zip(_STRIDES, _ANCHOR_SIZES):
        centers = (grid_centers(width, height, stride, per_cell=len(sizes)) + 0.5) * stride
        wh = np.tile(np.asarray(sizes, np.float32)[:, None].repeat(2, axis=1), (len(centers) // len(sizes), 1))
        parts.append(np.hstack([centers, wh]))
    return np.concatenate(parts).astype(np.float32)


class RetinaFaceDetector(OnnxFaceDetector):
    """Outputs: ``loc (1,A,4)`` box deltas, ``conf (1,A,2)`` softmax, ``landmarks (1,A,10)`` deltas."""

    def _decode(self, outputs: list[np.ndarray], box: Letterbox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        named = dict(zip(self.output_names, outputs))
        score = named["conf"][0, :, 1]
        keep = score >= self.score_threshold
        anchors = _anchors(box.width, box.height)[keep]
        loc = named["loc"][0][keep]
        pts = named["landmarks"][0][keep].reshape(-1, 5, 2)
        center = anchors[:, :2] + loc[:, :2] * _CENTER_VARIANCE * anchors[:, 2:]
        size = anchors[:, 2:] * np.exp(loc[:, 2:] * _SIZE_VARIANCE)
        xyxy = np.hstack([center - size / 2, center + size / 2])
        landmarks = anchors[:, None, :2] + pts * _CENTER_VARIANCE * anchors[:, None, 2:]
        return xyxy, score[keep], landmarks
