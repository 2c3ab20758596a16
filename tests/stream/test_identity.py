"""People, not tracks: cut detection, the tracker's cut/end/restart, appearance refusal and re-identification,
the track book's merge, totals counted by person, and the face checks before classification.

The identity logic is driven frame by frame with real ``ByteTracker`` and ``TrackBook`` objects and embeddings
given as arrays (the stage takes embeddings, not a model); the embedding model itself runs on real faces in
``tests/export/test_dlib_face.py`` and end to end in ``tests/bench/test_identity.py``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.analytics import Totals, track_record
from stream.plausible import landmarks_in_face_order, plausible_faces, stacked_on_a_face
from stream.scheduler import Scheduler
from stream.sinks.events import face_records
from stream.trackbook import TrackBook
from stream.tracking import ByteTracker
from stream.tracking.cuts import CutDetector
from stream.tracking.identity import Identities
from stream.types import AGE_GROUP_PROBS, AGE_YEARS, P_FEMALE, PERSON_ID, PLAUSIBLE, SHOWN_GROUP, Faces
from tests.conftest import shared_file

# Landmarks as fractions of a face box: eyes, nose, mouth corners in a face's order.
FACE_POINTS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)


def faces_at(*boxes: tuple[float, float, float, float], scores: tuple[float, ...] | None = None,
             points: np.ndarray = FACE_POINTS) -> Faces:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    landmarks = xyxy[:, None, :2] + points[None] * wh[:, None, :]
    score = np.array(scores if scores is not None else [0.9] * len(xyxy), np.float32)
    return Faces(xyxy=xyxy, score=score, landmarks=landmarks)


def unit(seed: int, dim: int = 128) -> np.ndarray:
    """A random direction scaled to dlib's descriptor norm scale (distances between two such are ~1.4 * 0.7)."""
    v = np.random.default_rng(seed).normal(size=dim)
    return (0.7 * v / np.linalg.norm(v)).astype(np.float32)


def near(base: np.ndarray, distance: float, seed: int) -> np.ndarray:
    """``base`` moved by exactly ``distance`` in a random direction."""
    step = np.random.default_rng(1000 + seed).normal(size=base.shape)
    return (base + distance * step / np.linalg.norm(step)).astype(np.float32)


def observation(group: int = 3, p_female: float = 0.9, age: float = 34.0) -> dict[str, np.ndarray]:
    probs = np.full(8, 0.3 / 7, np.float32)
    probs[group] = 0.7
    return {AGE_GROUP_PROBS: probs[None], AGE_YEARS: np.array([age], np.float32),
            P_FEMALE: np.array([p_female], np.float32)}


# ----------------------------------------------------------------------------------------------------- cuts


def _frames(clip: str, indices: tuple[int, ...]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(shared_file("videos", clip)))
    frames = []
    for index in indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = capture.read()
        assert ok
        frames.append(cv2.resize(image, (640, 360)))
    capture.release()
    return frames


def test_cut_detector_sees_cuts_between_real_clips_and_none_within_them():
    detector = CutDetector(0.3, 0.15)
    crowd = _frames("crowd_1080p.mp4", (0, 1, 2, 3))
    woman = _frames("woman_1280x720.mp4", (0, 1))
    verdicts = [detector.is_cut(image) for image in [*crowd, *woman, crowd[0]]]
    assert verdicts == [False, False, False, False, True, False, True]
    assert 0.0 <= detector.last_histogram_change <= 1.0 and 0.0 <= detector.last_difference <= 1.0


def test_cut_detector_first_frame_size_change_and_off_switch():
    detector = CutDetector(0.3, 0.15)
    image = np.full((90, 160, 3), 100, np.uint8)
    assert not detector.is_cut(image)
    assert detector.is_cut(np.full((180, 320, 3), 100, np.uint8))  # another stream size: a new picture
    off = CutDetector(1.0, 1.0)
    assert not off.enabled
    assert not off.is_cut(image) and not off.is_cut(255 - image)


