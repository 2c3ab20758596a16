"""YuNet (OpenCV Zoo): anchor-free, one prediction per feature-map cell at strides 8/16/32."""

from __future__ import annotations

import numpy as np

from stream.detectors.base import Letterbox, OnnxFaceDetector, grid_centers

_STRIDES = (8, 16, 32)


class YuNetDetector(OnnxFaceDetector):
    """YuNet's outputs are named per stride (``cls_8``, ``obj_8``, ``bbox_8``, ``kps_8``, ...)."""

    def _decode(self, outputs: list[np.ndarray], box: Letterbox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        named = dict(zip(self.output_names, outputs))
        boxes, scores, points = [], [], []
        for stride in _STRIDES:
            cls = np.clip(named[f"cls_{stride}"].reshape(-1), 0, 1)
            obj = np.clip(named[f"obj_{stride}"].reshape(-1), 0, 1)
            score = np.sqrt(cls * obj)
            keep = score >= self.score_threshold
            if not keep.any():
                continue
            cells = grid_centers(box.width, box.height, stride)[keep]
            bbox = named[f"bbox_{stride}"].reshape(-1, 4)[keep]
            kps = named[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
            center = (cells + bbox[:, :2]) * stride
            size = np.exp(bbox[:, 2:]) * stride
            boxes.append(np.hstack([center - size / 2, center + size / 2]))
            scores.append(score[keep])
            points.append((kps + cells[:, None, :]) * stride)
        if not scores:
            return np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty((0, 5, 2), np.float32)
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
