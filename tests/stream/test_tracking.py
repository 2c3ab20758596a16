"""Tests for the ByteTrack face tracker: argument checks, the assignment solver, and scenarios
asserting ids and lifetimes frame by frame (in the style of tryolabs/norfair's test_tracker.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from stream.tracking import ByteTracker, iou_xyxy, linear_sum_assignment
from stream.types import NO_TRACK, Faces

HIGH = 0.9  # a clearly detected face
LOW = 0.3  # between the default thresholds: can continue a track, never start one
NOISE = 0.05  # below low_score_threshold: ignored

# Landmarks as fractions of the box (left eye, right eye, nose, mouth corners), so tests can check
# that returned landmarks are the input's own.
_LANDMARK_FRACTIONS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)


def box(cx: float, cy: float, size: float = 40.0) -> list[float]:
    """A square xyxy box of side ``size`` centred at ``(cx, cy)``."""
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def make_faces(dets: list[tuple[list[float], float]]) -> Faces:
    """Faces from ``(xyxy, score)`` pairs, with landmarks and a ``det_index`` extra per row."""
    if not dets:
        return Faces.empty()
    xyxy = np.array([d[0] for d in dets], np.float32)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    landmarks = xyxy[:, None, :2] + _LANDMARK_FRACTIONS[None] * wh[:, None, :]
    return Faces(
        xyxy=xyxy,
        score=np.array([d[1] for d in dets], np.float32),
        landmarks=landmarks,
        data={"det_index": np.arange(len(dets)), "embedding": np.random.default_rng(0).random((len(dets), 3))},
    )


def ids_by_row(out: Faces) -> dict[int, int]:
    """``{input row: track id}`` of a tracker output built by :func:`make_faces`."""
    return {int(r): int(t) for r, t in zip(out.data["det_index"], out.track_id, strict=True)} if len(out) else {}


def run(tracker: ByteTracker, frames: list[list[tuple[list[float], float]]]) -> list[tuple[dict, list, list]]:
    """Feed ``frames`` and collect ``(ids by input row, ended ids, active ids)`` per frame."""
    history = []
    for dets in frames:
        out = tracker.update(make_faces(dets))
        history.append((ids_by_row(out), tracker.ended_track_ids.tolist(), tracker.active_track_ids.tolist()))
    return history


# ---------------------------------------------------------------------------------------------
# Constructor arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"track_activation_threshold": -0.1}, ValueError,
         r"tracker\.track_activation_threshold must be in \[0\.0, 1\.0\], got -0\.1"),
        ({"track_activation_threshold": 1.5}, ValueError,
         r"tracker\.track_activation_threshold must be in \[0\.0, 1\.0\], got 1\.5"),
        ({"track_activation_threshold": math.nan}, ValueError, r"track_activation_threshold must be a finite .* nan"),
        ({"track_activation_threshold": "0.5"}, TypeError, r"track_activation_threshold must be a number, got '0\.5'"),
        ({"track_activation_threshold": True}, TypeError, r"track_activation_threshold .* got True"),
        ({"low_score_threshold": -0.01}, ValueError, r"low_score_threshold must be in \[0\.0, "),
        ({"low_score_threshold": 0.6}, ValueError,
         r"low_score_threshold must be <= track_activation_threshold \(0\.5\), got 0\.6"),
        ({"minimum_matching_threshold": 0}, ValueError, r"minimum_matching_threshold must be in \(0\.0, 1\.0\], got 0"),
        ({"minimum_matching_threshold": 1.01}, ValueError, r"minimum_matching_threshold .* got 1\.01"),
        ({"minimum_matching_threshold": None}, TypeError, r"minimum_matching_threshold .* got None"),
        ({"lost_track_buffer": -1}, ValueError, r"lost_track_buffer must be in \[0, 100000\], got -1"),
        ({"lost_track_buffer": 30.0}, TypeError, r"lost_track_buffer must be an integer, got 30\.0"),
        ({"frame_rate": 0}, ValueError, r"frame_rate must be in \(0\.0, 1000\.0\], got 0"),
        ({"frame_rate": -30.0}, ValueError, r"frame_rate .* got -30\.0"),
        ({"frame_rate": math.inf}, ValueError, r"frame_rate .* got inf"),
        ({"minimum_consecutive_frames": 0}, ValueError, r"minimum_consecutive_frames must be in \[1, 1000\], got 0"),
        ({"minimum_consecutive_frames": 2.5}, TypeError, r"minimum_consecutive_frames must be an integer"),
        ({"min_hits": 3}, TypeError, r"unknown tracker setting\(s\) min_hits"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ByteTracker(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"track_activation_threshold": 0.0, "low_score_threshold": 0.0},
        {"track_activation_threshold": 1.0},
        {"track_activation_threshold": 0.4, "low_score_threshold": 0.4},  # second association off
        {"minimum_matching_threshold": 1.0},
        {"lost_track_buffer": 0, "frame_rate": 1e-3},
        {"lost_track_buffer": np.int64(5), "frame_rate": np.float32(25.0), "minimum_consecutive_frames": np.int32(1)},
    ],
)
def test_valid_arguments_accepted(kwargs: dict) -> None:
    """Each valid setting gives the track its options promise: one face seen on 5 frames shows id 1 from the
    ``minimum_consecutive_frames``-th frame on, or never when its score is below ``track_activation_threshold``."""
    tracker = ByteTracker(**kwargs)
    shown = [tracker.update(make_faces([(box(100 + 2 * i, 100), HIGH)])).track_id.tolist() for i in range(5)]
    if tracker.track_activation_threshold > HIGH:
        assert shown == [[]] * 5
    else:
        first = int(tracker.minimum_consecutive_frames) - 1
        assert shown == [[]] * first + [[1]] * (5 - first)


def test_update_rejects_non_faces() -> None:
    with pytest.raises(TypeError, match="faces must be a Faces, got list"):
        ByteTracker().update([])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Assignment solver
# ---------------------------------------------------------------------------------------------


def _brute_force_min(cost: np.ndarray) -> float:
    n, m = cost.shape
    k = min(n, m)
    return min(
        sum(cost[r, c] for r, c in zip(rows, cols, strict=True))
        for rows in itertools.combinations(range(n), k)
        for cols in itertools.permutations(range(m), k)
    )


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (4, 1), (3, 3), (3, 5), (5, 3), (4, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_sum_assignment_is_optimal(shape: tuple[int, int], seed: int) -> None:
    # Rounded costs create ties, the case where a careless solver goes wrong.
    cost = np.random.default_rng(seed).random(shape).round(1)
    rows, cols = linear_sum_assignment(cost)
    assert len(rows) == len(cols) == min(shape)
    assert np.all(np.diff(rows) > 0) and len(set(cols.tolist())) == len(cols)
    assert cost[rows, cols].sum() == pytest.approx(_brute_force_min(cost))


@pytest.mark.parametrize(
    ("cost", "error", "match"),
    [
        (np.zeros(3), ValueError, "must be a 2-D array"),
        (np.array([[0.0, np.inf]]), ValueError, "finite"),
        (np.array([[np.nan]]), ValueError, "finite"),
    ],
)
def test_linear_sum_assignment_rejects_bad_costs(cost: np.ndarray, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        linear_sum_assignment(cost)


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (3, 0)])
def test_linear_sum_assignment_empty(shape: tuple[int, int]) -> None:
    rows, cols = linear_sum_assignment(np.zeros(shape))
    assert rows.shape == cols.shape == (0,)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),  # identical
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),  # half a box apart
        ([0, 0, 10, 10], [0, 0, 5, 5], 25 / 100),  # nested
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),  # apart
        ([5, 5, 5, 5], [5, 5, 5, 5], 0.0),  # zero-area boxes overlap nothing (no division by zero)
    ],
)
def test_iou_xyxy_pairs(a: list[float], b: list[float], expected: float) -> None:
    iou = iou_xyxy(np.asarray([a], np.float32), np.asarray([b], np.float32))
    assert iou.shape == (1, 1) and iou.dtype == np.float64
    assert iou[0, 0] == pytest.approx(expected)


def test_iou_xyxy_is_pairwise_and_accepts_empty_sets() -> None:
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [5, 0, 15, 10]], np.float32)
    np.testing.assert_allclose(iou_xyxy(a, b), [[1, 0, 1 / 3], [1 / 3, 0, 1]])
    assert iou_xyxy(a, np.empty((0, 4))).shape == (2, 0)
    assert iou_xyxy(np.empty(0), b).shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


def test_single_box_moving_linearly_keeps_id_1() -> None:
    tracker = ByteTracker()
    frames = [[(box(100 + 8 * f, 200 + 3 * f), HIGH)] for f in range(30)]
    history = run(tracker, frames)
    # Frame 0: tentative, nothing shown; from frame 1 (second consecutive hit) on: id 1.
    assert history[0] == ({}, [], [])
    for f in range(1, 30):
        assert history[f] == ({0: 1}, [], [1]), f"frame {f}"


@pytest.mark.parametrize("minimum_consecutive_frames", [1, 2, 3, 5])
def test_id_shown_after_minimum_consecutive_frames(minimum_consecutive_frames: int) -> None:
    tracker = ByteTracker(minimum_consecutive_frames=minimum_consecutive_frames)
    history = run(tracker, [[(box(100 + 5 * f, 100), HIGH)] for f in range(8)])
    first_shown = minimum_consecutive_frames - 1
    for f, (ids, _, active) in enumerate(history):
        assert ids == ({0: 1} if f >= first_shown else {}), f"frame {f}"
        assert active == ([1] if f >= first_shown else []), f"frame {f}"


def test_fast_small_moderately_confident_face_keeps_id() -> None:
    # A 20 px face moving 12 px per frame at score 0.6: consecutive boxes have IoU 0.25. ByteTrack's
    # fuse_score gate (1 - IoU * score <= 0.8) would need IoU >= 0.33 and never confirm it.
    tracker = ByteTracker()
    history = run(tracker, [[(box(50 + 12 * f, 100, size=20), 0.6)] for f in range(25)])
    assert history[0][0] == {}
    assert all(ids == {0: 1} for ids, _, _ in history[1:])


def test_two_faces_crossing_keep_their_ids() -> None:
    tracker = ByteTracker()
    frames = []
    for f in range(40):
        # A moves right, B moves left, slightly lower: mid-way their boxes overlap with IoU 0.67.
        a = (box(100 + 6 * f, 200), HIGH)
        b = (box(334 - 6 * f, 208), HIGH)
        # Alternate the input order so ids cannot ride on row order.
        frames.append([a, b] if f % 2 == 0 else [b, a])
    history = run(tracker, frames)
    assert history[0][0] == {}
    for f in range(1, 40):
        ids = history[f][0]
        row_a, row_b = (0, 1) if f % 2 == 0 else (1, 0)
        # Both are confirmed on frame 1; ids follow input order at confirmation: A first.
        assert ids == {row_a: 1, row_b: 2}, f"frame {f}"
        assert history[f][2] == [1, 2]


@pytest.mark.parametrize(
    ("lost_track_buffer", "frame_rate", "gap", "same_id"),
    [
        (5, 30.0, 1, True),
        (5, 30.0, 5, True),  # 5 missed frames: still within the buffer
        (5, 30.0, 6, False),  # 6 missed frames: the track ended on the 6th
        (10, 15.0, 5, True),  # 10 frames at 30 fps = 5 frames at 15 fps
        (10, 15.0, 6, False),
        (0, 30.0, 1, False),  # no memory at all
    ],
)
@pytest.mark.parametrize("speed", [0.0, 4.0])
def test_disappearing_face_gets_old_id_back_within_buffer(
    lost_track_buffer: int, frame_rate: float, gap: int, same_id: bool, speed: float
) -> None:
    tracker = ByteTracker(lost_track_buffer=lost_track_buffer, frame_rate=frame_rate)
    max_lost = lost_track_buffer * frame_rate / 30.0
    visible = 10  # frames 0..9 seen, then `gap` frames missing, then seen again
    total = visible + gap + 5
    frames = [
        [] if visible <= f < visible + gap else [(box(100 + speed * f, 150 + speed / 2 * f), HIGH)]
        for f in range(total)
    ]
    history = run(tracker, frames)
    for f, (ids, ended, active) in enumerate(history):
        missed = f - (visible - 1)  # frames since last seen, while missing
        if f == 0:
            assert (ids, ended, active) == ({}, [], [])
        elif f < visible:
            assert (ids, ended, active) == ({0: 1}, [], [1]), f"frame {f}"
        elif f < visible + gap:
            assert ids == {}, f"frame {f}"
            expired_now = missed > max_lost and missed - 1 <= max_lost
            assert ended == ([1] if expired_now else []), f"frame {f}"
            assert active == ([] if missed > max_lost else [1]), f"frame {f}"
        elif same_id:
            assert (ids, ended, active) == ({0: 1}, [], [1]), f"frame {f}"
        elif f == visible + gap:
            # Back, but as a new tentative track: hidden for one frame, then id 2.
            assert (ids, ended, active) == ({}, [], []), f"frame {f}"
        else:
            assert (ids, ended, active) == ({0: 2}, [], [2]), f"frame {f}"


def test_one_frame_false_positive_never_gets_an_id_nor_uses_one() -> None:
    tracker = ByteTracker()
    face = (box(100, 100), HIGH)
    false_positive = (box(400, 300), HIGH)
    newcomer = (box(250, 400), HIGH)
    frames = [[face], [face], [face, false_positive], [face], [face, newcomer], [face, newcomer], [face, newcomer]]
    history = run(tracker, frames)
    assert [h[0] for h in history] == [{}, {0: 1}, {0: 1}, {0: 1}, {0: 1}, {0: 1, 1: 2}, {0: 1, 1: 2}]
    # The false positive's tentative track died silently: never active, never reported as ended.
    assert all(ended == [] for _, ended, _ in history)
    assert history[-1][2] == [1, 2]


def test_flickering_false_positive_never_confirmed() -> None:
    tracker = ByteTracker()
    frames = [[(box(300, 300), HIGH)] if f % 2 == 0 else [] for f in range(10)]
    assert all(h == ({}, [], []) for h in run(tracker, frames))


def test_low_score_detections_never_start_a_track() -> None:
    tracker = ByteTracker()
    frames = [[(box(100 + 3 * f, 100), LOW)] for f in range(10)]
    assert all(h == ({}, [], []) for h in run(tracker, frames))


def test_low_score_detections_continue_an_existing_track() -> None:
    tracker = ByteTracker()
    scores = [HIGH, HIGH, LOW, LOW, LOW, HIGH, LOW]
    frames = [[(box(100 + 5 * f, 100), s)] for f, s in enumerate(scores)]
    history = run(tracker, frames)
    assert [h[0] for h in history] == [{}, {0: 1}, {0: 1}, {0: 1}, {0: 1}, {0: 1}, {0: 1}]


def test_low_score_detection_needs_a_close_match() -> None:
    # Low-score detections get the stricter gate (IoU >= 0.5): one that moved 40 % of its size
    # (IoU 0.43) does not continue the track, a confident one would.
    for score, expected in ((LOW, {}), (HIGH, {0: 1})):
        tracker = ByteTracker()
        frames = [[(box(100, 100), HIGH)]] * 3 + [[(box(116, 100), score)]]
        assert run(tracker, frames)[-1][0] == expected, score


def test_low_score_detection_does_not_revive_a_lost_track() -> None:
    tracker = ByteTracker(lost_track_buffer=10)
    face = box(100, 100)
    frames = [[(face, HIGH)]] * 3 + [[]] * 2 + [[(face, LOW)]] * 2 + [[(face, HIGH)]]
    history = run(tracker, frames)
    assert [h[0] for h in history] == [{}, {0: 1}, {0: 1}, {}, {}, {}, {}, {0: 1}]
    assert all(active == [1] for _, _, active in history[1:])


def test_detections_below_low_score_threshold_are_ignored() -> None:
    tracker = ByteTracker(lost_track_buffer=1)
    face = box(100, 100)
    history = run(tracker, [[(face, HIGH)]] * 2 + [[(face, NOISE)]] * 3)
    assert [h[0] for h in history] == [{}, {0: 1}, {}, {}, {}]
    assert [h[1] for h in history] == [[], [], [], [1], []]


def test_ids_are_never_reused() -> None:
    # Faces come and go one after another at the same place; each gets a fresh id.
    tracker = ByteTracker(lost_track_buffer=2)
    frames: list[list] = []
    for _ in range(4):
        frames += [[(box(100, 100), HIGH)]] * 3 + [[]] * 4
    history = run(tracker, frames)
    shown = [ids[0] for ids, _, _ in history if ids]
    ended = [i for _, e, _ in history for i in e]
    assert shown == [1, 1, 2, 2, 3, 3, 4, 4]
    assert ended == [1, 2, 3, 4]
    # Each id ended on the 3rd missed frame after its last sighting (frames 2, 9, 16, 23).
    assert [f for f, (_, e, _) in enumerate(history) if e] == [5, 12, 19, 26]


def test_reset_forgets_tracks_and_restarts_ids() -> None:
    tracker = ByteTracker()
    run(tracker, [[(box(100, 100), HIGH), (box(300, 100), HIGH)]] * 3)
    assert tracker.active_track_ids.tolist() == [1, 2]
    tracker.reset()
    assert tracker.active_track_ids.tolist() == [] and tracker.ended_track_ids.tolist() == []
    history = run(tracker, [[(box(300, 100), HIGH)]] * 2)
    assert history[1][0] == {0: 1}


def test_empty_input_on_fresh_tracker() -> None:
    tracker = ByteTracker()
    for _ in range(3):
        out = tracker.update(Faces.empty())
        assert len(out) == 0
        assert out.xyxy.shape == (0, 4) and out.landmarks.shape == (0, 5, 2)
        assert out.track_id.dtype == np.int64
        assert tracker.ended_track_ids.dtype == np.int64 and tracker.ended_track_ids.shape == (0,)
        assert tracker.active_track_ids.dtype == np.int64 and tracker.active_track_ids.shape == (0,)


def test_empty_frames_age_tracks_until_they_end() -> None:
    tracker = ByteTracker(lost_track_buffer=3)
    history = run(tracker, [[(box(100, 100), HIGH), (box(300, 100), HIGH)]] * 2 + [[]] * 5)
    assert [h[1] for h in history] == [[], [], [], [], [], [1, 2], []]
    assert [h[2] for h in history] == [[], [1, 2], [1, 2], [1, 2], [1, 2], [], []]


def test_returned_rows_are_the_input_rows() -> None:
    tracker = ByteTracker()
    positions = [(100, 100), (300, 120), (500, 140)]
    for f in range(3):
        dets = [(box(x + 2 * f, y), s) for (x, y), s in zip(positions, (HIGH, 0.7, HIGH), strict=True)]
        dets.append((box(700, 300), NOISE))  # below low_score_threshold: never returned
        # Reversed on the last frame: the output follows the input order, not the tracks' order.
        faces = make_faces(dets[::-1] if f == 2 else dets)
        before = {k: v.copy() for k, v in faces.data.items()}
        out = tracker.update(faces)
    rows = out.data["det_index"]
    assert rows.tolist() == [1, 2, 3]  # input order; row 0 is the ignored detection
    np.testing.assert_array_equal(out.xyxy, faces.xyxy[rows])
    np.testing.assert_array_equal(out.score, faces.score[rows])
    np.testing.assert_array_equal(out.landmarks, faces.landmarks[rows])
    np.testing.assert_array_equal(out.data["embedding"], faces.data["embedding"][rows])
    assert out.track_id.dtype == np.int64 and out.track_id.tolist() == [3, 2, 1]
    # The input is left as it was.
    assert np.all(faces.track_id == NO_TRACK)
    for key, value in before.items():
        np.testing.assert_array_equal(faces.data[key], value)


def test_output_is_deterministic() -> None:
    rng = np.random.default_rng(7)
    frames = []
    for f in range(20):
        dets = [(box(100 + 5 * f + dx, 100 + dy), float(s)) for dx, dy, s in rng.random((6, 3)) * [300, 200, 1]]
        frames.append(dets)
    first = run(ByteTracker(), frames)
    second = run(ByteTracker(), frames)
    assert first == second


def test_degenerate_boxes_do_not_break_the_filter() -> None:
    tracker = ByteTracker()
    point = [50.0, 50.0, 50.0, 50.0]  # zero area: overlaps nothing, so it never confirms a track
    history = run(tracker, [[(point, HIGH), (box(200, 200), HIGH)]] * 4)
    assert [h[0] for h in history] == [{}, {1: 1}, {1: 1}, {1: 1}]
    assert all(np.isfinite(t.mean).all() and np.isfinite(t.cov).all() for t in tracker._tracks)


def test_coast_carries_tracked_faces_across_skipped_frames() -> None:
    # Detection on every other frame (detector.interval = 1): the face moves 6 px a frame; on the
    # skipped frames coast() moves box and landmarks with the motion model, and the id survives.
    tracker = ByteTracker(minimum_consecutive_frames=1, lost_track_buffer=2)
    last = Faces.empty()
    for frame in range(20):
        if frame % 2 == 0:
            last = tracker.update(make_faces([(box(100 + 6 * frame, 100), 0.9)]))
        else:
            previous = last
            last = tracker.coast(previous)
            assert len(last) == 1 and last.track_id.tolist() == [1]
            if frame > 5:  # once the filter has a velocity, the box follows the face
                assert abs((last.xyxy[0, 0] + last.xyxy[0, 2]) / 2 - (100 + 6 * frame)) < 3
            shift = (last.xyxy[0, :2] + last.xyxy[0, 2:]) / 2 - (previous.xyxy[0, :2] + previous.xyxy[0, 2:]) / 2
            np.testing.assert_allclose(last.landmarks[0] - previous.landmarks[0], np.tile(shift, (5, 1)), atol=1e-3)
        assert tracker.ended_track_ids.size == 0
    assert last.track_id.tolist() == [1]


def test_coast_is_not_a_miss_but_lost_tracks_keep_ageing() -> None:
    tracker = ByteTracker(minimum_consecutive_frames=1, lost_track_buffer=3)
    out = tracker.update(make_faces([(box(100, 100), 0.9)]))
    out = tracker.update(Faces.empty())  # a real miss: the track is lost and hidden
    assert len(out) == 0
    coasted = tracker.coast(out)
    assert len(coasted) == 0  # a lost track is not drawn on skipped frames
    ended = []
    for _ in range(4):
        tracker.update(Faces.empty())
        ended += tracker.ended_track_ids.tolist()
    assert ended == [1]
    with pytest.raises(TypeError, match="previous must be a Faces"):
        tracker.coast([])  # type: ignore[arg-type]


def test_skipped_frames_count_as_seen_for_tracked_faces_and_as_time_for_lost_ones() -> None:
    """lost_track_buffer 3 at 30 fps: a confirmed track is removed on the 4th frame after it was last seen. A coasted
    (skipped) frame sees the faces that are tracked, and is one more frame of absence for a lost track."""
    tracker = ByteTracker(minimum_consecutive_frames=1, lost_track_buffer=3)
    out = tracker.update(make_faces([(box(100, 100), HIGH)]))  # frame 1
    out = tracker.coast(tracker.coast(out))  # frames 2 and 3: skipped, the face still there (seen on 3)
    assert out.track_id.tolist() == [1]
    ended = []
    for _ in range(5):  # frames 4-8: nobody
        tracker.update(Faces.empty())
        ended.append(tracker.ended_track_ids.tolist())
    assert ended == [[], [], [], [1], []]  # removed on frame 7 = 3 + 4

    tracker = ByteTracker(minimum_consecutive_frames=1, lost_track_buffer=3)
    tracker.update(make_faces([(box(100, 100), HIGH)]))  # frame 1: seen
    tracker.update(Faces.empty())  # frame 2: lost
    assert len(tracker.coast(Faces.empty())) == 0  # frame 3: skipped; the lost track ages by one frame
    assert tracker.ended_track_ids.tolist() == []
    ended = []
    for _ in range(3):  # frames 4-6
        tracker.update(Faces.empty())
        ended.append(tracker.ended_track_ids.tolist())
    assert ended == [[], [1], []]  # removed on frame 5 = 1 + 4


def test_ids_ended_by_a_cut_are_reported_once_by_the_next_frame_skipped_or_not() -> None:
    for skipped in (False, True):
        tracker = ByteTracker(minimum_consecutive_frames=1)
        out = tracker.update(make_faces([(box(100, 100), HIGH), (box(300, 100), HIGH)]))
        tracker.cut()
        out = tracker.coast(out) if skipped else tracker.update(Faces.empty())
        assert len(out) == 0 and tracker.ended_track_ids.tolist() == [1, 2]
        tracker.coast(out)
        assert tracker.ended_track_ids.tolist() == []  # reported once
        tracker.update(Faces.empty())
        assert tracker.ended_track_ids.tolist() == []


def test_match_pairs_overlapping_boxes_within_the_gate_and_reports_the_rest() -> None:
    """``match`` accepts a pair when the boxes overlap and ``1 - IoU <= max_cost`` (inclusive), and returns the
    ``(k, 2)`` pairs with the tracks and detections left over on each side."""
    from stream.tracking.matching import match

    tracks = np.array([[0, 0, 100, 100], [300, 0, 400, 100], [600, 0, 700, 100]], np.float64)
    dets = np.array([[300, 0, 350, 100], [900, 0, 1000, 100]], np.float64)  # half of track 1 (IoU 0.5); nothing
    matches, left_tracks, left_dets = match(tracks, dets, max_cost=0.5)
    assert matches.tolist() == [[1, 0]] and left_tracks.tolist() == [0, 2] and left_dets.tolist() == [1]
    matches, left_tracks, left_dets = match(tracks, dets, max_cost=0.49)
    assert matches.shape == (0, 2) and left_tracks.tolist() == [0, 1, 2] and left_dets.tolist() == [0, 1]
    for t, d in ((tracks[:0], dets), (tracks, dets[:0])):
        matches, left_tracks, left_dets = match(t, d, max_cost=0.5)
        assert matches.shape == (0, 2) and left_tracks.tolist() == list(range(len(t)))
        assert left_dets.tolist() == list(range(len(d)))


def test_reset_clears_the_ended_ids_too() -> None:
    tracker = ByteTracker(minimum_consecutive_frames=1)
    assert tracker.ended_track_ids.tolist() == []  # before any update
    tracker.update(make_faces([(box(100, 100), HIGH)]))
    tracker.cut()
    tracker.update(Faces.empty())
    assert tracker.ended_track_ids.tolist() == [1]
    tracker.reset()
    assert tracker.ended_track_ids.tolist() == []


def test_a_detection_at_the_activation_threshold_is_confident_only_and_returned_once() -> None:
    """Score exactly ``track_activation_threshold`` is a confident detection, not also a low one: too far from the
    track for the first association's gate (IoU 0.6 < 0.9) it starts its own track, and the old one does not take it
    up in the second association (whose gate, IoU >= 0.5, it would pass)."""
    tracker = ByteTracker(minimum_consecutive_frames=1, track_activation_threshold=0.6, minimum_matching_threshold=0.1)
    for _ in range(3):
        assert ids_by_row(tracker.update(make_faces([([100, 100, 200, 200], HIGH)]))) == {0: 1}
    out = tracker.update(make_faces([([125, 100, 225, 200], 0.6)]))  # IoU 75 / 125 = 0.6
    assert out.track_id.tolist() == [2] and out.data["det_index"].tolist() == [0]