def test_cut_statistics_on_pictures_of_known_change():
    """Uniform grey pictures (hue 0, saturation 0): the value histogram has 4 bins of 64 levels, so 127 -> 128 moves
    all of it into the next bin (change 1.0) while the grey difference is 1/255; swapping the halves of a two-tone
    picture keeps the histogram and changes the layout by 150/255. Either statistic alone makes a cut."""
    def grey(*levels: int) -> np.ndarray:
        image = np.empty((90, 160, 3), np.uint8)
        for k, level in enumerate(levels):
            image[:, k * 160 // len(levels):(k + 1) * 160 // len(levels)] = level
        return image

    detector = CutDetector(0.3, 0.15)
    assert (detector.last_histogram_change, detector.last_difference) == (0.0, 0.0)  # nothing seen yet
    assert not detector.is_cut(grey(127))
    assert not detector.is_cut(grey(120))  # the same bin, 7/255 darker
    assert detector.last_histogram_change == 0.0 and detector.last_difference == pytest.approx(7 / 255, rel=1e-5)
    assert detector.is_cut(grey(128))  # colour alone
    assert detector.last_histogram_change == pytest.approx(1.0) and detector.last_difference == pytest.approx(
        8 / 255, rel=1e-5)
    assert detector.is_cut(grey(50, 200))  # another histogram: value bins 0 and 3, half each
    assert detector.last_histogram_change == pytest.approx(1.0)
    assert detector.is_cut(grey(200, 50)) is True  # layout alone: the same histogram, the halves swapped
    assert detector.last_histogram_change == 0.0 and detector.last_difference == pytest.approx(150 / 255, rel=1e-5)
    detector.reset()
    assert not detector.is_cut(grey(128))  # after a reset, nothing to compare with: no cut, no change
    assert (detector.last_histogram_change, detector.last_difference) == (0.0, 0.0)
    assert detector.is_cut(grey(128)[:45]) and detector.last_histogram_change == detector.last_difference == 1.0
    # Hue alone (red to green, both fully saturated) and saturation alone (grey to pale red, the same value) move the
    # whole histogram too: all three channels count.
    for before, after in (((0, 0, 200), (0, 200, 0)), ((200, 200, 200), (100, 100, 200))):
        detector.reset()
        detector.is_cut(np.full((90, 160, 3), before, np.uint8))
        detector.is_cut(np.full((90, 160, 3), after, np.uint8))
        assert detector.last_histogram_change == pytest.approx(1.0), (before, after)


@pytest.mark.parametrize(("thresholds", "enabled"), [((0.3, 0.15), True), ((0.3, 1.0), True), ((1.0, 0.15), True),
                                                     ((1.0, 1.0), False)])
def test_either_cut_test_alone_enables_the_detector(thresholds, enabled):
    detector = CutDetector(*thresholds)
    assert detector.enabled is enabled
    image = np.full((90, 160, 3), 100, np.uint8)
    verdicts = [detector.is_cut(frame) for frame in (image, 255 - image, image[:45])]
    assert verdicts == ([False, True, True] if enabled else [False, False, False])
    if not enabled:  # off: nothing is measured
        assert (detector.last_histogram_change, detector.last_difference) == (0.0, 0.0)


# -------------------------------------------------------------------------------------- tracker cut/end/restart


def test_tracker_cut_ends_every_track_and_new_ids_follow():
    tracker = ByteTracker(minimum_consecutive_frames=1)
    box = (100, 100, 160, 160)
    assert tracker.update(faces_at(box)).track_id.tolist() == [1]
    tracker.cut()
    out = tracker.update(faces_at(box))  # the same place after the cut: another shot, another track
    assert out.track_id.tolist() == [2]
    assert tracker.ended_track_ids.tolist() == [1]
    assert tracker.update(faces_at(box)).track_id.tolist() == [2]
    assert tracker.ended_track_ids.tolist() == []


def test_tracker_end_and_restart_report_the_old_id_at_once():
    tracker = ByteTracker(minimum_consecutive_frames=1)
    out = tracker.update(faces_at((0, 0, 50, 50), (200, 0, 250, 50)))
    assert out.track_id.tolist() == [1, 2]
    assert tracker.restart(1) == 3
    tracker.end(2)
    tracker.end(99)  # unknown: ignored
    assert tracker.ended_track_ids.tolist() == [1, 2]
    assert tracker.restart(42) == 42
    out = tracker.update(faces_at((2, 0, 52, 50), (200, 0, 250, 50)))
    assert out.track_id.tolist() == [3, 4]  # the restarted box carries on as 3; the ended one starts over


# --------------------------------------------------------------------------------------------- identities


class Stream:
    """A tracker, book and identity stage driven like the pipeline does, with embeddings given per frame."""

    def __init__(self, **settings) -> None:
        self.tracker = ByteTracker(minimum_consecutive_frames=1)
        self.book = TrackBook(min_observations=2)
        self.identities = Identities(embedding_model="none", **settings)
        self.t = 0.0
        self.records: list[dict] = []
        self.totals = Totals()

    def frame(self, boxes: list[tuple], embeddings: list[np.ndarray | None], obs: dict | None = None) -> Faces:
        self.t += 0.1
        faces = self.identities.label(self.tracker.update(faces_at(*boxes) if boxes else Faces.empty()), self.t)
        self.book.observe_presence(faces, round(self.t * 10))
        rows = np.array([i for i, e in enumerate(embeddings) if e is not None], np.int64)
        swallowed = []
        if len(rows):
            faces, swallowed = self.identities.observe(faces, rows, np.stack([embeddings[i] for i in rows]), self.t,
                                                       self.tracker, self.book)
            for row in rows:
                self.book.add(faces[int(row)], obs or observation(), round(self.t * 10))
        records = [track_record(t, e, 10.0, self.identities.person_of(t)) for t, e in swallowed]
        ended = self.book.forget(self.tracker.ended_track_ids)
        persons = self.identities.end_tracks([*ended, *((int(t), None) for t in self.tracker.ended_track_ids)],
                                             self.t)
        records += [track_record(t, e, 10.0, persons.get(t)) for t, e in ended]
        for record in records:
            self.totals.add(record)
        self.records += records
        return self.book.annotate(faces)


def test_a_track_whose_face_becomes_another_person_is_restarted():
    stream = Stream(reject_distance=0.6)
    alice, bob = unit(1), unit(2)
    box = (100, 100, 200, 200)
    for k in range(3):
        out = stream.frame([box], [near(alice, 0.2, k)])
    assert out.track_id.tolist() == [1] and out.data[PERSON_ID].tolist() == [1]
    out = stream.frame([box], [near(bob, 0.1, 9)])  # same box, another face: no IoU tracker would notice
    assert out.track_id.tolist() == [2]
    assert out.data[PERSON_ID].tolist() == [2]
    assert stream.identities.stats.refused == 1
    assert [(r["track_id"], r["person_id"]) for r in stream.records] == [(1, 1)]
    assert out.data[SHOWN_GROUP].tolist() == [-1]  # Bob's label starts over, Alice's evidence ended with her track


def test_a_face_within_the_reject_distance_keeps_its_track():
    stream = Stream(reject_distance=0.6)
    alice = unit(1)
    box = (100, 100, 200, 200)
    for k in range(6):
        out = stream.frame([box], [near(alice, 0.4, k)])
    assert out.track_id.tolist() == [1] and stream.identities.stats.refused == 0


def test_a_person_who_comes_back_after_a_cut_is_reidentified_with_their_label():
    stream = Stream()
    alice, bob = unit(1), unit(2)
    for k in range(4):
        out = stream.frame([(100, 100, 200, 200)], [near(alice, 0.1, k)], observation(group=3))
    assert out.data[SHOWN_GROUP].tolist() == [3]
    stream.tracker.cut()
    out = stream.frame([(300, 100, 400, 200)], [near(bob, 0.1, 10)], observation(group=6))
    assert out.data[PERSON_ID].tolist() == [2]
    stream.tracker.cut()
    out = stream.frame([(100, 100, 200, 200)], [near(alice, 0.1, 20)], observation(group=6))
    assert out.track_id.tolist() == [3]
    assert out.data[PERSON_ID].tolist() == [1]  # Alice again
    assert out.data[SHOWN_GROUP].tolist() == [3]  # her label carries on (5 observations merged, 1 new)
    assert stream.book.tracks[3].n_obs == 5
    assert stream.identities.stats.reidentified == 1


def test_a_stranger_is_not_taken_for_someone_and_nobody_visible_is_a_candidate():
    stream = Stream()
    alice, bob = unit(1), unit(2)
    for k in range(4):
        stream.frame([(100, 100, 200, 200)], [near(alice, 0.1, k)])
    # Alice still visible: a second face as close to her as can be is not her (one person, one place).
    out = stream.frame([(100, 100, 200, 200), (400, 100, 500, 200)], [near(alice, 0.1, 5), near(alice, 0.05, 6)])
    assert out.data[PERSON_ID].tolist() == [1, 2]
    stream.tracker.cut()
    out = stream.frame([(100, 100, 200, 200)], [near(bob, 0.1, 7)])
    assert out.data[PERSON_ID].tolist() == [3]


def test_the_reidentification_horizon():
    stream = Stream(reid_horizon_s=1.0)
    alice = unit(1)
    for k in range(4):
        stream.frame([(100, 100, 200, 200)], [near(alice, 0.1, k)])
    stream.tracker.cut()
    for _ in range(15):  # 1.5 s with nobody
        stream.frame([], [])
    out = stream.frame([(100, 100, 200, 200)], [near(alice, 0.05, 9)])
    assert out.data[PERSON_ID].tolist() == [2]


def test_a_lost_track_still_held_by_the_tracker_is_merged_and_ended():
    stream = Stream()
    alice = unit(1)
    for k in range(4):
        stream.frame([(100, 100, 200, 200)], [near(alice, 0.1, k)])
    stream.frame([], [])  # lost, still held by the tracker
    out = stream.frame([(600, 300, 700, 400)], [near(alice, 0.1, 9)])  # back elsewhere: no IoU match
    assert out.track_id.tolist() == [2] and out.data[PERSON_ID].tolist() == [1]
    assert 1 not in stream.tracker.active_track_ids.tolist()
    assert [(r["track_id"], r["person_id"]) for r in stream.records] == [(1, 1)]
    assert stream.book.tracks[2].n_obs == 5


def test_totals_count_people_and_merged_tracks():
    stream = Stream()
    alice, bob = unit(1), unit(2)
    for k in range(3):
        stream.frame([(100, 100, 200, 200)], [near(alice, 0.1, k)], observation(group=3))
    stream.tracker.cut()
    for k in range(3):
        stream.frame([(100, 100, 200, 200)], [near(bob, 0.1, 10 + k)], observation(group=5, p_female=0.1))
    stream.tracker.cut()
    for k in range(3):
        stream.frame([(100, 100, 200, 200)], [near(alice, 0.1, 20 + k)], observation(group=3))
    stream.tracker.cut()
    stream.frame([], [])
    totals = stream.totals.as_dict()
    assert totals["tracks"] == 3 and totals["people"] == 2 and totals["merged_tracks"] == 1
    assert totals["labelled_people"] == 2
    assert totals["by_age_group"]["31-40"] == 1 and totals["by_age_group"]["56-65"] == 1
    assert totals["by_gender"] == {"female": 1, "male": 1}


def test_totals_without_person_ids_count_each_record():
    totals = Totals()
    for track_id in (1, 2):
        totals.add({"track_id": track_id, "age_group": "21-30", "gender": "male"})
    assert totals.as_dict()["people"] == 2 and totals.as_dict()["merged_tracks"] == 0


def test_events_carry_the_person_id():
    stream = Stream()
    out = stream.frame([(100, 100, 200, 200)], [unit(1)])
    records = face_records(out)
    assert records[0]["track_id"] == 1 and records[0]["person_id"] == 1
    assert face_records(faces_at((0, 0, 10, 10)))[0]["person_id"] is None


def test_identity_settings_are_checked():
    with pytest.raises(ValueError, match="reid_distance must be <= reject_distance"):
        Identities(reid_distance=0.7, reject_distance=0.6)
    with pytest.raises(ValueError, match="identity.reid_horizon_s"):
        Identities(reid_horizon_s=-1.0)
    with pytest.raises(TypeError, match="unknown identity setting"):
        Identities(horizon=3)


# ------------------------------------------------------------------------------------------------ merge


def test_trackbook_merge_folds_an_ended_tracks_evidence_into_a_new_one():
    book = TrackBook(min_observations=3, max_observations=4)
    old = faces_at((0, 0, 50, 50))
    old = Faces(old.xyxy, old.score, old.landmarks, np.array([1]))
    for frame in range(3):
        book.add(old, observation(group=2), frame)
    (_, estimate), = book.forget([1])
    new = Faces(old.xyxy, old.score, old.landmarks, np.array([5]))
    book.add(new, observation(group=2), 10)
    assert book.merge(estimate, 5) is estimate
    track = book.tracks[5]
    assert track.n_obs == 4 and track.first_frame == 0 and track.shown_group == 2
    assert len(track.weights) == 4
    book.add(new, observation(group=2), 11)
    assert len(track.group_probs) == 4  # the window still keeps the most recent max_observations
    assert book.merge(99, 5) is None  # an id the book does not hold: nothing changes
    assert book.tracks[5].n_obs == 5


# --------------------------------------------------------------------------------------- face checks


def test_a_box_stacked_on_a_more_confident_face_is_not_plausible():
    face = (100, 100, 160, 170)
    head_top = (95, 60, 165, 125)  # above it, overlapping its top, less confident
    faces = faces_at(face, head_top, (400, 100, 460, 170), scores=(0.9, 0.5, 0.8))
    assert stacked_on_a_face(faces).tolist() == [False, True, False]
    # The same boxes with the scores swapped: the face is not "on top" of the lower, weaker box.
    assert stacked_on_a_face(faces_at(face, head_top, scores=(0.5, 0.9))).tolist() == [False, False]


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (FACE_POINTS, True),
        # A face rolled by 90 degrees is still in a face's order in its eye line's frame.
        (np.array([[0.7, 0.3], [0.7, 0.7], [0.46, 0.5], [0.3, 0.35], [0.3, 0.65]], np.float32), True),
        # Nose and mouth squeezed against the eyes (a pattern).
        (np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.45], [0.35, 0.5], [0.65, 0.5]], np.float32), False),
        # Mouth above the nose.
        (np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.8], [0.35, 0.6], [0.65, 0.6]], np.float32), False),
        # No landmarks, or one missing: nothing to judge.
        (np.full((5, 2), np.nan, np.float32), True),
        (np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.45], [0.35, 0.5], [np.nan, 0.5]], np.float32), True),
        # A tilted mouth: the centre of its corners counts (0.3 below the nose), not one corner (0.15).
        (np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.78], [0.65, 0.66]], np.float32), True),
    ],
)
def test_landmarks_in_face_order(points, expected):
    assert landmarks_in_face_order(faces_at((0, 0, 100, 100), points=points)).tolist() == [expected]


