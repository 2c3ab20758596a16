"""Face alignment: a 5-point similarity transform onto each classifier's own template.

A template is 5 points (left eye, right eye, nose, left and right mouth corner, as
seen in the image) in units of the chip side, so one template serves any chip
size. Classifiers declare their template name in the registry.
"""

from __future__ import annotations

import cv2
import numpy as np

# ArcFace's 112x112 5-point template in unit coordinates (insightface's arcface_dst / 112).
ARCFACE_UNIT = np.array(
    [[0.3419, 0.4616], [0.6565, 0.4598], [0.5002, 0.6405], [0.3709, 0.8247], [0.6315, 0.8232]], np.float32
)
# The same 5 points in dlib's chip space; dlib's get_face_chip_details(padding=0.2) maps its mean face
# into [0, 1] and then pads by 0.2 on every side, hence (0.2 + T) / 1.4 (see ../shared/README.md).
_DLIB_T = np.array(
    [[0.2273, 0.2228], [0.7528, 0.2199], [0.4917, 0.5216], [0.2759, 0.8292], [0.7110, 0.8268]], np.float32
)
TEMPLATES: dict[str, np.ndarray] = {
    "dlib_chip": (0.2 + _DLIB_T) / 1.4,
    # dlib's face-recognition ResNet reads chips with padding 0.25 (models.training.dlib_resnet).
    "dlib_chip_025": (0.25 + _DLIB_T) / 1.5,
    "arcface": ARCFACE_UNIT,
    # A loose face crop (face ~60% of the chip), for models trained on whole-head crops such as UTKFace's
    # "aligned & cropped" images: the ArcFace points shrunk towards the chip centre.
    "utkface_crop": (ARCFACE_UNIT - 0.5) * 0.62 + np.array([0.5, 0.47], np.float32),
    # The seed app's classifier input: the MTCNN box cropped and resized. Median MTCNN landmarks inside its box
    # (45 faces from ../shared/videos), mirrored to be symmetric, in a square crop of the box's height centred on
    # the box (MTCNN boxes are ~0.74 as wide as tall; the seed stretches them to a square, a similarity cannot).
    "mtcnn_box": np.array(
        [[0.3312, 0.4009], [0.6688, 0.4009], [0.5000, 0.5985], [0.3547, 0.7826], [0.6453, 0.7826]], np.float32
    ),
}


def template_points(name: str, size: int) -> np.ndarray:
    """``(5, 2)`` float32 template points for a ``size`` x ``size`` chip.

    Raises:
        ValueError: Unknown template name.
    """
    try:
        return TEMPLATES[name] * np.float32(size)
    except KeyError:
        raise ValueError(f"unknown alignment template {name!r}; valid: {', '.join(TEMPLATES)}") from None


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form; no RANSAC, because with 5 well-defined points an outlier
    means a bad detection, which the scheduler's quality gate handles instead.

    Args:
        src: ``(k, 2)`` points.
        dst: ``(k, 2)`` points.

    Returns:
        ``(2, 3)`` float64 affine matrix.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    var = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var if var > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_faces(image: np.ndarray, landmarks: np.ndarray, template: str, size: int) -> np.ndarray:
    """Warp each face onto the template.

    Large faces are first shrunk with area interpolation so that the final bilinear
    warp never samples with gaps (aliasing would otherwise make small chips, such as
    32 px gender chips from 300 px faces, noisier than the network saw in training).

    Args:
        image: ``(H, W, 3)`` uint8 BGR frame.
        landmarks: ``(n, 5, 2)`` float points in frame pixels.
        template: Name in :data:`TEMPLATES`.
        size: Chip side in pixels.

    Returns:
        ``(n, size, size, 3)`` uint8 BGR chips (zeros where landmarks are not finite).
    """
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must have shape (n, 5, 2), got {landmarks.shape}")
    dst = template_points(template, size)
    chips = np.zeros((len(landmarks), size, size, 3), np.uint8)
    height, width = image.shape[:2]
    for i, points in enumerate(landmarks):
        if not np.isfinite(points).all():
            continue
        matrix = similarity_transform(points, dst)
        scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
        if scale < 0.5:
            # Crop the chip's footprint, shrink it to twice the chip resolution, and warp from there.
            inverse = cv2.invertAffineTransform(matrix)
            corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
            x0, y0 = np.floor(corners.min(0)).astype(int) - 1
            x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            factor = 2 * scale
            crop = image[y0:y1, x0:x1]
            new_w, new_h = max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor))
            small = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
            # Map small-crop pixels back to frame pixels (cv2.resize aligns pixel centres), then through
            # the original transform.
            to_frame = np.array(
                [[1 / fx, 0, x0 + 0.5 / fx - 0.5], [0, 1 / fy, y0 + 0.5 / fy - 0.5], [0, 0, 1]], np.float64
            )
            chips[i] = cv2.warpAffine(small, matrix @ to_frame, (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
        else:
            chips[i] = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
    return chips


def box_downsample(chips: np.ndarray, factor: int) -> np.ndarray:
    """``(n, S, S, 3)`` uint8 chips averaged over ``factor`` x ``factor`` blocks (rounded): ``(n, S/f, S/f, 3)``."""
    n, side = chips.shape[0], chips.shape[1]
    if factor == 1:
        return chips
    small = side // factor
    blocks = chips.reshape(n, small, factor, small, factor, chips.shape[3]).astype(np.uint32)
    return ((blocks.sum(axis=(2, 4)) + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def align_for(image: np.ndarray, landmarks: np.ndarray, inputs: list[tuple[str, int]]) -> list[np.ndarray]:
    """Chips for several classifiers, each ``(template, chip side)``, warped once per template.

    A chip whose side divides that of a larger chip on the same template is the larger chip box-averaged
    (the default pair: 32x32 gender chips from the 64x64 age chips): as anti-aliased as a warp of its own,
    and it saves that warp, which at 32 px goes through the area pre-shrink.

    Returns:
        One ``(n, S, S, 3)`` uint8 array per entry of ``inputs``, in that order.
    """
    out: list[np.ndarray | None] = [None] * len(inputs)
    made: dict[str, tuple[int, np.ndarray]] = {}
    for i in sorted(range(len(inputs)), key=lambda k: -inputs[k][1]):
        template, size = inputs[i]
        larger = made.get(template)
        if larger is not None and larger[0] % size == 0:
            out[i] = box_downsample(larger[1], larger[0] // size)
        else:
            chips = align_faces(image, landmarks, template, size)
            made.setdefault(template, (size, chips))
            out[i] = chips
    return [chips for chips in out if chips is not None]
