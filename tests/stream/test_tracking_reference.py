"""The tracker's motion model against a textbook Kalman filter with ByteTrack's published noise model.

ByteTrack (and DeepSORT before it) track a box as ``(cx, cy, a, h)`` plus velocities with a constant-velocity
Kalman filter whose noise scales with the box height h: position std h/20, velocity std h/160; a new track starts
with twice the position std and ten times the velocity std (and 1e-2 / 1e-5 for the aspect ratio a and its rate);
the process noise per step is h/20, h/160 (1e-2, 1e-5 for a); the measurement noise h/20 (1e-1 for a). The
reference below is written plainly, one track at a time, with ``np.linalg.inv``; the tracker's batched filter must
give the same prediction, which ``ByteTracker.coast`` exposes as boxes.
"""

from __future__ import annotations

import numpy as np
import pytest

from stream.tracking import ByteTracker
from stream.types import Faces

POSITION, VELOCITY = 1 / 20, 1 / 160


def _xyah(xyxy: np.ndarray) -> np.ndarray:
    w, h = xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]
    return np.array([(xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2, w / h, h])


class ReferenceKalman:
    """Constant-velocity Kalman filter over (cx, cy, a, h, vcx, vcy, va, vh), dt = 1."""

    F = np.eye(8) + np.eye(8, k=4)
    H = np.eye(4, 8)

    def __init__(self, z: np.ndarray) -> None:
        h = z[3]
        self.x = np.r_[z, np.zeros(4)]
        std = [2 * POSITION * h, 2 * POSITION * h, 1e-2, 2 * POSITION * h,
               10 * VELOCITY * h, 10 * VELOCITY * h, 1e-5, 10 * VELOCITY * h]
        self.P = np.diag(np.square(std))

    def predict(self) -> None:
        h = self.x[3]
        q = np.diag(np.square([POSITION * h, POSITION * h, 1e-2, POSITION * h,
                               VELOCITY * h, VELOCITY * h, 1e-5, VELOCITY * h]))
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + q

    def update(self, z: np.ndarray) -> None:
        h = self.x[3]
        r = np.diag(np.square([POSITION * h, POSITION * h, 1e-1, POSITION * h]))
        s = self.H @ self.P @ self.H.T + r
        k = self.P @ self.H.T @ np.linalg.inv(s)
        self.x = self.x + k @ (z - self.H @ self.x)
        self.P = self.P - k @ s @ k.T

    def xyxy(self) -> np.ndarray:
        cx, cy, a, h = self.x[:4]
        return np.array([cx - a * h / 2, cy - h / 2, cx + a * h / 2, cy + h / 2])


def _face(xyxy: np.ndarray) -> Faces:
    return Faces(xyxy=xyxy[None].astype(np.float32), score=np.array([0.9]), landmarks=np.zeros((1, 5, 2)))


@pytest.mark.parametrize("seed", range(4))
def test_coasting_predicts_what_bytetracks_kalman_filter_predicts(seed):
    rng = np.random.default_rng(seed)
    tracker = ByteTracker(minimum_consecutive_frames=1)
    centre, size, velocity = np.array([300.0, 200.0]), rng.uniform(40, 160), rng.uniform(-6, 6, 2)
    reference = None
    out = None
    for frame in range(25):
        velocity += rng.normal(0, 0.8, 2)  # accelerating, so the velocity estimate and its gain matter
        centre += velocity
        height = size * (1 + 0.2 * np.sin(frame / 4))  # the face comes closer and goes away: h-scaled noise
        width = height * rng.uniform(0.72, 0.8)
        xyxy = np.r_[centre - [width / 2, height / 2], centre + [width / 2, height / 2]]
        xyxy = np.round(xyxy * 4) / 4  # float32-exact inputs for both sides
        out = tracker.update(_face(xyxy))
        assert out.track_id.tolist() == [1]
        if reference is None:
            reference = ReferenceKalman(_xyah(xyxy))
        else:
            reference.predict()
            reference.update(_xyah(xyxy))
        if frame in (1, 3):  # early, while the starting covariance still weighs: a skipped detection there too
            out = tracker.coast(out)
            reference.predict()
            np.testing.assert_allclose(out.xyxy[0], reference.xyxy(), atol=0.02)
    for _ in range(3):  # three skipped detections: the motion model alone
        out = tracker.coast(out)
        reference.predict()
        np.testing.assert_allclose(out.xyxy[0], reference.xyxy(), atol=0.02)


@pytest.mark.parametrize(("shift", "continued"), [(25.0, True), (30.0, True), (36.5, False), (45.0, False)])
def test_a_low_score_detection_continues_a_track_only_above_half_overlap(shift, continued):
    """ByteTrack's second association accepts a low-score detection for a track when IoU > 0.5 (cost < 0.5).
    Two 100-px boxes shifted by d overlap with IoU (100 - d) / (100 + d): 0.60, 0.54, 0.46, 0.38."""
    tracker = ByteTracker(minimum_consecutive_frames=1, track_activation_threshold=0.6, low_score_threshold=0.1)
    box = np.array([100.0, 100.0, 200.0, 200.0])
    for _ in range(3):
        assert tracker.update(_face(box)).track_id.tolist() == [1]
    low = Faces(xyxy=(box + [shift, 0, shift, 0])[None].astype(np.float32), score=np.array([0.3]),
                landmarks=np.zeros((1, 5, 2)))
    assert tracker.update(low).track_id.tolist() == ([1] if continued else [])


@pytest.mark.parametrize("shape", [(12, 12), (8, 15), (15, 8), (30, 30), (2, 40)])
@pytest.mark.parametrize("kind", ["uniform", "integer ties", "negative", "iou-like"])
def test_assignment_matches_scipys_on_larger_problems(shape, kind):
    """Against scipy.optimize.linear_sum_assignment (scipy comes with motmetrics in requirements-dev) on problems
    past what brute force can check: the same minimal total cost, one column per row."""
    from scipy.optimize import linear_sum_assignment as scipy_assignment

    from stream.tracking import linear_sum_assignment

    rng = np.random.default_rng(sum(shape) + len(kind))
    cost = {"uniform": lambda: rng.random(shape), "integer ties": lambda: rng.integers(0, 4, shape).astype(float),
            "negative": lambda: rng.normal(0, 5, shape),
            "iou-like": lambda: np.where(rng.random(shape) < 0.8, 1.0, rng.random(shape))}[kind]()
    rows, cols = linear_sum_assignment(cost)
    ref_rows, ref_cols = scipy_assignment(cost)
    assert len(rows) == len(ref_rows) == min(shape)
    assert np.all(np.diff(rows) > 0) and len(set(cols.tolist())) == len(cols)
    assert cost[rows, cols].sum() == pytest.approx(cost[ref_rows, ref_cols].sum(), abs=1e-9)


def test_coasting_moves_and_scales_landmarks_with_their_box():
    tracker = ByteTracker(minimum_consecutive_frames=1)
    out = None
    for frame in range(6):  # a face that moves right and grows 4 px a frame
        side = 100.0 + 4 * frame
        xyxy = np.array([100.0 + 5 * frame, 100.0, 100.0 + 5 * frame + side, 100.0 + side])
        face = _face(xyxy)
        face.landmarks[0] = xyxy[:2] + np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]) * side
        out = tracker.update(face)
    before = out
    after = tracker.coast(before)
    old_box, new_box = before.xyxy[0].astype(np.float64), after.xyxy[0].astype(np.float64)
    assert new_box[2] - new_box[0] > old_box[2] - old_box[0] and new_box[0] > old_box[0]  # it keeps moving, growing
    scale = (new_box[2:] - new_box[:2]) / (old_box[2:] - old_box[:2])
    expected = (before.landmarks[0] - (old_box[:2] + old_box[2:]) / 2) * scale + (new_box[:2] + new_box[2:]) / 2
    np.testing.assert_allclose(after.landmarks[0], expected, atol=1e-3)
    assert after.track_id.tolist() == [1] and after.score.tolist() == before.score.tolist()