def test_scheduler_never_classifies_a_track_that_is_mostly_implausible():
    scheduler = Scheduler(min_face_size=0, warmup_interval_frames=1)
    book = TrackBook()
    face, head_top = (100, 100, 160, 170), (95, 60, 165, 125)
    chosen_head = []
    for frame in range(6):
        boxes = [face, head_top] if frame < 4 else [head_top]  # the face is missed on the last two frames
        scores = (0.9, 0.5) if frame < 4 else (0.5,)
        marked = scheduler.mark(faces_at(*boxes, scores=scores))
        faces = Faces(marked.xyxy, marked.score, marked.landmarks, np.array([1, 2][:len(boxes)]) if frame < 4
                      else np.array([2]), marked.data)
        chosen = scheduler.select(faces, book, frame, 5)
        chosen_head.append(bool(chosen[list(faces.track_id).index(2)]))
    assert chosen_head == [False] * 6
    assert PLAUSIBLE in faces.data
    assert plausible_faces(faces_at(head_top, scores=(0.5,))).tolist() == [True]  # alone it would pass
    off = Scheduler(min_face_size=0, check_faces=False)
    assert PLAUSIBLE not in off.mark(faces_at(face, head_top, scores=(0.9, 0.5))).data


# ------------------------------------------------------------------------------------------- pipeline


