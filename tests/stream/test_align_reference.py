"""Alignment against references outside stream/align.py: the templates' published numbers, an independent least
squares for the similarity, and a plain warp for the anti-aliased (pre-shrunk) path."""

from __future__ import annotations

import numpy as np
import pytest

from stream.align import TEMPLATES, align_faces, similarity_transform, template_points

# insightface's arcface_dst (python-package/insightface/utils/face_align.py), in 112x112 pixels.
ARCFACE_DST_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                            [70.7299, 92.2041]])
# The dlib-chip template documented with the Cydral models (../shared/README.md): dst = (padding + T) / (1 + 2 padding)
# with T in dlib's unpadded chip space.
DLIB_T = np.array([[0.2273, 0.2228], [0.7528, 0.2199], [0.4917, 0.5216], [0.2759, 0.8292], [0.7110, 0.8268]])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("arcface", ARCFACE_DST_112 / 112),
        ("dlib_chip", (0.2 + DLIB_T) / 1.4),
        ("dlib_chip_025", (0.25 + DLIB_T) / 1.5),
        # ArcFace shrunk to 62% about the chip centre, then centred at (0.5, 0.47): a loose whole-head crop.
        ("utkface_crop", (ARCFACE_DST_112 / 112 - 0.5) * 0.62 + [0.5, 0.47]),
        # Median MTCNN landmarks in their box (stream/align.py documents the measurement), mirrored symmetric.
        ("mtcnn_box", [[0.3312, 0.4009], [0.6688, 0.4009], [0.5, 0.5985], [0.3547, 0.7826], [0.6453, 0.7826]]),
    ],
)
def test_templates_are_the_published_points(name, expected):
    np.testing.assert_allclose(TEMPLATES[name], expected, atol=1e-4)
    np.testing.assert_allclose(template_points(name, 64), np.asarray(expected) * 64, atol=64e-4)


def _least_squares_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity [[a, -b, tx], [b, a, ty]] minimising the squared error, solved as a linear system."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


@pytest.mark.parametrize("seed", range(6))
def test_similarity_is_the_least_squares_solution(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 400, (5, 2))
    angle, scale = rng.uniform(-0.8, 0.8), rng.uniform(0.05, 3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rotation.T + rng.uniform(-50, 50, 2) + rng.normal(0, 4, (5, 2))  # noisy: not exact
    expected = _least_squares_similarity(src, dst)
    np.testing.assert_allclose(similarity_transform(src, dst), expected, atol=1e-8, rtol=1e-8)


def test_similarity_of_a_mirrored_face_is_a_rotation_not_a_reflection():
    src = TEMPLATES["arcface"].astype(np.float64) * 100
    mirrored = src.copy()
    mirrored[:, 0] = 100 - mirrored[:, 0]
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix, _least_squares_similarity(src, mirrored), atol=1e-8)


def _smooth_image(size: int) -> np.ndarray:
    """A low-frequency colour pattern (no detail finer than ~60 px): area shrinking and plain bilinear sampling
    agree on it, so any difference between the two paths is a geometric error."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    channels = [127 + 120 * np.sin(x / 37.0 + 0.3 * c) * np.cos(y / 53.0 - 0.2 * c) for c in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("face_side", "chip"), [(300, 32), (500, 64), (900, 112)])
def test_pre_shrunk_warp_lands_where_a_plain_warp_does(face_side, chip):
    """Faces larger than twice the chip go through an area pre-shrink; on a smooth image its chip must equal the
    plain bilinear warp's within 2 grey levels (a half-pixel slip in the mapping back moves it by ~5+)."""
    import cv2

    image = _smooth_image(2000)
    centred = (TEMPLATES["arcface"] - 0.5) * face_side
    tilt = np.array([[np.cos(0.2), np.sin(0.2)], [-np.sin(0.2), np.cos(0.2)]])
    landmarks = centred @ tilt + 1000.0  # a tilted face in the middle: the chip's footprint is inside the frame
    chips = align_faces(image, landmarks[None].astype(np.float32), "arcface", chip)
    matrix = similarity_transform(landmarks, template_points("arcface", chip))
    assert np.hypot(matrix[0, 0], matrix[0, 1]) < 0.5  # the pre-shrink path
    plain = cv2.warpAffine(image, matrix, (chip, chip), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    difference = np.abs(chips[0].astype(int) - plain.astype(int))
    assert difference.max() <= 2, difference.max()


@pytest.mark.parametrize("seed", range(3))
def test_similarity_of_mirrored_points_is_the_least_squares_rotation(seed):
    """Mirrored landmarks (a reflection is the best fit, and not allowed): the closest proper similarity."""
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 200, (5, 2))
    dst = src * [-1.0, 1.0] + rng.normal(0, 3, (5, 2))
    matrix = similarity_transform(src, dst)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix, _least_squares_similarity(src, dst), atol=1e-8)


