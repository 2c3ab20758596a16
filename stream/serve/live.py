"""The live view: a sink that keeps each camera's newest annotated frame, its people and its counts.

:class:`CameraView` is an ordinary :class:`~stream.sinks.base.Sink` in the run's list of sinks, so the web
page shows exactly the frames the pipeline annotated (with ``annotate.privacy`` applied like every other
output). It keeps the newest frame as JPEG, the faces in view with the labels :mod:`stream.labels` gives
them and the frame rate. People are counted over time by :class:`PeopleCounts`, one per server: the
:class:`stream.counts.PeopleCounter` of the summary and ``--counts`` outputs (the same rule: a person counted
once, in the window they arrived, with the label their track ended with), fed by every camera's view, so
the dashboard, ``/api/dashboard`` and the run's summary give the same numbers. :class:`Hub` holds the
cameras the server shows and their counts.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from stream.config import ServeConfig
from stream.counts import ALL_CAMERAS, FrameClock, PeopleCounter
from stream.labels import face_labels, label_text
from stream.serve.analyze import encode_jpeg
from stream.sinks.base import Sink
from stream.types import PERSON_ID, Faces, Frame

#: A viewer who fetched a frame this recently is watching: every frame is encoded (up to ``mjpeg_fps``).
_VIEWER_TIMEOUT_S = 5.0
#: Without viewers one frame a second is still encoded, so a page opening shows a picture at once.
_IDLE_ENCODE_S = 1.0
#: A camera whose pipeline delivered nothing for this long is shown as stalled ("reconnecting").
_STALLED_S = 5.0
#: A looped file's later passes count their track ids from here on (each pass has a fresh tracker, ids from 1).
_PASS_IDS = 1_000_000
#: Columns of the table of people in view, and of its CSV export, in order.
PEOPLE_COLUMNS: tuple[str, ...] = ("camera", "track_id", "label", "age_group", "age_range", "confidence", "age",
                                   "gender", "p_female", "n_obs", "in_view_s")


class PeopleCounts:
    """People over time of all the cameras of a server: :class:`stream.counts.PeopleCounter` behind a lock.

    Camera views feed it from the pipelines' threads (:meth:`observe` each frame, :meth:`end` each ended
    track), the web server reads it. Camera keys are the pipelines' camera names (``Frame.camera``, the track
    summaries' ``camera``), as in the summary's ``counts``.

    Args:
        window_s: The windows of the dashboard's counts over time (``output.counts_window_s``).
    """

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = float(window_s)
        self._counter = PeopleCounter()
        self._clock = FrameClock()
        self._lock = threading.Lock()

    def observe(self, camera: str, frame: Frame, faces: Faces) -> None:
        with self._lock:
            self._counter.observe(camera, self._clock.time(frame), faces)

    def end(self, camera: str, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for record in records:
                self._counter.end(record.get("camera") or camera, record)

    def table(self, window_s: float | None = None) -> dict[str, Any]:
        """``{"window_s", "rows", "totals"}``: the summary's ``counts`` (:class:`stream.counts.PeopleCounter`)."""
        window = float(window_s or self.window_s)
        with self._lock:
            return {"window_s": window, "rows": self._counter.rows(window), "totals": self._counter.totals()}

    def totals_of(self, camera: str = ALL_CAMERAS) -> dict[str, Any]:
        """The whole period's row of one camera (or ``all``); zeros before anybody was counted."""
        with self._lock:
            rows = self._counter.totals()
        for row in rows:
            if row["camera"] == camera:
                return row
        return empty_row(camera)


def empty_row(camera: str) -> dict[str, Any]:
    """A counts row of nobody (the same columns as :data:`stream.counts.COLUMNS`)."""
    from stream.counts import COLUMNS

    row: dict[str, Any] = dict.fromkeys(COLUMNS, 0)
    row.update(window_start=None, window_s=0.0, camera=camera, estimating_share=0.0, dwell_mean_s=None,
               dwell_median_s=None)
    return row


