"""MTCNN (the seed Age-and-Gender app's detector): image pyramid → P-Net → NMS → R-Net → O-Net.

Three networks in a cascade, so it does not fit the single-session :class:`OnnxFaceDetector`; it has its
own class with the same ``name`` and ``detect(image) -> Faces``. The steps follow facenet-pytorch 2.6.0's
``detect_face`` (whose weights these are): same pyramid, thresholds, box regression, squaring and
crop rules, with numpy/OpenCV in place of torch (``cv2.INTER_AREA`` for torch's ``area`` resampling).

Scores are O-Net's face probability, which saturates: real faces score above 0.99 while clutter that
survives the cascade (e.g. a knee in ../shared/videos/multiface.jpg) scores 0.7-0.8. facenet uses 0.7 as the
last threshold; with this detector a ``detector.score_threshold`` around 0.9 removes such false positives.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from models.registry import ModelSpec
from stream.config import DetectorConfig, ModelsConfig, RuntimeConfig
from stream.types import Faces

_CELL, _STRIDE = 12, 2  # P-Net's receptive field and stride, in pyramid-level pixels


def nms(xyxy: np.ndarray, score: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy NMS with MTCNN's inclusive pixel areas.

    Args:
        xyxy: ``(k, 4)`` boxes.
        score: ``(k,)`` scores.
        threshold: Overlap above which the lower-scored box is dropped.
        method: "union" (IoU) or "min" (intersection over the smaller box, for nested boxes).

    Returns:
        ``(m,)`` int64 indices kept, best first.
    """
    if method not in ("union", "min"):
        raise ValueError(f"method must be 'union' or 'min', got {method!r}")
    x1, y1, x2, y2 = xyxy.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-score, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denominator = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denominator <= threshold]
    return np.asarray(keep, np.int64)


def _square(xyxy: np.ndarray) -> np.ndarray:
    """Boxes grown to squares around their centres (MTCNN's ``rerec``)."""
    wh = xyxy[:, 2:4] - xyxy[:, 0:2]
    side = wh.max(axis=1, keepdims=True)
    top_left = xyxy[:, 0:2] + wh * 0.5 - side * 0.5
    return np.hstack([top_left, top_left + side])


