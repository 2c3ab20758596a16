import numpy as np
import pytest

from stream.scheduler import Scheduler
from stream.trackbook import TrackBook
from stream.types import AGE_GROUP_PROBS, PLAUSIBLE, Faces


def tracked(sizes, scores=None, ids=None) -> Faces:
    n = len(sizes)
    xyxy = np.array([[0, 0, s, s] for s in sizes], np.float32)
    return Faces(xyxy=xyxy, score=np.ones(n) if scores is None else scores, landmarks=np.zeros((n, 5, 2)),
                 track_id=np.arange(1, n + 1) if ids is None else np.array(ids))


def classify(book, faces, mask, frame, confidence=0.9):
    picked = faces[mask]
    probs = np.full((len(picked), 8), (1 - confidence) / 7, np.float32)
    probs[:, 0] = confidence
    book.add(picked, {AGE_GROUP_PROBS: probs}, frame)


def test_gates_small_unsure_and_landmarkless_faces():
    faces = tracked([100, 20, 100, 100], scores=np.array([0.9, 0.9, 0.3, 0.9]))
    faces.landmarks[3] = np.nan
    sched = Scheduler(min_face_size=32, min_score=0.5)
    assert sched.eligible(faces).tolist() == [True, False, False, False]
    assert sched.select(faces, TrackBook(), 0, 3).tolist() == [True, False, False, False]


def test_budget_new_tracks_first_then_bigger_faces():
    book = TrackBook(min_observations=3)
    sched = Scheduler(max_faces_per_frame=2, warmup_interval_frames=1)
    old = tracked([200, 60, 80], ids=[1, 2, 3])
    classify(book, old, np.array([True, True, True]), 0)
    faces = tracked([200, 60, 80, 40, 90], ids=[1, 2, 3, 4, 5])
    chosen = sched.select(faces, book, 1, 3)
    assert faces.track_id[chosen].tolist() == [4, 5]  # both new tracks, before any known one


def test_cost_stays_bounded_and_everyone_gets_a_turn():
    book = TrackBook(min_observations=3)
    sched = Scheduler(max_faces_per_frame=4, warmup_interval_frames=2, refresh_interval_frames=10)
    faces = tracked([64] * 16)
    first_label = {}
    for frame in range(60):
        chosen = sched.select(faces, book, frame, 3)
        assert chosen.sum() <= 4
        classify(book, faces, chosen, frame)
        for track_id, track in book.tracks.items():
            if track.n_obs >= 3:
                first_label.setdefault(track_id, frame)
    assert sorted(first_label) == list(range(1, 17))  # every track got a label
    assert max(first_label.values()) < 20


def test_intervals_grow_as_tracks_settle():
    book = TrackBook(min_observations=2)
    sched = Scheduler(max_faces_per_frame=0, warmup_interval_frames=1, refresh_interval_frames=5,
                      settled_observations=4, settled_interval_frames=50)
    face = tracked([100])
    frames = []
    for frame in range(120):
        chosen = sched.select(face, book, frame, 2)
        if chosen[0]:
            frames.append(frame)
            classify(book, face, chosen, frame)
    assert frames == [0, 1, 6, 11, 61, 111]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_faces_per_frame": -1}, "max_faces_per_frame"), ({"min_score": 2}, "min_score"),
     ({"refresh_interval_frames": 0}, "refresh_interval_frames")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Scheduler(**kwargs)


def _observe(book, track_id, frames, confidence, size=64):
    face = tracked([size], ids=[track_id])
    for frame in frames:
        classify(book, face, np.array([True]), frame, confidence)


def test_budget_smaller_than_the_due_faces_follows_the_priority_order():
    """With a budget of k, exactly the first k of the documented order are chosen, for every k: tracks never
    classified first (bigger faces first), then tracks still without a label, then labelled tracks by urgency
    (least certain and most overdue first, bigger faces breaking ties); faces not due or too small never."""
    book = TrackBook(min_observations=2)
    _observe(book, 4, [29], 0.9)  # one observation of two: no label yet, due every frame (warmup 1)
    _observe(book, 1, [9, 10], 0.9)  # labelled; 20 frames since, interval 10: overdue x2, sure
    _observe(book, 5, [9, 10], 0.9)  # the same as 1 on a bigger face
    _observe(book, 2, [9, 10], 0.4)  # labelled, as overdue as 1 but unsure
    _observe(book, 3, [4, 5], 0.9)  # labelled, sure, 25 frames since: more overdue than 1
    _observe(book, 6, [24, 25], 0.4)  # labelled, only 5 frames since: not due
    ids = [1, 2, 3, 4, 5, 6, 10, 11, 12]
    sizes = [60, 40, 45, 70, 150, 200, 50, 120, 10]  # 10 and 11 are new; 12 is new but too small
    faces = tracked(sizes, ids=ids)
    expected = [11, 10, 4, 2, 3, 5, 1]
    for budget in range(1, len(expected) + 2):
        sched = Scheduler(max_faces_per_frame=budget, min_face_size=32, warmup_interval_frames=1,
                          refresh_interval_frames=10, settled_observations=100)
        chosen = sched.select(faces, book, 30, 2)
        assert sorted(faces.track_id[chosen].tolist()) == sorted(expected[:budget]), f"budget {budget}"


