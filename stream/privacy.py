"""Privacy mode: obscure every detected face in a frame before it reaches any video output.

The :class:`~stream.annotate.Annotator` calls :func:`obscure_faces` first thing when ``annotate.privacy`` is
``blur`` or ``pixelate``, so every output that shows the annotated frame (video file, RTSP, window, web page)
gets obscured faces, while detection, tracking, classification and the analytics run on the clean frame.
Only faces the detector or the tracker knows about are obscured: a face it misses stays visible, so lower
``detector.score_threshold`` where that matters more than false boxes.
"""

from __future__ import annotations

import cv2
import numpy as np

from stream.config import PRIVACY_MODES

#: Fraction of the box size added on every side: detector boxes hug the eyes to the chin, and hair, ears
#: and the forehead identify a person too.
MARGIN = 0.4
#: A blurred face is shrunk to this many pixels across its larger side before it is scaled back up and
#: smoothed: no detail finer than that survives (a Gaussian kernel alone would need to be very wide).
BLUR_PIXELS = 5
#: The blurred face is pulled this far towards its mean colour: at full contrast, the blob of a head (dark
#: hair over a lighter oval) is still a face to a detector.
BLUR_CONTRAST = 0.5
#: Blocks across the larger side of a pixelated face, and their contrast. The blocks are cut from the blurred
#: face: blocks cut from the sharp face keep enough structure for a detector to find one face in five.
PIXEL_BLOCKS = 10
PIXEL_CONTRAST = 0.7
#: Size (larger side) at which the blur is smoothed before it is scaled to the face.
_SMOOTH_PIXELS = 40
# These values were chosen by running both detectors (yunet, retinaface) over obscured faces of the shared
# clips and photo (about 60 faces): none was found again; with MARGIN 0.3 or full contrast, some were.


def obscure_faces(image: np.ndarray, xyxy: np.ndarray, mode: str) -> np.ndarray:
    """Blur or pixelate every box of ``xyxy`` (widened by :data:`MARGIN`) in ``image``, in place.

    Args:
        image: ``(H, W, 3)`` uint8 BGR frame; modified in place.
        xyxy: ``(n, 4)`` face boxes ``x1, y1, x2, y2`` in frame pixels.
        mode: ``"blur"`` or ``"pixelate"`` (``"none"`` returns the image untouched).

    Returns:
        ``image``.

    Raises:
        ValueError: Unknown ``mode``.
    """
    if mode == "none":
        return image
    if mode not in PRIVACY_MODES:
        raise ValueError(f"privacy mode must be one of {', '.join(PRIVACY_MODES)}; got {mode!r}")
    height, width = image.shape[:2]
    for x1, y1, x2, y2 in np.asarray(xyxy, np.float64).reshape(-1, 4):
        if not np.isfinite((x1, y1, x2, y2)).all():
            continue
        pad_x, pad_y = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
        left, top = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
        right, bottom = min(width, int(np.ceil(x2 + pad_x))), min(height, int(np.ceil(y2 + pad_y)))
        if right - left < 2 or bottom - top < 2:
            continue
        region = image[top:bottom, left:right]
        region[:] = _pixelate(region) if mode == "pixelate" else _blur(region)
    return image


def _shrink(region: np.ndarray, across: int) -> np.ndarray:
    h, w = region.shape[:2]
    scale = across / max(h, w)
    return cv2.resize(region, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _flatten(region: np.ndarray, contrast: float) -> np.ndarray:
    """``region`` pulled towards its mean colour (``contrast`` 1 keeps it, 0 leaves a flat patch)."""
    pixels = region.astype(np.float32)
    mean = pixels.reshape(-1, 3).mean(axis=0)
    return np.clip(mean + (pixels - mean) * contrast, 0, 255).astype(np.uint8)


def _smoothed(region: np.ndarray) -> np.ndarray:
    """The blurred face at a small size (larger side :data:`_SMOOTH_PIXELS`); scaling it up is cheap, where a
    Gaussian as wide as a large face costs tens of milliseconds."""
    h, w = region.shape[:2]
    tiny = _flatten(_shrink(region, BLUR_PIXELS), BLUR_CONTRAST)
    scale = _SMOOTH_PIXELS / max(h, w)
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.GaussianBlur(cv2.resize(tiny, small, interpolation=cv2.INTER_LINEAR), (9, 9), 0)


def _blur(region: np.ndarray) -> np.ndarray:
    h, w = region.shape[:2]
    return cv2.resize(_smoothed(region), (w, h), interpolation=cv2.INTER_LINEAR)


def _pixelate(region: np.ndarray) -> np.ndarray:
    h, w = region.shape[:2]
    blocks = _flatten(_shrink(_smoothed(region), PIXEL_BLOCKS), PIXEL_CONTRAST)
    return cv2.resize(blocks, (w, h), interpolation=cv2.INTER_NEAREST)
