"""Synthetic scenes: reproducible, GT boxes inside the frame, backgrounds face-free."""

import numpy as np
import pytest

from bench import synth
from stream.tracking import iou_xyxy
from tests.conftest import UTKFACE, VIDEOS, shared_file


@pytest.fixture(scope="module")
def backgrounds():
    shared_file("videos", "crowd_1080p.mp4")
    return synth.make_backgrounds(3, (640, 360), seed=7, videos_dir=VIDEOS, frames_per_clip=2)


@pytest.fixture(scope="module")
def pool():
    shared_file("data", "utkface", "UTKFace")
    return synth.sample_faces(8, seed=1, root=UTKFACE)


def test_backgrounds_are_reproducible_and_sized(backgrounds):
    again = synth.make_backgrounds(3, (640, 360), seed=7, videos_dir=VIDEOS, frames_per_clip=2)
    assert all(np.array_equal(a, b) for a, b in zip(backgrounds, again, strict=True))
    assert all(b.shape == (360, 640, 3) and b.dtype == np.uint8 for b in backgrounds)
    other = synth.make_backgrounds(1, (640, 360), seed=8, videos_dir=VIDEOS, frames_per_clip=2)
    assert not np.array_equal(other[0], backgrounds[0])


def test_backgrounds_are_face_free_per_default_detector(backgrounds, default_detector, config):
    for background in backgrounds:
        faces = default_detector.detect(background)
        assert not (faces.score >= config.detector.score_threshold).any()


def test_tiled_background_is_face_free(default_detector):
    shared_file("videos", "crowd_1080p.mp4")
    (big,) = synth.make_backgrounds(1, (1280, 720), seed=3, videos_dir=VIDEOS, frames_per_clip=2)
    assert big.shape == (720, 1280, 3)
    faces = default_detector.detect(big)
    assert not (faces.score >= synth.REJECT_THRESHOLD).any()


def test_scene_is_deterministic_with_gt_inside_frame(backgrounds, pool):
    a = synth.scene(6, face_size_range=(16, 128), seed=5, background=backgrounds[0], faces=pool)
    b = synth.scene(6, face_size_range=(16, 128), seed=5, background=backgrounds[0], faces=pool)
    image, gt, pasted = a
    assert np.array_equal(image, b[0]) and np.array_equal(gt, b[1]) and pasted.file == b[2].file
    assert 1 <= len(gt) <= 6 and len(pasted) == len(gt)
    assert (gt[:, :2] >= -0.5).all() and (gt[:, 2] <= 640.5).all() and (gt[:, 3] <= 360.5).all()
    sizes = np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1])
    assert ((sizes >= 15) & (sizes <= 129)).all()
    assert set(pasted.gender.tolist()) <= {0, 1} and (pasted.age >= 0).all()
    # Each face's crop box maps back to its GT box.
    crop_boxes = np.asarray([next(f for f in pool if f.file == name).face_xyxy for name in pasted.file])
    np.testing.assert_allclose(pasted.to_frame(crop_boxes), gt, atol=1e-3)


def test_composite_places_the_face_box_and_detector_finds_it(backgrounds, pool, default_detector):
    image, gt, _ = synth.composite(backgrounds[1], [(pool[0], 96, (100, 80)), (pool[1], 64, (400, 150))])
    np.testing.assert_allclose(gt[:, :2], [[100, 80], [400, 150]], atol=1)
    np.testing.assert_allclose(np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]), [96, 64], atol=1)
    faces = default_detector.detect(image)
    faces = faces[faces.score >= 0.5]
    assert len(faces) == 2 and (iou_xyxy(faces.xyxy, gt).max(axis=0) >= 0.5).all()


@pytest.mark.parametrize(
    ("faces", "match"),
    [
        ([(np.zeros((200, 200, 3), np.uint8), 0, (10, 10))], "faces\\[0\\] size_px"),
        ([(np.zeros((200, 200, 3), np.uint8), 64, (600, 10))], "faces\\[0\\] box .* leaves"),
        ([(np.zeros((20, 30, 3), np.uint8), 64, (10, 10))], "faces\\[0\\] image"),
    ],
)
def test_composite_rejects_bad_faces(faces, match):
    with pytest.raises(ValueError, match=match):
        synth.composite(np.zeros((360, 640, 3), np.uint8), faces)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n": -1}, "^n must"), ({"n": 1, "size": (640,)}, "^size must"), ({"n": 1, "frames_per_clip": 0}, "frames")],
)
def test_make_backgrounds_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synth.make_backgrounds(**kwargs)


def test_face_mask_is_soft_ellipse():
    mask = synth.face_mask(100, 100)
    assert mask.shape == (100, 100) and mask[50, 50] == 1.0 and mask[0, 0] == 0.0 and mask[50, 0] == 0.0
    assert 0 < mask[50, 12] < 1
