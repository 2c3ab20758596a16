"""The observation quality rule (stream.quality): pose proxies, sharpness, the weight, and the pipeline's gating."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.quality import FRONTAL_LOG_PITCH, QualityRule, pose_proxies, sharpness
from stream.types import Faces
from tests.conftest import UTKFACE, shared_file

# A frontal face's 5 points (ArcFace's 112 px template: eyes, nose, mouth corners), pitch-neutral after the
# frontal offset: eye-to-nose / nose-to-mouth = exp(FRONTAL_LOG_PITCH).
EYES = np.array([[38.3, 51.7], [73.5, 51.7]])
MOUTH = np.array([[41.5, 92.4], [70.7, 92.4]])


def face_points(nose_dx: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    """Landmarks with the nose moved sideways by ``nose_dx`` inter-ocular distances and set at log-pitch ``pitch``."""
    iod = EYES[1, 0] - EYES[0, 0]
    ratio = np.exp(pitch + FRONTAL_LOG_PITCH)  # eye-nose / nose-mouth
    total = MOUTH[0, 1] - EYES[0, 1]
    nose_y = EYES[0, 1] + total * ratio / (1 + ratio)
    nose = np.array([[EYES.mean(0)[0] + nose_dx * iod, nose_y]])
    return np.concatenate([EYES, nose, MOUTH]).astype(np.float32)


def faces_of(points: list[np.ndarray], size: float = 120.0, score: float = 0.9) -> Faces:
    n = len(points)
    return Faces(np.tile([0, 0, size, size], (n, 1)), np.full(n, score), np.stack(points))


@pytest.mark.parametrize(
    ("points", "yaw", "pitch"),
    [
        (face_points(), 0.0, 0.0),
        (face_points(nose_dx=0.3), 0.3, 0.0),
        (face_points(nose_dx=-0.5), -0.5, 0.0),
        (face_points(pitch=0.4), 0.0, 0.4),
        (face_points(pitch=-0.3), 0.0, -0.3),
    ],
)
def test_pose_proxies(points, yaw, pitch):
    got_yaw, got_pitch = pose_proxies(points[None])
    assert got_yaw[0] == pytest.approx(yaw, abs=1e-4) and got_pitch[0] == pytest.approx(pitch, abs=1e-4)
    # Rotation in the image plane (a tilted head) changes neither proxy.
    matrix = cv2.getRotationMatrix2D((56, 70), 25, 1.0)
    turned = points @ matrix[:, :2].T + matrix[:, 2]
    again_yaw, again_pitch = pose_proxies(turned[None])
    assert again_yaw[0] == pytest.approx(yaw, abs=1e-4) and again_pitch[0] == pytest.approx(pitch, abs=1e-4)


def test_impossible_and_missing_landmarks():
    nose_above_eyes = face_points()
    nose_above_eyes[2, 1] = 30.0
    yaw, pitch = pose_proxies(np.stack([nose_above_eyes, np.full((5, 2), np.nan, np.float32)]))
    assert pitch[0] == np.inf and np.isnan(yaw[1]) and np.isnan(pitch[1])
    weights = QualityRule().weights(faces_of([nose_above_eyes, np.full((5, 2), np.nan, np.float32)]))
    assert weights[0] == 0.0  # not a face seen from the front, whatever the detector says
    assert weights[1] == pytest.approx(0.9)  # no landmarks: the pose terms are unknown, not bad


def test_sharpness_drops_with_blur_and_ignores_chip_size():
    shared_file("data", "utkface", "UTKFace")
    image = cv2.imread(str(sorted(UTKFACE.glob("*.jpg"))[100]))
    chip = cv2.resize(image, (112, 112), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(chip, (0, 0), 2.0)
    small = cv2.resize(chip, (64, 64), interpolation=cv2.INTER_AREA)
    sharp, soft, same = sharpness(np.stack([chip, blurred]))[0], sharpness(blurred[None])[0], sharpness(small[None])[0]
    assert soft < 0.5 * sharp
    assert same == pytest.approx(sharp, rel=0.05)
    assert sharpness(np.full((1, 64, 64, 3), 128, np.uint8))[0] == 0.0


def test_weight_falls_with_turn_nod_size_and_blur():
    rule = QualityRule()
    frontal, turned, nodding = face_points(), face_points(nose_dx=0.5), face_points(pitch=0.5)
    w = rule.weights(faces_of([frontal, turned, nodding]))
    assert w[0] == pytest.approx(0.9) and w[1] < 0.7 * w[0] and w[2] < 0.7 * w[0]
    assert rule.weights(faces_of([face_points(nose_dx=0.85)]))[0] == 0.0  # past max_yaw: nothing left
    assert rule.weights(faces_of([frontal], size=40))[0] == pytest.approx(0.9 * 40 / 80)
    flat = np.full((1, 64, 64, 3), 128, np.uint8)
    assert rule.weights(faces_of([frontal]), flat)[0] == 0.0
    assert not rule.keep(rule.weights(faces_of([frontal]), flat))[0]


def test_every_term_can_be_switched_off():
    legacy = QualityRule(max_yaw=0, max_pitch=0, full_sharpness=0, min_weight=0)
    faces = faces_of([face_points(nose_dx=0.9), face_points(pitch=2.0)], size=40, score=0.7)
    flat = np.full((2, 64, 64, 3), 128, np.uint8)
    # The weighting before issue 14: detector score x size term.
    np.testing.assert_allclose(legacy.weights(faces, flat), 0.7 * 0.5)
    assert legacy.keep(np.zeros(2)).all()


def test_pipeline_skips_chips_below_min_weight(config, default_detector, default_classifiers):
    from stream.config import replace
    from stream.pipeline import Pipeline
    from stream.types import Frame

    shared_file("data", "utkface", "UTKFace")
    image = cv2.imread(str(sorted(UTKFACE.glob("*.jpg"))[100]))
    canvas = cv2.copyMakeBorder(image, 100, 100, 100, 100, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    frames = [Frame(i, i / 25, canvas) for i in range(6)]
    counts = {}
    for min_weight in (0.0, 1.0):
        pipeline = Pipeline(replace(config, "quality", min_weight=min_weight), detector=default_detector,
                            classifiers=default_classifiers)
        for frame in frames:
            pipeline.process(frame)
        counts[min_weight] = pipeline.timer.classified_faces
    assert counts[0.0] > 0 and counts[1.0] == 0  # a weight of 1 is never reached: nothing is classified
    # A skipped face counts as looked at: the scheduler waits its interval instead of putting it first on
    # every frame (where it would starve the faces that can be classified).
    tracks = list(pipeline.book.tracks.values())
    assert tracks and all(t.n_obs == 0 and t.last_classified_frame >= 0 for t in tracks)
    faces, _ = pipeline.process(Frame(6, 6 / 25, canvas))
    last = max(t.last_classified_frame for t in tracks)
    assert not pipeline.scheduler.select(faces, pipeline.book, last + 1, pipeline.book.min_observations).any()