def test_without_the_embedding_file_the_pipeline_warns_and_runs_on_cuts_alone(
        config, default_detector, default_classifiers, tmp_path, monkeypatch, caplog):
    from stream.pipeline import Pipeline
    from stream.types import Frame

    monkeypatch.setenv("STREAM_MODELS_DIR", str(tmp_path))  # an empty cache: the export was never made
    with caplog.at_level("WARNING", logger="stream.pipeline"):
        pipeline = Pipeline(config, detector=default_detector, classifiers=default_classifiers)
    assert pipeline.identities.embedder is None
    assert "appearance is off" in caplog.text and "python -m export.dlib_face" in caplog.text
    woman, = _frames("woman_1280x720.mp4", (0,))
    man, = _frames("talking_man_512.mp4", (0,))
    tracks = []
    for index, image in enumerate([woman, woman, woman, man, man, man]):
        faces, _ = pipeline.process(Frame(index, index / 25, image))
        assert PERSON_ID in faces.data
        tracks.append(faces.track_id.tolist())
    assert tracks[2] == [1] and tracks[-1] == [2]  # the cut ended the woman's track; the man is another one
    assert pipeline.identities.stats.cuts == 1


def _face_points(nose_drop: float, mouth_below_nose: float) -> np.ndarray:
    """Landmarks (fractions of a 100-px box) of an upright face whose nose lies ``nose_drop`` inter-ocular distances
    below the eye line and whose mouth lies ``mouth_below_nose`` below the nose (eyes 40 px apart)."""
    nose_y = 0.4 + 0.4 * nose_drop
    mouth_y = nose_y + 0.4 * mouth_below_nose
    return np.array([[0.3, 0.4], [0.7, 0.4], [0.5, nose_y], [0.35, mouth_y], [0.65, mouth_y]], np.float32)


