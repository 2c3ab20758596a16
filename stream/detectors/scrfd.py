"""SCRFD (InsightFace): anchor-point distances, 2 anchors per cell, at strides 8/16/32.

Licence: the InsightFace model zoo weights are for non-commercial research only;
the registry marks them so and the stream warns when one is active.
"""

from __future__ import annotations

import numpy as np

from stream.detectors.base import Letterbox, OnnxFaceDetector, grid_centers

_STRIDES = (8, 16, 32)
_ANCHORS_PER_CELL = 2


class ScrfdDetector(OnnxFaceDetector):
    """Outputs in graph order: scores per stride, then box distances, then keypoint distances."""

    def _decode(self, outputs: list[np.ndarray], box: Letterbox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(_STRIDES)
        boxes, scores, points = [], [], []
        for i, stride in enumerate(_STRIDES):
            score = outputs[i].reshape(-1)
            keep = score >= self.score_threshold
            if not keep.any():
                continue
            centers = grid_centers(box.width, box.height, stride, _ANCHORS_PER_CELL)[keep] * stride
            dist = outputs[n + i].reshape(-1, 4)[keep] * stride
            kps = outputs[2 * n + i].reshape(-1, 5, 2)[keep] * stride
            boxes.append(np.hstack([centers - dist[:, :2], centers + dist[:, 2:]]))
            scores.append(score[keep])
            points.append(centers[:, None, :] + kps)
        if not scores:
            return np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty((0, 5, 2), np.float32)
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
