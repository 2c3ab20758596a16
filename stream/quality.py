"""How much one observation of a face counts: the quality weight the track book fuses with.

A blurred, turned, tilted-down or tiny chip is weak evidence about age and gender, and classifiers are most often
confidently wrong on exactly those chips, so each observation is weighted by what the face itself shows:

* **detector score** (a doubtful detection is a doubtful face);
* **size**: the shorter box side over ``full_size`` (small chips are upsampled noise), floored at 0.25;
* **head pose** from the 5 landmarks, with no extra model: *yaw* is the nose's sideways offset from the eye
  midpoint over the inter-ocular distance, measured along the eye line (0 frontal, about 0.35 at 30 degrees, 0.6 at
  45); *pitch* is the log of the eye-to-nose over the nose-to-mouth distance, measured across the eye line, minus
  its value on frontal faces (:data:`FRONTAL_LOG_PITCH`; positive looking down, negative looking up). Each gives
  ``1 - (proxy / max)^2``, so small turns cost little and the weight reaches 0 at ``max_yaw`` / ``max_pitch``;
* **sharpness**: the variance of the Laplacian of the aligned chip (grey, resized to 64 x 64 so the figure does not
  depend on the classifier's chip size) over ``full_sharpness``, square-rooted (the variance grows with the square
  of edge contrast), capped at 1. (On 300 UTKFace faces through YuNet and ``cydral_age``'s 64 px chip: median 550,
  5th percentile 143; the same faces blurred with a 2 px Gaussian: median 190. Real clips' sharp faces: 800-1300.)

Weights matter *within* a track: fusion is a weighted mean, so scaling all of one person's observations (a dark
face has less Laplacian contrast) changes nothing; only ``min_weight``, the gate, is absolute, and it is low.

The weight is the product of the terms, in [0, 1]. Observations below ``min_weight`` are not classified at all
(they would only add noise); the rest are fused with their weight. Every term can be switched off (``max_yaw: 0``,
``max_pitch: 0``, ``full_sharpness: 0``), which with ``min_weight: 0`` gives the old weighting (score x size).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from stream.config import QualityConfig, settings
from stream.types import Faces

#: log(eye-to-nose / nose-to-mouth) of a frontal face with the product's detectors (median over UTKFace's mostly
#: frontal faces through YuNet: 5th-95th percentile -0.07..0.42; 300 images).
FRONTAL_LOG_PITCH = 0.13
#: Side of the grey chip the sharpness is measured on.
SHARPNESS_SIDE = 64
#: The size term never drops below this: a small face is weak evidence, not none.
MIN_SIZE_TERM = 0.25
#: Keys of :func:`stream.pipeline.classify_batch`'s results: each observation's weight, and whether it was
#: classified (kept by :meth:`QualityRule.keep`).
WEIGHT = "quality_weight"
KEPT = "quality_kept"


def pose_proxies(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch proxies of each face from its 5 landmarks.

    Args:
        landmarks: ``(n, 5, 2)`` float32 points (left eye, right eye, nose, left and right mouth corner as seen).

    Returns:
        ``(yaw, pitch)``, each ``(n,)`` float32: yaw as the nose's offset along the eye line in inter-ocular
        distances (sign: towards the image's right eye), pitch as log(eye-nose / nose-mouth) minus
        :data:`FRONTAL_LOG_PITCH`. NaN where the landmarks are NaN; ``inf`` for impossible geometry (nose above the
        eyes or below the mouth, eyes on one point).
    """
    points = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    left_eye, right_eye, nose = points[:, 0], points[:, 1], points[:, 2]
    eye_mid = (left_eye + right_eye) / 2
    mouth_mid = (points[:, 3] + points[:, 4]) / 2
    eye_line = right_eye - left_eye
    iod = np.linalg.norm(eye_line, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        along = eye_line / iod[:, None]
        across = np.stack([-along[:, 1], along[:, 0]], axis=1)  # image "down" for an upright face
        yaw = ((nose - eye_mid) * along).sum(axis=1) / iod
        upper = ((nose - eye_mid) * across).sum(axis=1)
        lower = ((mouth_mid - nose) * across).sum(axis=1)
        pitch = np.log(upper / lower) - FRONTAL_LOG_PITCH
    impossible = np.isfinite(points).all(axis=(1, 2)) & ((iod <= 1e-6) | (upper <= 0) | (lower <= 0))
    yaw = np.where(impossible, np.inf, yaw)
    pitch = np.where(impossible, np.inf, pitch)
    return yaw.astype(np.float32), pitch.astype(np.float32)


def sharpness(chips: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each chip, grey and resized to :data:`SHARPNESS_SIDE` square.

    Args:
        chips: ``(n, S, S, 3)`` uint8 BGR aligned chips.

    Returns:
        ``(n,)`` float32 (0 for a flat chip; a sharp 64 x 64 face is typically several hundred).
    """
    out = np.zeros(len(chips), np.float32)
    for i, chip in enumerate(chips):
        grey = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)
        if grey.shape[0] != SHARPNESS_SIDE:
            grey = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
        out[i] = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    return out


def _falloff(proxy: np.ndarray, limit: float) -> np.ndarray:
    """``1 - (proxy / limit)^2`` clipped to [0, 1]; 1 where the proxy is NaN (unknown) or the term is off."""
    if limit <= 0:
        return np.ones(len(proxy), np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        term = np.clip(1.0 - (np.asarray(proxy, np.float64) / limit) ** 2, 0.0, 1.0)
    return np.where(np.isnan(proxy), 1.0, term).astype(np.float32)


class QualityRule:
    """The quality weight of each observation (see the module doc for the rule).

    Built from a :class:`~stream.config.QualityConfig` (the ``quality:`` section), with keyword overrides.

    Args:
        full_size: Faces at least this many pixels (shorter box side) get the full size term; smaller ones
            ``size / full_size``, floored at 0.25.
        max_yaw: Yaw proxy (nose offset over inter-ocular distance) at which the pose term reaches 0 (0: off).
        max_pitch: Pitch proxy (log eye-nose / nose-mouth, frontal = 0) at which the pose term reaches 0 (0: off).
        full_sharpness: Laplacian variance of a 64 x 64 grey chip that counts as fully sharp (0: off).
        min_weight: Observations weighted below this are not classified (0: every one is).
    """

    def __init__(self, config: QualityConfig | None = None, /, **overrides: Any) -> None:
        settings_ = settings(QualityConfig, config, overrides)
        self.full_size = settings_.full_size
        self.max_yaw = settings_.max_yaw
        self.max_pitch = settings_.max_pitch
        self.full_sharpness = settings_.full_sharpness
        self.min_weight = settings_.min_weight

    def terms(self, faces: Faces, chips: np.ndarray | None) -> dict[str, np.ndarray]:
        """Each ``(n,)`` float32 term of the weight: ``score``, ``size``, ``yaw``, ``pitch``, ``sharpness``.

        Args:
            faces: ``n`` faces.
            chips: ``(n, S, S, 3)`` uint8 BGR aligned chips of those faces, or None (sharpness term 1).
        """
        n = len(faces)
        yaw, pitch = pose_proxies(faces.landmarks)
        sharp = np.ones(n, np.float32)
        if chips is not None and self.full_sharpness > 0 and n:
            sharp = np.clip(np.sqrt(sharpness(chips) / self.full_sharpness), 0.0, 1.0).astype(np.float32)
        return {
            "score": np.clip(faces.score, 0.0, 1.0).astype(np.float32),
            "size": np.clip(faces.size / self.full_size, MIN_SIZE_TERM, 1.0).astype(np.float32),
            "yaw": _falloff(yaw, self.max_yaw),
            "pitch": _falloff(pitch, self.max_pitch),
            "sharpness": sharp,
        }

    def weights(self, faces: Faces, chips: np.ndarray | None = None) -> np.ndarray:
        """``(n,)`` float32 quality weight in [0, 1] of each face's observation (the product of :meth:`terms`)."""
        weight = np.ones(len(faces), np.float32)
        for term in self.terms(faces, chips).values():
            weight *= term
        return weight

    def keep(self, weights: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: which observations are worth classifying."""
        return np.asarray(weights) >= self.min_weight