@pytest.mark.parametrize(
    ("nose_drop", "mouth_below_nose", "expected"),
    # The documented bounds: nose at least NOSE_DROP (0.35) below the eyes, mouth MOUTH_BELOW_NOSE (0.25) below it.
    [(0.37, 0.5, True), (0.33, 0.5, False), (1.5, 0.27, True), (1.5, 0.23, False), (0.6, -0.3, False)],
)
def test_landmark_order_bounds(nose_drop, mouth_below_nose, expected):
    points = _face_points(nose_drop, mouth_below_nose)
    assert landmarks_in_face_order(faces_at((0, 0, 100, 100), points=points)).tolist() == [expected]
    upside_down = faces_at((0, 0, 100, 100), points=np.array([1.0, 1.0], np.float32) - points)  # rolled 180 degrees
    assert landmarks_in_face_order(upside_down).tolist() == [expected]


# A face (the more confident detection) and boxes above it: (60 x 70) face, 60-px boxes at different places.
FACE = (100, 100, 160, 170)


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ((100, 46.5, 160, 106.5), True),  # shares 6.5/60 = 0.108 of its area with the face (> STACK_OVERLAP 0.1)
        ((100, 45, 160, 105), False),  # shares 5/60: a neighbour above, not the top of this head
        ((100, 86, 160, 146), True),  # centre 19 px higher: more than STACK_DROP (0.3) of its 60 px
        ((100, 88, 160, 148), False),  # 17 px higher: beside it, not on top
        ((129, 70, 189, 130), True),  # centres 29 px apart horizontally: within half the face's 60 px
        ((131, 70, 191, 130), False),  # 31 px: off to the side
    ],
)
def test_stacked_box_bounds(top, expected):
    faces = faces_at(FACE, top, scores=(0.9, 0.5))
    assert stacked_on_a_face(faces).tolist() == [False, expected]
    assert plausible_faces(faces).tolist() == [True, not expected]
    assert stacked_on_a_face(faces_at(FACE, top, scores=(0.5, 0.5))).tolist() == [False, False]  # equally sure