class CameraView(Sink):
    """One camera's newest annotated frame, people in view and ended tracks, shared with the web server.

    ``write`` runs in the pipeline's thread, the getters in the server's: everything is guarded by a lock,
    and the work in ``write`` is bounded (a JPEG only as often as somebody watches).

    Args:
        camera_id: Short id used in URLs (``cam0``).
        name: Display name of the source (credentials already redacted by the source).
        options: The ``serve:`` section (``jpeg_quality``, ``mjpeg_fps``); None: its defaults.
        counts: Where its people are counted (the server's :class:`PeopleCounts`).
        key: The camera's name in the pipeline (``Frame.camera``; the counts' camera), when frames carry none.
    """

    def __init__(self, camera_id: str, name: str, options: ServeConfig | None = None, *,
                 counts: PeopleCounts | None = None, key: str = "") -> None:
        super().__init__()
        options = options if options is not None else ServeConfig()
        self.camera_id = camera_id
        self.name = name
        self.key = key or camera_id
        self.counts = counts if counts is not None else PeopleCounts()
        self.jpeg_quality = options.jpeg_quality
        self.min_encode_interval_s = 1.0 / options.mjpeg_fps
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._version = 0
        self._encoded_at = 0.0
        self._watched_at = 0.0
        self._written_at: float | None = None
        self._write_times: deque[float] = deque(maxlen=50)
        self._people: list[dict[str, Any]] = []
        self._first_seen: dict[int, float] = {}
        self._id_offset = 0
        self._time_offset = 0.0
        self._media_time = (0.0, 0.0)  # the last two frames' media times (with the offset)
        self.started_at = time.time()
        self._status_of: Callable[[], str] | None = None
        self.finished = False

    def follow(self, status_of: Callable[[], str] | None) -> None:
        """Report the source's own status (``live``/``reconnecting``/``offline``) while frames flow."""
        self._status_of = status_of

    # -- the pipeline's side -----------------------------------------------------------------------
    def write(self, frame: Frame, faces: Faces) -> None:
        self._check_open()
        if frame.camera:
            self.key = frame.camera
        counted_frame, counted_faces = frame, faces
        if self._id_offset:
            ids = faces.track_id
            counted_frame = dataclasses.replace(frame, timestamp=frame.timestamp + self._time_offset)
            counted_faces = dataclasses.replace(faces, track_id=_shifted(ids, self._id_offset))
            if PERSON_ID in faces.data:
                counted_faces = counted_faces.with_data(**{PERSON_ID: _shifted(faces.data[PERSON_ID],
                                                                               self._id_offset)})
        self._media_time = (self._media_time[1], counted_frame.timestamp)
        self.counts.observe(self.key, counted_frame, counted_faces)
        now = time.monotonic()
        people = self._rows(faces, time.time())
        with self._lock:
            watched = now - self._watched_at < _VIEWER_TIMEOUT_S
            due = now - self._encoded_at >= (self.min_encode_interval_s if watched else _IDLE_ENCODE_S)
            due = due or self._jpeg is None
        jpeg = encode_jpeg(frame.image, self.jpeg_quality) if due else None
        with self._lock:
            self._written_at = now
            self._write_times.append(now)
            self._people = people
            if jpeg is not None:
                self._jpeg, self._encoded_at = jpeg, now
                self._version += 1

    def end_tracks(self, records: list[dict[str, Any]]) -> None:
        """Count the people whose tracks ended (the sinks' hook, as the summary's)."""
        if self._id_offset:
            records = [{**record, "track_id": int(record["track_id"]) + self._id_offset,
                        **({PERSON_ID: int(record[PERSON_ID]) + self._id_offset}
                           if record.get(PERSON_ID) is not None else {})} for record in records]
        self.counts.end(self.key, records)

    def new_pass(self) -> None:
        """A looped file starts again, with a fresh tracker and re-identification (track and person ids from 1) at
        media time 0: its people are counted as new people arriving now, not merged with the last pass's people
        of the same ids, nor dated back."""
        earlier, last = self._media_time
        self._id_offset += _PASS_IDS
        self._time_offset = last + max(last - earlier, 0.0)

    def _close(self) -> None:
        with self._lock:
            self.finished = True

    def _rows(self, faces: Faces, now: float) -> list[dict[str, Any]]:
        rows = []
        seen = set()
        for i, label in enumerate(face_labels(faces)):
            track_id = int(faces.track_id[i])
            seen.add(track_id)
            first = self._first_seen.setdefault(track_id, now)
            record = label.as_record()
            rows.append({"camera": self.name, "track_id": track_id, "label": label_text(label, track_id),
                         "age_group": record["age_group"], "age_range": record["age_range"],
                         "confidence": _round(label.confidence, 3),
                         "age": record["age"], "gender": record["gender"], "p_female": record["p_female"],
                         "n_obs": record["n_obs"], "in_view_s": round(now - first, 1),
                         "box": [round(float(v), 1) for v in faces.xyxy[i]]})
        for gone in set(self._first_seen) - seen:
            del self._first_seen[gone]
        return rows

    # -- the server's side -------------------------------------------------------------------------
    def latest(self) -> tuple[int, bytes | None]:
        """``(version, jpeg)`` of the newest frame; marks the camera as watched."""
        with self._lock:
            self._watched_at = time.monotonic()
            return self._version, self._jpeg

    @property
    def status(self) -> str:
        """``live``, ``reconnecting`` (the source is lost and retried, or stalled) or ``offline`` (ended)."""
        if self.finished:
            return "offline"
        if self._status_of is not None:
            status = self._status_of()
            if status != "live":
                return status
        written = self._written_at
        if written is None or time.monotonic() - written > _STALLED_S:
            return "reconnecting" if written is not None else "starting"
        return "live"

    def snapshot(self) -> dict[str, Any]:
        """The camera's state for the API: status, fps, faces in view, the people table, totals."""
        with self._lock:
            times = list(self._write_times)
            people = [dict(row) for row in self._people]
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        return {"id": self.camera_id, "name": self.name, "status": self.status,
                "fps": None if fps is None else round(fps, 1), "faces_in_view": len(people), "people": people,
                "counts_key": self.key, "totals": self.counts.totals_of(self.key)}


def _shifted(ids: np.ndarray, offset: int) -> np.ndarray:
    """Ids moved by ``offset``; negative ones (none) stay."""
    return np.where(ids >= 0, ids + offset, ids)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class Hub:
    """The cameras a server shows, by id (``cam0``, ``cam1``...): ids from the request only look them up.

    Args:
        window_s: The counts' window (``output.counts_window_s``).
    """

    def __init__(self, window_s: float = 60.0) -> None:
        self._cameras: dict[str, CameraView] = {}
        self._lock = threading.Lock()
        self.counts = PeopleCounts(window_s)

    def add(self, name: str, options: ServeConfig | None = None, *, key: str = "") -> CameraView:
        """A new camera view named ``name`` (shown), counted as ``key`` (the pipeline's camera name)."""
        with self._lock:
            camera_id = f"cam{len(self._cameras)}"
            view = CameraView(camera_id, name, options, counts=self.counts, key=key)
            self._cameras[camera_id] = view
            return view

    def get(self, camera_id: str) -> CameraView | None:
        with self._lock:
            return self._cameras.get(camera_id)

    def cameras(self) -> list[CameraView]:
        with self._lock:
            return list(self._cameras.values())