def test_at_matching_threshold_one_any_overlap_continues_a_track_and_none_does_not():
    for shift, continued in ((95.0, True), (120.0, False)):  # IoU 0.026 (some overlap), then none at all
        tracker = ByteTracker(minimum_consecutive_frames=1, minimum_matching_threshold=1.0, lost_track_buffer=0)
        box = np.array([100.0, 100.0, 200.0, 200.0])
        assert tracker.update(_face(box)).track_id.tolist() == [1]
        moved = tracker.update(_face(box + [shift, 0, shift, 0])).track_id.tolist()
        assert moved == ([1] if continued else [2]), shift


def test_scores_exactly_at_the_thresholds():
    """``track_activation_threshold`` and ``low_score_threshold`` are inclusive lower bounds."""
    tracker = ByteTracker(minimum_consecutive_frames=1, track_activation_threshold=0.6, low_score_threshold=0.2)
    box = np.array([100.0, 100.0, 200.0, 200.0])
    start = Faces(xyxy=box[None].astype(np.float32), score=np.array([0.6]), landmarks=np.zeros((1, 5, 2)))
    assert tracker.update(start).track_id.tolist() == [1]
    low = Faces(xyxy=box[None].astype(np.float32), score=np.array([0.2]), landmarks=np.zeros((1, 5, 2)))
    assert tracker.update(low).track_id.tolist() == [1]  # a low-score detection at the low threshold continues it
    below = Faces(xyxy=box[None].astype(np.float32), score=np.array([0.19]), landmarks=np.zeros((1, 5, 2)))
    assert tracker.update(below).track_id.tolist() == []


