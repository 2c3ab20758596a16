"""The person-life event model, frame by frame, fed by the real track book and track summaries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stream.analytics import track_record
from stream.events import PersonEvents, camera_name, check_camera_name
from stream.labels import face_labels
from stream.trackbook import TrackBook
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, P_FEMALE, Faces, Frame

FPS = 25.0
IMAGE = np.zeros((8, 8, 3), np.uint8)


def _faces(track_ids: list[int]) -> Faces:
    n = len(track_ids)
    boxes = np.array([[10 + 50 * i, 20, 90 + 50 * i, 100] for i in range(n)], np.float32).reshape(n, 4)
    return Faces(boxes, np.full(n, 0.9, np.float32), np.full((n, 5, 2), np.nan, np.float32),
                 np.array(track_ids, np.int64))


def _estimate(group: str, age: float, p_female: float, n: int = 1) -> dict[str, np.ndarray]:
    probs = np.full(len(AGE_GROUPS), 0.02, np.float32)
    probs[AGE_GROUPS.index(group)] = 1 - 0.02 * (len(AGE_GROUPS) - 1)
    return {AGE_GROUP_PROBS: np.tile(probs, (n, 1)), AGE_YEARS: np.full(n, age, np.float32),
            P_FEMALE: np.full(n, p_female, np.float32)}


class _Scene:
    """A real TrackBook fed frame by frame, and the event model fed from it as the pipeline does."""

    def __init__(self, **events_kwargs: Any) -> None:
        self.book = TrackBook(min_observations=3, switch_margin=0.1)
        self.events = PersonEvents("door", clock=lambda: 1000.0, **{"heartbeat_s": 0.0, "counts_every_s": 60.0,
                                                                    **events_kwargs})
        self.index = 0

    def frame(self, track_ids: list[int], estimate: dict[str, np.ndarray] | None = None,
              end: list[int] = ()) -> list[dict[str, Any]]:
        faces = _faces(track_ids)
        self.book.observe_presence(faces, self.index)
        if estimate is not None and track_ids:
            self.book.add(faces, estimate, self.index)
        ended = [track_record(tid, est, FPS) for tid, est in self.book.forget(list(end))]
        labelled = self.book.annotate(faces)
        out = self.events.step(Frame(self.index, self.index / FPS, IMAGE, "door.mp4"), labelled, ended)
        self.index += 1
        return out


def test_a_track_appears_gets_its_label_changes_it_and_ends() -> None:
    scene = _Scene(counts_every_s=0)
    first = scene.frame([7], _estimate("21-30", 26, 0.9))
    assert [e["type"] for e in first] == ["new"]
    new = first[0]
    assert new["camera"] == "door" and new["track_id"] == 7 and new["frame"] == 0 and new["t"] == 0.0
    assert new["before"] is None and new["after"]["ready"] is False and new["after"]["age_group"] is None
    assert new["after"]["box"] == [10.0, 20.0, 90.0, 100.0] and new["after"]["n_obs"] == 1
    assert scene.frame([7], _estimate("21-30", 26, 0.9)) == []  # 2 observations: still estimating
    ready = scene.frame([7], _estimate("21-30", 26, 0.9))
    assert [(e["type"], e["reason"]) for e in ready] == [("update", "label")]
    assert ready[0]["before"] == new["after"]
    after = ready[0]["after"]
    assert after["ready"] is True and after["age_group"] == "21-30" and after["gender"] == "female"
    # The label shown is exactly the shared rule's (stream.labels), fields and rounding included.
    labelled = scene.book.annotate(_faces([7]))
    assert {k: after[k] for k in face_labels(labelled)[0].as_record()} == face_labels(labelled)[0].as_record()
    # Same label, new evidence: age and probabilities move a little, no event.
    assert scene.frame([7], _estimate("21-30", 28, 0.8)) == []
    # The evidence turns to 31-40 and male: the shown label flips once the track book lets it.
    changes = []
    for _ in range(40):
        changes += scene.frame([7], _estimate("31-40", 35, 0.05))
    assert [e["type"] for e in changes] and all(e["type"] == "update" and e["reason"] == "label" for e in changes)
    assert changes[-1]["after"]["age_group"] == "31-40" and changes[-1]["after"]["gender"] == "male"
    assert changes[0]["before"] == after
    end = scene.frame([], end=[7])
    assert [e["type"] for e in end] == ["end"]
    assert end[0]["track_id"] == 7 and end[0]["before"] == changes[-1]["after"]
    summary = end[0]["after"]
    assert summary["track_id"] == 7 and summary["first_frame"] == 0 and summary["age_group"] == "31-40"
    assert summary["gender"] == "male" and summary["n_obs"] == 44
    seqs = [e["seq"] for e in first + ready + changes + end]
    assert seqs == list(range(len(seqs)))
    assert scene.events.in_view == []


def test_heartbeat_repeats_an_unchanged_label() -> None:
    scene = _Scene(heartbeat_s=0.2, counts_every_s=0)  # 5 frames at 25 fps
    events = [e for _ in range(13) for e in scene.frame([3], _estimate("41-55", 50, 0.1))]
    kinds = [(e["type"], e.get("reason"), e["frame"]) for e in events]
    assert kinds == [("new", None, 0), ("update", "label", 2), ("update", "heartbeat", 7),
                     ("update", "heartbeat", 12)]


def test_counts_report_people_in_view_by_label_at_the_interval() -> None:
    scene = _Scene(counts_every_s=0.4)  # every 10 frames
    events = []
    for _ in range(3):
        events += scene.frame([1, 2], _estimate("11-20", 15, 0.8, n=2))
    for _ in range(8):
        events += scene.frame([1, 2, 3], {k: np.concatenate([v, _estimate("66-80", 70, 0.2)[k]])
                                          for k, v in _estimate("11-20", 15, 0.8, n=2).items()})
    counts = [e for e in events if e["type"] == "counts"]
    assert len(counts) == 1
    tick = counts[0]
    assert tick["frame"] == 10 and tick["window_s"] == 0.4 and tick["in_view"] == 3 and tick["estimating"] == 0
    assert tick["by_age_group"]["11-20"] == 2 and tick["by_age_group"]["66-80"] == 1
    assert tick["by_gender"] == {"female": 2, "male": 1}
    assert tick["seen"] == 3 and tick["started"] == 3 and tick["ended"] == 0
    assert sum(tick["by_age_group"].values()) == 3


def test_finish_ends_open_tracks_at_the_last_frame_and_status_events() -> None:
    scene = _Scene(counts_every_s=0)
    scene.frame([4], _estimate("21-30", 25, 0.9))
    scene.frame([4], _estimate("21-30", 25, 0.9))
    ended = scene.events.finish([track_record(tid, est, FPS) for tid, est in scene.book.forget([4])])
    assert [(e["type"], e["track_id"], e["frame"]) for e in ended] == [("end", 4, 1)]
    assert ended[0]["after"]["age_group"] is None  # never reached a label: the summary says so
    status = scene.events.status("offline", reason="stopped")
    assert status["type"] == "status" and status["status"] == "offline" and status["camera"] == "door"
    assert "frame" not in status
    with pytest.raises(ValueError, match="status must be one of"):
        scene.events.status("sleeping")


def test_untracked_faces_are_not_people() -> None:
    scene = _Scene(counts_every_s=0)
    assert scene.events.step(Frame(0, 0.0, IMAGE), _faces([-1, -1])) == []


@pytest.mark.parametrize(("source", "name"), [
    ("/videos/door cam.mp4", "door_cam"),
    ("rtsp://***@10.0.0.5:554/stream1", "stream1"),
    ("rtsp://cam.local:554", "cam.local"),
    ("0", "webcam0"),
])
def test_camera_name(source: str, name: str) -> None:
    assert camera_name(source) == name


def test_bad_camera_name() -> None:
    # Bad intervals are refused where they are set, the broker URL (tests/stream/test_mqtt.py).
    with pytest.raises(ValueError, match="camera name 'a/b'"):
        check_camera_name("a/b")
    with pytest.raises(ValueError, match="camera name 'a/b'"):
        PersonEvents("a/b", heartbeat_s=0.0, counts_every_s=0.0)