def test_a_single_or_no_detection_is_never_stacked():
    assert stacked_on_a_face(faces_at((100, 47, 160, 107))).tolist() == [False]
    assert stacked_on_a_face(Faces.empty()).tolist() == []


# ---------------------------------------------------------------------------- re-identification radius and prior


def _person_then_cut(stream: Stream, embeddings: list[np.ndarray], box=(100, 100, 200, 200)) -> np.ndarray:
    """One person seen with ``embeddings`` (one per frame), then a hard cut; returns their centre."""
    for embedding in embeddings:
        stream.frame([box], [embedding])
    stream.tracker.cut()
    return np.mean(np.stack(embeddings), axis=0)


def _spread(embeddings: list[np.ndarray]) -> float:
    stacked = np.stack(embeddings).astype(np.float64)
    return float(np.linalg.norm(stacked - stacked.mean(axis=0), axis=1).mean())


@pytest.mark.parametrize("distance", [0.29, 0.31])
def test_a_tight_cluster_is_found_again_within_the_minimum_radius(distance):
    """A person whose embeddings barely scatter is taken back within MIN_RADIUS (0.3) of their centre, not beyond
    (twice their spread is far less)."""
    stream = Stream()
    alice = unit(1)
    shots = [near(alice, 0.02, k) for k in range(4)]
    centre = _person_then_cut(stream, shots)
    assert 2 * _spread(shots) < 0.1
    out = stream.frame([(300, 100, 400, 200)], [near(centre, distance, 9)])
    assert out.data[PERSON_ID].tolist() == ([1] if distance < 0.3 else [2])


@pytest.mark.parametrize(("samples", "factor", "found"), [(3, 0.95, True), (3, 1.05, False), (2, 0.95, False)])
def test_a_loose_cluster_is_found_again_within_twice_its_spread_once_it_has_three_embeddings(samples, factor, found):
    """SPREAD_FACTOR (2) times the mean distance of a person's embeddings from their centre, once they have
    MIN_SPREAD_SAMPLES (3) of them; with two, MIN_RADIUS still."""
    stream = Stream()
    bob = unit(2)
    shots = [near(bob, 0.25, k) for k in range(samples)]
    centre = _person_then_cut(stream, shots)
    radius = 2 * _spread(shots)
    assert 0.3 / 0.95 < radius < 0.55 * 0.95  # between the floor and the cap, with room for the factor
    out = stream.frame([(300, 100, 400, 200)], [near(centre, factor * radius, 9)])
    assert out.data[PERSON_ID].tolist() == ([1] if found else [2])


@pytest.mark.parametrize(("distance", "found"), [(0.53, True), (0.57, False)])
def test_a_very_loose_cluster_is_capped_at_the_reid_distance(distance, found):
    stream = Stream(reject_distance=1.5)
    carol = unit(3)
    shots = [near(carol, 0.45, k) for k in range(4)]
    centre = _person_then_cut(stream, shots)
    assert 2 * _spread(shots) > 0.6
    out = stream.frame([(300, 100, 400, 200)], [near(centre, distance, 9)])
    assert out.data[PERSON_ID].tolist() == ([1] if found else [2])