def _regress(xyxy: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R/O-Net box offsets (fractions of the inclusive box side; MTCNN's ``bbreg``)."""
    side = xyxy[:, 2:4] - xyxy[:, 0:2] + 1
    return xyxy + reg * np.hstack([side, side])


class MtcnnDetector:
    """Cascade of three ONNX sessions built from the ``mtcnn`` registry entry and its stages.

    Args:
        spec: Registry entry of P-Net (``extras["stages"]`` names R-Net and O-Net).
        sessions: ``(pnet, rnet, onet)`` onnxruntime sessions.
        input_long_side: The frame's long side is resized to this before the pyramid.
        score_threshold: O-Net face probability a detection needs.
        nms_iou_threshold: Final IoU NMS across all detections.
        max_faces: Most faces returned.
        min_face_size: Smallest face searched for, in resized-frame pixels (sets the first pyramid level).
        stage_thresholds: P-Net and R-Net face probabilities that pass a candidate on (facenet's 0.6, 0.7).
        pyramid_factor: Scale between pyramid levels.
    """

    def __init__(
        self,
        spec: ModelSpec,
        sessions: tuple[ort.InferenceSession, ort.InferenceSession, ort.InferenceSession],
        *,
        # The detector: section's defaults (one home: stream/config.py); build_detector passes the configured ones.
        input_long_side: int = DetectorConfig.input_long_side,
        score_threshold: float = DetectorConfig.score_threshold,
        nms_iou_threshold: float = DetectorConfig.nms_iou_threshold,
        max_faces: int = DetectorConfig.max_faces,
        min_face_size: int = 20,
        stage_thresholds: tuple[float, float] = (0.6, 0.7),
        pyramid_factor: float = 0.709,
    ) -> None:
        if len(sessions) != 3:
            raise ValueError(f"sessions must be (pnet, rnet, onet), got {len(sessions)} sessions")
        if min_face_size < _CELL:
            raise ValueError(f"min_face_size must be >= {_CELL}, got {min_face_size}")
        if not 0.1 < pyramid_factor < 1.0:
            raise ValueError(f"pyramid_factor must be in (0.1, 1), got {pyramid_factor}")
        self.spec = spec
        self.name = spec.name
        self.pnet, self.rnet, self.onet = sessions
        self.input_long_side = input_long_side
        self.score_threshold = score_threshold
        self.nms_iou_threshold = nms_iou_threshold
        self.max_faces = max_faces
        self.min_face_size = min_face_size
        self.stage_thresholds = stage_thresholds
        self.pyramid_factor = pyramid_factor
        self._mean = np.float32(spec.mean[0])
        self._inv_std = np.float32(1.0 / spec.std[0])

    @classmethod
    def from_registry(
        cls, spec: ModelSpec, models: ModelsConfig, runtime: RuntimeConfig, **kwargs: Any
    ) -> MtcnnDetector:
        """Fetch/verify the three files named by ``spec`` and open a session for each.

        Args:
            spec: The ``mtcnn`` registry entry.
            models: Where model files are looked for.
            runtime: Device and threads of the sessions.
            **kwargs: Constructor keywords (the detector config section).

        Raises:
            ModelError: A file is missing (run ``python -m export.mtcnn``) or corrupt.
        """
        from models.fetch import model_path
        from stream.runtime import create_session

        stages = spec.extras.get("stages", ())
        if not isinstance(stages, tuple | list) or len(stages) != 2:
            raise ValueError(f"model {spec.name!r}: extras['stages'] must name R-Net and O-Net, got {stages!r}")
        pnet, rnet, onet = (
            create_session(model_path(n, extra_dirs=models.local_dirs, download=models.download), runtime, n)
            for n in (spec.name, str(stages[0]), str(stages[1]))
        )
        return cls(spec, (pnet, rnet, onet), **kwargs)

    def _normalise(self, rgb: np.ndarray) -> np.ndarray:
        """``(..., H, W, 3)`` RGB float32 → ``(..., 3, H, W)`` network input."""
        moved = np.moveaxis((rgb - self._mean) * self._inv_std, -1, -3)
        return np.ascontiguousarray(moved, dtype=np.float32)

    def _proposals(self, rgb: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid → ``(k, 5)`` squared candidate boxes ``x1, y1, x2, y2, score``."""
        h, w = rgb.shape[:2]
        scale = _CELL / self.min_face_size
        min_side = min(h, w) * scale
        found = []
        while min_side >= _CELL:
            level_w, level_h = int(w * scale + 1), int(h * scale + 1)
            level = cv2.resize(rgb, (level_w, level_h), interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet.run(None, {"input": self._normalise(level)[None]})
            ys, xs = np.nonzero(prob[0, 1] >= self.stage_thresholds[0])
            if len(ys):
                cells = np.stack([xs, ys], axis=1).astype(np.float32)
                q1 = np.floor((_STRIDE * cells + 1) / scale)
                q2 = np.floor((_STRIDE * cells + _CELL) / scale)
                boxes = np.hstack([q1, q2, prob[0, 1, ys, xs, None], reg[0][:, ys, xs].T])
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= self.pyramid_factor
            min_side *= self.pyramid_factor
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        side = boxes[:, 2:4] - boxes[:, 0:2]
        refined = boxes[:, :4] + boxes[:, 5:9] * np.hstack([side, side])
        return np.hstack([_square(refined), boxes[:, 4:5]]).astype(np.float32)

    @staticmethod
    def _crops(rgb: np.ndarray, xyxy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Crops of the boxes clipped to the frame (facenet's ``pad``), resized to ``size``.

        Returns:
            ``(m, size, size, 3)`` float32 crops and the ``(m,)`` indices of the boxes they belong to.
        """
        h, w = rgb.shape[:2]
        corners = np.trunc(xyxy).astype(np.int64)
        x1, y1 = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
        x2, y2 = np.minimum(corners[:, 2], w), np.minimum(corners[:, 3], h)
        valid = np.nonzero((x2 > x1 - 1) & (y2 > y1 - 1))[0]
        crops = np.zeros((len(valid), size, size, 3), np.float32)
        for row, i in enumerate(valid):
            patch = rgb[y1[i] - 1 : y2[i], x1[i] - 1 : x2[i]]
            crops[row] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
        return crops, valid

    def detect(self, image: np.ndarray) -> Faces:
        """Faces in a BGR frame.

        Args:
            image: ``(H, W, 3)`` uint8 BGR.

        Returns:
            Faces with boxes, O-Net scores and 5 landmarks in frame pixels, best score first.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
        h, w = image.shape[:2]
        factor = self.input_long_side / max(h, w)
        resized = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32)

        boxes = self._proposals(rgb)
        if len(boxes) == 0:
            return Faces.empty()
        crops, rows = self._crops(rgb, boxes[:, :4], 24)
        boxes = boxes[rows]
        reg, prob = self.rnet.run(None, {"input": self._normalise(crops)})
        passed = prob[:, 1] > self.stage_thresholds[1]
        boxes, reg = np.hstack([boxes[passed, :4], prob[passed, 1:2]]), reg[passed]
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        if len(keep) == 0:
            return Faces.empty()
        boxes = _square(_regress(boxes[keep, :4], reg[keep]))

        crops, rows = self._crops(rgb, boxes, 48)
        boxes = boxes[rows]
        reg, points, prob = self.onet.run(None, {"input": self._normalise(crops)})
        passed = prob[:, 1] > self.score_threshold
        boxes, reg, points, score = boxes[passed], reg[passed], points[passed], prob[passed, 1]
        if len(score) == 0:
            return Faces.empty()
        side = boxes[:, 2:4] - boxes[:, 0:2] + 1
        # O-Net points are x1..x5 then y1..y5, as fractions of the (inclusive) box; facenet subtracts 1 px
        # because its crops start at the 1-based corner.
        landmarks = np.stack([points[:, :5], points[:, 5:]], axis=2) * side[:, None, :] + boxes[:, None, :2] - 1
        boxes = _regress(boxes, reg)
        keep = nms(boxes, score, 0.7, method="min")
        boxes, score, landmarks = boxes[keep], score[keep], landmarks[keep]
        keep = nms(boxes, score, self.nms_iou_threshold)[: self.max_faces]
        xyxy = boxes[keep] / factor
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
        return Faces(xyxy=xyxy, score=score[keep], landmarks=landmarks[keep] / factor)
