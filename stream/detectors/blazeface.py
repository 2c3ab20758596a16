"""MediaPipe BlazeFace full range: 192x192 input, one anchor per 4-px cell, 6 keypoints.

Decoding follows MediaPipe's ``face_detection_full_range`` graph (SsdAnchorsCalculator: one layer, stride
4, anchor offset 0.5, fixed anchor size; TensorsToDetectionsCalculator: x/y/w/h scale 192, keypoints after
the box, sigmoid scores clipped at ±100).

BlazeFace has no mouth corners. Its 6 keypoints are two eyes, nose tip, mouth centre and two ear tragions;
the 5 landmarks the pipeline needs are eyes, nose and two mouth corners *estimated* as

    corner = mouth_centre ∓ 0.414 * (right_eye - left_eye)

i.e. a mouth 0.83 eye-distances wide (the ratio in the ArcFace 5-point template), centred on the mouth
keypoint and parallel to the eye line, so in-plane roll is followed. The estimate is good for near-frontal
faces; with yaw the real corners move towards the far cheek and the estimate does not, and open or smiling
mouths are wider. Alignment built on it is therefore a little looser than with a detector that predicts corners.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from stream.detectors.base import Letterbox, OnnxFaceDetector, grid_centers

_STRIDE = 4
_RAW_SCORE_LIMIT = 100.0
#: Half the mouth width in eye distances (ArcFace template: mouth 0.2606 wide, eyes 0.3146 apart).
MOUTH_HALF_WIDTH = 0.414
# Keypoint order in the model's output (MediaPipe FaceKeyPoint: the subject's right eye first, which is the
# eye on the image's left for a face looking at the camera).
_EYE_IMAGE_LEFT, _EYE_IMAGE_RIGHT, _NOSE, _MOUTH = 0, 1, 2, 3


@lru_cache(maxsize=4)
def _anchors(width: int, height: int) -> np.ndarray:
    """``(A, 2)`` anchor centres ``x, y`` in network pixels, row-major like MediaPipe's."""
    return (grid_centers(width, height, _STRIDE) + 0.5) * _STRIDE


def five_landmarks(keypoints: np.ndarray) -> np.ndarray:
    """BlazeFace's 6 keypoints → the pipeline's 5 landmarks (mouth corners estimated, see module doc).

    Args:
        keypoints: ``(k, 6, 2)`` float32 in any pixel frame.

    Returns:
        ``(k, 5, 2)`` float32: left eye, right eye, nose, left and right mouth corner, as seen in the image.
    """
    if keypoints.ndim != 3 or keypoints.shape[1:] != (6, 2):
        raise ValueError(f"keypoints must have shape (k, 6, 2), got {keypoints.shape}")
    left, right = keypoints[:, _EYE_IMAGE_LEFT], keypoints[:, _EYE_IMAGE_RIGHT]
    half_mouth = MOUTH_HALF_WIDTH * (right - left)
    mouth = keypoints[:, _MOUTH]
    return np.stack([left, right, keypoints[:, _NOSE], mouth - half_mouth, mouth + half_mouth], axis=1)


class BlazeFaceDetector(OnnxFaceDetector):
    """Outputs: ``regressors (1, 2304, 16)`` (box cx, cy, w, h then 6 keypoints, input pixels relative to
    the anchor centre) and ``classificators (1, 2304, 1)`` logits."""

    def preprocess(self, image: np.ndarray, box: Letterbox) -> np.ndarray:
        """``(H, W, 3)`` uint8 BGR frame → ``(1, 3, 192, 192)`` float32, shrunk by area averaging.

        The 192 px input shrinks frames 5-10x; bilinear resizing aliases at such factors and moves the
        boxes of small faces by pixels from one frame size to the next, area averaging does not.
        """
        h, w = image.shape[:2]
        if box.scale < 1:
            size = (min(box.width, round(w * box.scale)), min(box.height, round(h * box.scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            box = Letterbox(1.0, box.width, box.height)
        return super().preprocess(image, box)

    def _decode(self, outputs: list[np.ndarray], box: Letterbox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        named = dict(zip(self.output_names, outputs, strict=True))
        logits = np.clip(named["classificators"][0, :, 0], -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)
        score = 1.0 / (1.0 + np.exp(-logits))
        keep = score >= self.score_threshold
        raw = named["regressors"][0][keep]
        anchors = _anchors(box.width, box.height)[keep]
        center = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        xyxy = np.hstack([center - half, center + half])
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        return xyxy, score[keep].astype(np.float32), five_landmarks(keypoints)