@pytest.mark.parametrize(("wait_frames", "box", "found"), [
    (35, (105, 100, 205, 200), True),  # back at the same place 3.6 s later, same shot: up to reid_distance
    (35, (400, 100, 500, 200), False),  # elsewhere: the person's own radius (0.3)
    (35, (152, 100, 252, 200), True),  # IoU 48 / 152 = 0.32 with where she was lost: still the same place (0.3)
    (35, (155, 100, 255, 200), False),  # IoU 0.29: elsewhere
    (52, (105, 100, 205, 200), False),  # the same place but 5.3 s later (SAME_PLACE_S is 5)
])
def test_a_person_lost_a_moment_ago_at_the_same_place_is_taken_back_up_to_the_reid_distance(wait_frames, box, found):
    stream = Stream()
    stream.t = 20.0  # 20 s into the stream: the times are differences, not stream times
    alice = unit(1)
    shots = [near(alice, 0.02, k) for k in range(4)]
    for embedding in shots:
        stream.frame([(100, 100, 200, 200)], [embedding])
    for _ in range(wait_frames):  # nobody; the tracker drops her track after its lost buffer (30 frames)
        stream.frame([], [])
    assert stream.tracker.active_track_ids.tolist() == []
    out = stream.frame([box], [near(np.mean(np.stack(shots), axis=0), 0.45, 9)])  # turned: 0.45 from her centre
    assert out.data[PERSON_ID].tolist() == ([1] if found else [2])


@pytest.mark.parametrize(("attempts", "found"), [(1, False), (2, True)])
def test_a_new_track_is_compared_with_people_only_on_its_first_reid_attempts_embeddings(attempts, found):
    """A track's first embedding is 0.5 from Alice (too far); its second is Alice's own, which brings the track's
    mean to 0.25 from her: re-identified on that second embedding only if it is still among the first attempts."""
    stream = Stream(reid_attempts=attempts)
    alice = unit(1)
    centre = _person_then_cut(stream, [near(alice, 0.02, k) for k in range(4)])
    box = (300, 100, 400, 200)
    first = stream.frame([box], [near(centre, 0.5, 9)])
    assert first.data[PERSON_ID].tolist() == [2]
    out = stream.frame([box], [centre])
    assert out.data[PERSON_ID].tolist() == ([1] if found else [2])
    assert stream.identities.stats.reidentified == int(found)


def test_cuts_are_counted_and_unknown_tracks_have_no_person():
    identities = Identities(embedding_model="none")
    image = np.full((90, 160, 3), 100, np.uint8)
    verdicts = [identities.is_cut(frame) for frame in (image, image, 255 - image, image)]
    assert verdicts == [False, False, True, True] and identities.stats.cuts == 2
    assert identities.stats.as_dict() == {"cuts": 2, "refused_matches": 0, "reidentified_tracks": 0}
    assert identities.person_of(7) is None and identities.chip_input is None
    identities.reset()  # with the tracker's reset: the next frame has nothing to be compared with
    assert not identities.is_cut(255 - image) and identities.stats.cuts == 0


def test_the_reidentification_horizon_counts_from_when_a_person_was_last_seen():
    """Seen for 2 s, gone 0.8 s: within a 1 s horizon, counted from the last frame they were on (not the first)."""
    stream = Stream(reid_horizon_s=1.0)
    alice = unit(1)
    for k in range(20):
        stream.frame([(100, 100, 200, 200)], [near(alice, 0.02, k % 4)])
    stream.tracker.cut()
    for _ in range(7):
        stream.frame([], [])
    out = stream.frame([(100, 100, 200, 200)], [near(alice, 0.05, 9)])
    assert out.data[PERSON_ID].tolist() == [1]


def test_only_whole_unoccluded_faces_big_enough_get_an_embedding(config):
    from stream.tracking.appearance import build_embedder

    embedder = build_embedder(config.identity.embedding_model, config.models, config.runtime)
    identities = Identities(embedding_model="none", embedder=embedder, min_face_size=40)
    assert identities.chip_input == (embedder.template, embedder.chip_size)
    boxes = [
        (100, 100, 200, 200),  # whole, big: yes
        (1, 1, 60, 60), (0.5, 220, 60, 280), (200, 0.5, 250, 50.5),  # a pixel from the left/top edge: yes; on
        # the left edge, on the top edge: no
        (580, 10, 639, 70), (580, 100, 639.5, 160),  # a pixel from the right edge: yes; on it: no
        (300, 299, 360, 359), (400, 299.5, 460, 359.5),  # the bottom edge likewise (the frame is 640 x 360)
        (250, 10, 290, 50), (300, 10, 339, 49),  # 40 px: yes; 39 px: no
        (400, 150, 480, 230), (470, 150, 550, 230),  # overlapping each other: neither
    ]
    wanted = identities.wants_embedding(faces_at(*boxes), (360, 640, 3))
    assert wanted.tolist() == [True, True, False, False, True, False, True, False, True, False, False, False]
    assert Identities(embedding_model="none").wants_embedding(faces_at(*boxes), (360, 640, 3)).sum() == 0
    assert identities.wants_embedding(Faces.empty(), (360, 640, 3)).tolist() == []