def test_similarity_of_points_closer_than_a_pixel():
    src = TEMPLATES["arcface"].astype(np.float64)  # unit chip: all points within one pixel of each other
    np.testing.assert_allclose(similarity_transform(src, src * 112 + 5), [[112, 0, 5], [0, 112, 5]], atol=1e-6)
    # Five identical points (a broken detection) give a finite transform of scale 1, never NaN.
    matrix = similarity_transform(np.full((5, 2), 7.0), TEMPLATES["arcface"] * 64)
    assert np.isfinite(matrix).all() and np.hypot(matrix[0, 0], matrix[0, 1]) == pytest.approx(1.0)


def test_landmarks_of_the_wrong_shape_or_partly_missing():
    image = np.full((200, 200, 3), 90, np.uint8)
    with pytest.raises(ValueError, match=r"landmarks must have shape \(n, 5, 2\), got \(1, 4, 2\)"):
        align_faces(image, np.zeros((1, 4, 2), np.float32), "arcface", 32)
    with pytest.raises(ValueError, match=r"got \(5, 2\)"):
        align_faces(image, np.zeros((5, 2), np.float32), "arcface", 32)
    points = (TEMPLATES["arcface"] * 100 + 50)[None].repeat(2, axis=0).astype(np.float32)
    points[1, 3, 1] = np.nan  # one coordinate of one landmark
    chips = align_faces(image, points, "arcface", 32)
    assert (chips[0] == 90).all() and (chips[1] == 0).all()


def _detailed_image(size: int, period: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    pattern = 127 + 120 * np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / (period * 1.3))
    return np.repeat(np.clip(pattern, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize(("face_side", "chip", "period"), [(300, 32, 3.0), (300, 32, 40.0), (600, 64, 60.0)])
def test_pre_shrunk_chip_is_the_anti_aliased_chip(face_side, chip, period):
    """Against an ideal anti-aliased chip (the plain warp at 8x the chip's resolution, box-averaged): detail finer
    than the chip's pixels averages out instead of aliasing (period 3 px), and coarser detail is kept, not blurred
    away (periods of 40-60 px: 4-6 chip pixels)."""
    import cv2

    image = _detailed_image(1400, period)
    tilt = np.array([[np.cos(0.2), np.sin(0.2)], [-np.sin(0.2), np.cos(0.2)]])
    landmarks = ((TEMPLATES["arcface"] - 0.5) * face_side) @ tilt + 700.0
    chips = align_faces(image, landmarks[None].astype(np.float32), "arcface", chip)
    # Fine pixel j samples chip coordinate (j + 0.5) / 8 - 0.5, so each 8x8 block is centred on its chip pixel.
    fine = 8 * similarity_transform(landmarks, template_points("arcface", chip))
    fine[:, 2] += 3.5
    sharp = cv2.warpAffine(image, fine, (chip * 8, chip * 8), flags=cv2.INTER_LINEAR).astype(np.float64)
    ideal = sharp.reshape(chip, 8, chip, 8, 3).mean(axis=(1, 3))
    difference = np.abs(chips[0].astype(np.float64) - ideal)
    assert difference.mean() <= 4.0 and np.percentile(difference, 99) <= 16, (difference.mean(), difference.max())


def test_box_downsample_rounds_halves_up():
    from stream.align import box_downsample

    chips = np.zeros((1, 4, 4, 3), np.uint8)
    chips[0, :2, :2] = np.array([[1, 2], [1, 2]], np.uint8)[..., None]  # mean 1.5 -> 2
    chips[0, 2:, 2:] = np.array([[2, 2], [3, 3]], np.uint8)[..., None]  # mean 2.5 -> 3
    small = box_downsample(chips, 2)
    assert small[0, 0, 0].tolist() == [2, 2, 2] and small[0, 1, 1].tolist() == [3, 3, 3]


def test_a_large_face_whose_chip_lies_outside_the_frame_gives_a_blank_chip():
    image = np.full((300, 300, 3), 90, np.uint8)
    far = (TEMPLATES["arcface"] * 400 + [5000.0, 5000.0])[None].astype(np.float32)  # pre-shrink path, off-frame
    assert (align_faces(image, far, "arcface", 32) == 0).all()