def test_reset_forgets_tracks_and_restarts_ids_at_one():
    tracker = ByteTracker(minimum_consecutive_frames=1)
    box = np.array([100.0, 100.0, 200.0, 200.0])
    for shift in (0.0, 300.0):
        tracker.update(_face(box + [shift, 0, shift, 0]))
    tracker.reset()
    assert tracker.ended_track_ids.tolist() == []
    assert tracker.update(_face(box + [600, 0, 600, 0])).track_id.tolist() == [1]


@pytest.mark.parametrize("lost_frames", [1, 4, 12])
def test_a_lost_track_moves_on_but_stops_growing_as_in_bytetrack(lost_frames):
    """ByteTrack zeroes a lost track's height velocity before each prediction (its box keeps moving, but does not
    balloon or collapse over an occlusion). A face growing 6 px a frame is missed for a while and found again; the
    tracker's next prediction (a skipped detection) must be the reference filter's, lost steps included."""
    tracker = ByteTracker(minimum_consecutive_frames=1)
    reference = None
    for frame in range(8):
        side = 80.0 + 6 * frame
        xyxy = np.array([100.0 + 5 * frame, 100.0, 100.0 + 5 * frame + side, 100.0 + side])
        assert tracker.update(_face(xyxy)).track_id.tolist() == [1]
        if reference is None:
            reference = ReferenceKalman(_xyah(xyxy))
        else:
            reference.predict()
            reference.update(_xyah(xyxy))
    for lost in range(lost_frames):
        assert len(tracker.update(Faces.empty())) == 0
        if lost:  # lost from the first missed frame on: zeroed before every later prediction
            reference.x[7] = 0.0
        reference.predict()
    reference.x[7] = 0.0
    reference.predict()
    back = np.array([100.0 + 5 * (8 + lost_frames), 100.0, 230.0 + 5 * (8 + lost_frames), 230.0])
    reference.update(_xyah(back))
    out = tracker.update(_face(back))
    assert out.track_id.tolist() == [1]
    out = tracker.coast(out)
    reference.predict()
    np.testing.assert_allclose(out.xyxy[0], reference.xyxy(), atol=0.02)
