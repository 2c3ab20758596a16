import cv2
import numpy as np
import pytest

from stream.align import TEMPLATES, align_faces, similarity_transform, template_points


def _apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize(("angle", "scale", "shift"), [(0, 1, (0, 0)), (30, 2.5, (10, -4)), (-170, 0.3, (100, 50))])
def test_similarity_recovers_a_known_transform(angle, scale, shift):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    theta = np.deg2rad(angle)
    rot = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = src @ rot.T + np.array(shift)
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(_apply(matrix, src), dst, atol=1e-9)


def test_similarity_never_reflects():
    src = np.array([[0, 0], [3, 0], [1, 2], [0.5, 4], [2.5, 4.2]], float)
    mirrored = src * np.array([-1, 1])
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_are_left_to_right_and_inside_the_chip(name):
    pts = template_points(name, 100)
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]  # left eye/mouth left of right ones
    assert pts[2, 1] > pts[:2, 1].max() and pts[3:, 1].min() > pts[2, 1]  # eyes above nose above mouth
    assert (pts > 0).all() and (pts < 100).all()


def test_unknown_template():
    with pytest.raises(ValueError, match="unknown alignment template 'x'; valid"):
        template_points("x", 64)


def _render_points(size, points, radius):
    image = np.zeros((size, size, 3), np.uint8)
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), color in zip(points, colors):
        cv2.circle(image, (int(round(x)), int(round(y))), radius, color, -1)
    return image


@pytest.mark.parametrize(("face_scale", "angle"), [(1.0, 0), (4.0, 25), (8.0, -40)])
def test_chip_puts_landmarks_on_the_template(face_scale, angle):
    # A synthetic "face" whose landmarks are coloured dots; after alignment each dot must sit on its
    # template point, whatever the face's size (incl. the shrink-first path) and roll.
    size = 64
    template = template_points("dlib_chip", size)
    theta = np.deg2rad(angle)
    rot = face_scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    points = (template - size / 2) @ rot.T + 400
    image = _render_points(800, points, radius=int(3 * face_scale))
    chip = align_faces(image, points[None], "dlib_chip", size)[0]
    for k, (x, y) in enumerate(template):
        channel_color = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)][k])
        mask = (np.abs(chip.astype(int) - channel_color).sum(axis=2) < 200)
        ys, xs = np.nonzero(mask)
        assert len(xs) > 0, f"landmark {k} not found in chip"
        assert abs(xs.mean() - x) < 1.5 and abs(ys.mean() - y) < 1.5


def test_non_finite_landmarks_give_blank_chips_and_shapes():
    image = np.full((50, 50, 3), 128, np.uint8)
    chips = align_faces(image, np.full((2, 5, 2), np.nan), "arcface", 32)
    assert chips.shape == (2, 32, 32, 3) and chips.dtype == np.uint8 and chips.max() == 0
    assert align_faces(image, np.zeros((0, 5, 2)), "arcface", 32).shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match=r"landmarks must have shape \(n, 5, 2\)"):
        align_faces(image, np.zeros((5, 2)), "arcface", 32)


def test_box_downsample_averages_blocks_with_rounding():
    from stream.align import box_downsample

    chips = np.zeros((2, 4, 4, 3), np.uint8)
    chips[0, :2, :2] = np.array([[0, 1], [1, 1]], np.uint8)[..., None]  # block mean 0.75 -> 1
    chips[1, 2:, 2:] = 255
    small = box_downsample(chips, 2)
    assert small.shape == (2, 2, 2, 3)
    assert small[0, 0, 0, 0] == 1 and small[0, 1, 1, 0] == 0
    assert small[1, 1, 1, 2] == 255 and small[1, 0, 0, 2] == 0
    assert box_downsample(chips, 1) is chips


def test_align_for_warps_once_per_template_and_keeps_order():
    from stream.align import align_faces, align_for, box_downsample

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    points = template_points("dlib_chip", 150)[None] + np.array([200, 100], np.float32)
    inputs = [("dlib_chip", 32), ("arcface", 112), ("dlib_chip", 64), ("dlib_chip", 48)]
    chips = align_for(image, points, inputs)
    assert [c.shape[1] for c in chips] == [32, 112, 64, 48]
    big = align_faces(image, points, "dlib_chip", 64)
    np.testing.assert_array_equal(chips[2], big)
    np.testing.assert_array_equal(chips[0], box_downsample(big, 2))  # derived from the 64 px chip
    np.testing.assert_array_equal(chips[3], align_faces(image, points, "dlib_chip", 48))  # 64 % 48 != 0
    np.testing.assert_array_equal(chips[1], align_faces(image, points, "arcface", 112))
