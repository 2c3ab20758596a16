"""Constant-velocity Kalman filter over face boxes, batched over tracks (ByteTrack / DeepSORT's).

State ``(cx, cy, a, h, vcx, vcy, va, vh)`` with ``a = w / h``, one frame per step. Aspect instead of width because
a face's aspect barely changes, so its velocity can be given almost no noise.
"""

from __future__ import annotations

import numpy as np

# Kalman noise as fractions of the box height (ByteTrack / DeepSORT values): the uncertainty of a
# face's position grows with its size, so one setting serves faces of 20 and of 400 pixels.
_STD_WEIGHT_POSITION = 1.0 / 20.0
_STD_WEIGHT_VELOCITY = 1.0 / 160.0

# Boxes are clamped to this size (pixels) inside the filter: a degenerate zero-height box would
# give zero noise, a singular innovation covariance and an infinite aspect ratio.
_MIN_BOX_SIDE = 1.0


# State (cx, cy, a, h, vcx, vcy, va, vh) with a = w / h; one frame per step. Aspect instead of
# width because a face's aspect barely changes, so its velocity can be given almost no noise.
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """``(k, 4)`` xyxy boxes to ``(k, 4)`` float64 ``(cx, cy, w/h, h)`` measurements."""
    xyxy = xyxy.astype(np.float64)
    w = np.maximum(xyxy[:, 2] - xyxy[:, 0], _MIN_BOX_SIDE)
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], _MIN_BOX_SIDE)
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2.0
    return np.stack([cx, cy, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """``(k, >=4)`` states to ``(k, 4)`` float64 xyxy boxes."""
    h = np.maximum(xyah[:, 3], _MIN_BOX_SIDE)
    w = np.maximum(xyah[:, 2] * h, _MIN_BOX_SIDE)
    cx, cy = xyah[:, 0], xyah[:, 1]
    return np.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], axis=1)


def _diag(std: np.ndarray) -> np.ndarray:
    """``(k, d)`` standard deviations to ``(k, d, d)`` diagonal covariances."""
    out = np.zeros((*std.shape, std.shape[1]))
    idx = np.arange(std.shape[1])
    out[:, idx, idx] = std**2
    return out


def kf_initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start tracks at ``(k, 4)`` xyah measurements with zero velocity.

    Returns:
        ``(k, 8)`` means and ``(k, 8, 8)`` covariances, float64.
    """
    k = len(measurement)
    mean = np.concatenate([measurement, np.zeros((k, 4))], axis=1)
    h = measurement[:, 3]
    wp, wv = _STD_WEIGHT_POSITION * h, _STD_WEIGHT_VELOCITY * h
    std = np.stack([2 * wp, 2 * wp, np.full(k, 1e-2), 2 * wp, 10 * wv, 10 * wv, np.full(k, 1e-5), 10 * wv], axis=1)
    return mean, _diag(std)


def kf_predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One constant-velocity step for ``(k, 8)`` means and ``(k, 8, 8)`` covariances."""
    k = len(mean)
    h = np.maximum(mean[:, 3], _MIN_BOX_SIDE)
    wp, wv = _STD_WEIGHT_POSITION * h, _STD_WEIGHT_VELOCITY * h
    std = np.stack([wp, wp, np.full(k, 1e-2), wp, wv, wv, np.full(k, 1e-5), wv], axis=1)
    return mean @ _F.T, _F @ cov @ _F.T + _diag(std)


def kf_update(mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct ``(k, 8)`` means and ``(k, 8, 8)`` covariances with ``(k, 4)`` xyah measurements."""
    k = len(mean)
    h = np.maximum(mean[:, 3], _MIN_BOX_SIDE)
    wp = _STD_WEIGHT_POSITION * h
    r = _diag(np.stack([wp, wp, np.full(k, 1e-1), wp], axis=1))
    s = _H @ cov @ _H.T + r  # (k, 4, 4) innovation covariance
    pht = cov @ _H.T  # (k, 8, 4)
    # K = P H^T S^-1, computed as a solve because S is symmetric positive definite.
    gain = np.swapaxes(np.linalg.solve(s, np.swapaxes(pht, 1, 2)), 1, 2)
    innovation = measurement - mean[:, :4]
    new_mean = mean + np.einsum("kij,kj->ki", gain, innovation)
    new_cov = cov - gain @ s @ np.swapaxes(gain, 1, 2)
    return new_mean, new_cov
