"""The one event model: the life of each person (track) and the state of each camera, as JSON-ready dicts.

Every outlet (the MQTT topics, and later the JSONL file, the summary and the web page) renders these objects,
so they can never disagree. The conventions follow Frigate's ``frigate/events``: a person event has a
``type`` of ``new`` (the track is first seen), ``update`` (its shown label changed, or a heartbeat) or
``end`` (it left; ``after`` is its fused summary, :func:`stream.analytics.track_record`), with ``before``
(what was last reported) and ``after`` (what is true now). Cameras report ``status`` (live, reconnecting,
offline) and ``counts`` of the people in view at a fixed interval.

Every event carries ``type``, ``camera``, ``seq`` (0, 1, 2, ... per camera and run: a consumer can see a gap
or drop a repeat), ``time`` (wall clock, Unix seconds) and, when a frame caused it, ``frame`` and ``t``
(seconds into the source). Heartbeats and count windows run on ``t``, the source's own clock, so a file
gives the same events however fast it is processed.

The label shown comes only from :mod:`stream.labels` (the rule shared with the overlay).

Example::

    events = PersonEvents("door", heartbeat_s=10, counts_every_s=60)
    for frame, faces, ended in ...:           # faces after the track book; ended = track_record dicts
        for event in events.step(frame, faces, ended):
            publish(event)
    for event in events.finish(remaining):   # the tracks still open when the stream ends
        publish(event)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# The camera-name rule has one home, the config (camera names are settings); re-exported for the outlets.
from stream.config import camera_name as camera_name
from stream.config import check_camera_name
from stream.labels import FEMALE, MALE, ShownLabel, face_labels
from stream.types import AGE_GROUPS, PERSON_ID, Faces, Frame

STATUSES = ("live", "reconnecting", "offline")
# Frame times are k / fps: 12/25 - 7/25 is 0.19999..., which must count as the 0.2 s it is.
_EPS_S = 1e-6


@dataclass
class _Person:
    """What was last reported about one track."""

    shown: tuple[Any, ...]
    state: dict[str, Any]
    reported_t: float


def _round(value: float, digits: int) -> float | None:
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def _shown_key(label: ShownLabel) -> tuple[Any, ...]:
    # What a viewer sees change: the label appearing, the age group, the gender. Age in years and the
    # probabilities move a little with every observation and would flood the outlet.
    return (label.ready, label.age_group, label.gender)


class PersonEvents:
    """Turns per-frame faces and ended tracks into person, count and status events for one camera.

    Args:
        camera: The camera's name, carried by every event.
        heartbeat_s: Also send an ``update`` for a person whose label has not changed for this many seconds
            of source time (0: only on changes).
        counts_every_s: Send ``counts`` every this many seconds of source time (0: never).
        clock: Wall clock for ``time`` (tests pass a fixed one).

    Both intervals are the broker URL's ``heartbeat=``/``counts=`` options, whose defaults and bounds have one
    home, :class:`stream.sinks.mqtt.MqttSettings` (checked by :func:`stream.sinks.mqtt.parse_mqtt_url`).

    Raises:
        ValueError: A camera name that cannot be a topic level.
    """

    def __init__(
        self,
        camera: str,
        *,
        heartbeat_s: float,
        counts_every_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.camera = check_camera_name(camera)
        self.heartbeat_s = float(heartbeat_s)
        self.counts_every_s = float(counts_every_s)
        self._clock = clock
        self._seq = 0
        self._people: dict[int, _Person] = {}
        self._last: tuple[int, float] | None = None  # (frame, t) of the last step
        self._window_start: float | None = None
        self._window_seen: set[int] = set()
        self._window_new = 0
        self._window_ended = 0

    @property
    def in_view(self) -> list[int]:
        """Track ids seen and not yet ended."""
        return sorted(self._people)

    def _event(self, kind: str, frame: int | None, t: float | None, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"type": kind, "camera": self.camera, "seq": self._seq,
                                 "time": round(self._clock(), 3)}
        if frame is not None:
            event["frame"] = frame
            event["t"] = None if t is None else _round(t, 3)
        event.update(fields)
        self._seq += 1
        return event

    def status(self, status: str, **fields: Any) -> dict[str, Any]:
        """A camera ``status`` event (``live``, ``reconnecting`` or ``offline``), with any extra fields."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        return self._event("status", None, None, status=status, **fields)

    def step(self, frame: Frame, faces: Faces, ended: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """The events of one processed frame, in order: ``end`` of the tracks that ended on it, then ``new``
        and ``update`` for its faces (in row order), then ``counts`` when a window is complete.

        Args:
            frame: The processed frame (its ``index`` and ``timestamp`` are used).
            faces: Its faces after the track book (``track_id`` and label arrays); rows without a track
                (:data:`~stream.types.NO_TRACK`) are not people yet and are ignored.
            ended: :func:`~stream.analytics.track_record` summaries of the tracks that ended on this frame.
        """
        index, t = int(frame.index), float(frame.timestamp)
        self._last = (index, t)
        events = [self._end(record, index, t) for record in ended]
        labels = face_labels(faces)
        for row, (track_id, label) in enumerate(zip(faces.track_id.tolist(), labels)):
            if track_id < 0:
                continue
            shown = _shown_key(label)
            person = self._people.get(track_id)
            self._window_seen.add(track_id)
            if person is None:
                state = self._state(faces, row, track_id, label, index, t)
                self._people[track_id] = _Person(shown, state, t)
                self._window_new += 1
                events.append(self._event("new", index, t, track_id=track_id, before=None, after=state))
                continue
            if shown != person.shown:
                reason = "label"
            elif self.heartbeat_s > 0 and t - person.reported_t >= self.heartbeat_s - _EPS_S:
                reason = "heartbeat"
            else:
                continue
            state = self._state(faces, row, track_id, label, index, t)
            events.append(self._event("update", index, t, track_id=track_id, reason=reason,
                                      before=person.state, after=state))
            self._people[track_id] = _Person(shown, state, t)
        counts = self._counts(faces, labels, index, t)
        if counts is not None:
            events.append(counts)
        return events

    def finish(self, ended: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """``end`` events for the tracks still open when the stream stopped, stamped with the last frame."""
        index, t = self._last if self._last is not None else (None, None)
        return [self._end(record, index, t) for record in ended]

    def _end(self, record: dict[str, Any], index: int | None, t: float | None) -> dict[str, Any]:
        track_id = int(record["track_id"])
        person = self._people.pop(track_id, None)
        self._window_ended += 1
        return self._event("end", index, t, track_id=track_id, before=None if person is None else person.state,
                           after=dict(record))

    @staticmethod
    def _state(faces: Faces, row: int, track_id: int, label: ShownLabel, index: int, t: float) -> dict[str, Any]:
        box = [_round(v, 1) for v in faces.xyxy[row].tolist()]
        persons = faces.data.get(PERSON_ID)  # the identity stage's person (stable across re-identification)
        person_id = None if persons is None else int(persons[row])
        return {"track_id": track_id, "person_id": person_id, "frame": index, "t": _round(t, 3), "box": box,
                "score": _round(float(faces.score[row]), 3), "ready": label.ready, **label.as_record()}

    def _counts(self, faces: Faces, labels: list[ShownLabel], index: int, t: float) -> dict[str, Any] | None:
        if self.counts_every_s <= 0:
            return None
        if self._window_start is None:
            self._window_start = t
        if t - self._window_start < self.counts_every_s - _EPS_S:
            return None
        tracked = [label for track_id, label in zip(faces.track_id.tolist(), labels) if track_id >= 0]
        by_group = dict.fromkeys(AGE_GROUPS, 0)
        by_gender = {FEMALE: 0, MALE: 0}
        estimating = undecided = 0
        for label in tracked:
            if not label.ready:
                estimating += 1
                continue
            if label.age_group is None:
                undecided += 1  # a range or age?: the evidence named no one group
            else:
                by_group[label.age_group] += 1
            if label.gender is not None:
                by_gender[label.gender] += 1
        event = self._event(
            "counts", index, t, window_s=_round(t - self._window_start, 3), in_view=len(tracked),
            estimating=estimating, age_undecided=undecided, by_age_group=by_group, by_gender=by_gender,
            seen=len(self._window_seen), started=self._window_new, ended=self._window_ended,
        )
        self._window_start = t
        self._window_seen = set()
        self._window_new = self._window_ended = 0
        return event