def test_eligibility_bounds_are_inclusive_and_one_missing_landmark_excludes():
    faces = tracked([32, 31, 32, 32], scores=np.array([0.5, 0.9, 0.49, 0.9]))
    faces.landmarks[3, 2, 0] = np.nan  # one coordinate of one landmark: no chip can be aligned
    sched = Scheduler(min_face_size=32, min_score=0.5)
    assert sched.eligible(faces).tolist() == [True, False, False, False]


def test_a_track_classified_on_frame_zero_waits_its_interval():
    book = TrackBook(min_observations=3)
    sched = Scheduler(warmup_interval_frames=5)
    face = tracked([100])
    assert sched.select(face, book, 0, 3).tolist() == [True]
    classify(book, face, np.array([True]), 0)
    assert [frame for frame in range(1, 11) if sched.select(face, book, frame, 3)[0]] == [5, 6, 7, 8, 9, 10]


def test_overdue_is_measured_in_intervals_across_refresh_and_settled_tracks():
    """A settled track (interval 50) 60 frames after its last look is 1.2 intervals overdue; a refreshing one
    (interval 10) 15 frames after is 1.5: the refreshing one goes first, at equal certainty."""
    book = TrackBook(min_observations=2)
    _observe(book, 1, [37, 38, 39, 40], 0.9)  # 4 observations: settled
    _observe(book, 2, [83, 85], 0.9)  # 2 observations: labelled, refreshing
    sched = Scheduler(max_faces_per_frame=1, warmup_interval_frames=1, refresh_interval_frames=10,
                      settled_observations=4, settled_interval_frames=50)
    faces = tracked([100, 100], ids=[1, 2])
    assert faces.track_id[sched.select(faces, book, 100, 2)].tolist() == [2]


def _judged(passed: list[bool], track_id: int = 1) -> Faces:
    """One tracked face whose face checks (:meth:`Scheduler.mark`) gave ``passed``."""
    return tracked([100], ids=[track_id]).with_data(**{PLAUSIBLE: np.array(passed)})


def test_a_track_is_classified_only_while_most_of_its_detections_passed_the_face_checks():
    """Judged over the track's life: a frame that fails is never classified, and a frame that passes is only when
    fewer than half of the track's detection frames so far failed (exactly half is not "most")."""
    sched = Scheduler(min_face_size=0, warmup_interval_frames=1)
    passed = [True, False, True, False, False, True, True, True]
    chosen = [bool(sched.select(_judged([p]), TrackBook(), frame, 3)[0]) for frame, p in enumerate(passed)]
    # failed so far: 0/1, 1/2, 1/3, 2/4, 3/5, 3/6 (half), 3/7, 3/8
    assert chosen == [True, False, True, False, False, False, True, True]


def test_forget_starts_a_track_ids_face_check_history_afresh():
    """The tracker restarts its ids at 1 after a reset: a new track reusing an ended track's id must not inherit
    the old one's failed checks once the pipeline forgot it."""
    sched = Scheduler(min_face_size=0, warmup_interval_frames=1)
    for frame in range(3):
        assert not sched.select(_judged([False]), TrackBook(), frame, 3)[0]
    assert not sched.select(_judged([True]), TrackBook(), 3, 3)[0]  # 3 of 4 failed
    sched.forget(np.array([1]))
    assert sched.select(_judged([True]), TrackBook(), 4, 3)[0]


@pytest.mark.parametrize("check_faces", [True, False])
def test_eligibility_needs_the_face_checks_only_when_they_are_on(check_faces):
    sizes, passed = [100, 100, 10], [True, False, True]
    faces = tracked(sizes).with_data(**{PLAUSIBLE: np.array(passed)})
    sched = Scheduler(min_face_size=32, check_faces=check_faces)
    assert sched.eligible(faces).tolist() == [True, not check_faces, False]  # too small stays out either way