@pytest.mark.parametrize("bob_first", [False, True])
def test_of_two_people_out_of_view_within_reach_the_nearer_one_is_taken(bob_first):
    alice = unit(1)
    away = near(alice, 1.0, 5) - alice
    bob = (alice + 0.35 * away / np.linalg.norm(away)).astype(np.float32)  # 0.35 from Alice: another person
    stream = Stream()
    people = [("bob", bob, (400, 100, 500, 200)), ("alice", alice, (100, 100, 200, 200))]
    ids = {}
    for name, centre, place in people[::-1] if not bob_first else people:  # apart: no same-place prior
        out = stream.frame([place], [centre])
        ids[name] = int(out.data[PERSON_ID][0])
        stream.tracker.cut()
    assert sorted(ids.values()) == [1, 2]
    face = (bob + 0.1 * (alice - bob) / 0.35).astype(np.float32)  # 0.1 from Bob, 0.25 from Alice: both within 0.3
    out = stream.frame([(250, 250, 350, 350)], [face])
    assert out.data[PERSON_ID].tolist() == [ids["bob"]]


def test_a_track_is_reidentified_once_and_a_first_embedding_is_never_refused():
    """Alice and Bob (0.35 apart) are out of view. A new track's first embedding is Alice's own: it is her. Its second
    brings the track's mean within reach of Bob, but the question was settled: it stays Alice. And a track's first
    embedding has nothing to be compared with, however small ``reject_distance``."""
    alice = unit(1)
    away = near(alice, 1.0, 5) - alice
    step = (away / np.linalg.norm(away)).astype(np.float32)
    bob = alice + 0.35 * step
    stream = Stream()
    for centre, place in ((alice, (100, 100, 200, 200)), (bob, (400, 100, 500, 200))):
        stream.frame([place], [centre])
        stream.tracker.cut()
    box = (250, 250, 350, 350)
    assert stream.frame([box], [alice]).data[PERSON_ID].tolist() == [1]
    out = stream.frame([box], [alice + 0.58 * step])  # the track's mean is now 0.06 from Bob
    assert out.track_id.tolist() == [3] and out.data[PERSON_ID].tolist() == [1]
    assert stream.identities.stats.reidentified == 1 and stream.identities.stats.refused == 0
    strict = Stream(reject_distance=0.05, reid_distance=0.05)
    assert strict.frame([box], [alice]).track_id.tolist() == [1] and strict.identities.stats.refused == 0


def test_a_reidentified_track_still_held_by_the_tracker_is_merged_when_its_person_is_found_again():
    stream = Stream()
    alice = unit(1)
    for k in range(3):
        stream.frame([(100, 100, 200, 200)], [near(alice, 0.02, k)])
    stream.tracker.cut()
    for k in range(2):  # track 2, re-identified as Alice
        out = stream.frame([(400, 100, 500, 200)], [near(alice, 0.02, 10 + k)])
    assert out.track_id.tolist() == [2] and out.data[PERSON_ID].tolist() == [1]
    stream.frame([], [])  # track 2 is lost, still held by the tracker
    out = stream.frame([(100, 250, 200, 350)], [near(alice, 0.02, 20)])  # elsewhere: a new track, Alice again
    assert out.track_id.tolist() == [3] and out.data[PERSON_ID].tolist() == [1]
    assert 2 not in stream.tracker.active_track_ids.tolist()
    assert stream.book.tracks[3].n_obs == 6  # 3 (track 1) + 2 (track 2) + 1


def test_observing_a_face_that_was_never_labelled_starts_a_new_person():
    identities = Identities(embedding_model="none")
    tracker = ByteTracker(minimum_consecutive_frames=1)
    faces = tracker.update(faces_at((100, 100, 200, 200)))  # not passed through label()
    out, swallowed = identities.observe(faces, np.array([0]), unit(1)[None], 0.1, tracker, TrackBook())
    assert out.data[PERSON_ID].tolist() == [1] and swallowed == [] and identities.person_of(1) == 1
