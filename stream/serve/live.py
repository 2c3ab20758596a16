"""The live view: a sink that keeps each camera's newest annotated frame, its people and its counts.

:class:`CameraView` is an ordinary :class:`~stream.sinks.base.Sink` in the run's list of sinks, so the web
page shows exactly the frames the pipeline annotated (with ``annotate.privacy`` applied like every other
output). It keeps the newest frame as JPEG, the faces in view with the labels :mod:`stream.labels` gives
them, the frame rate, and the tracks that ended (the records of :func:`stream.analytics.track_record`,
counted with :class:`~stream.analytics.Totals`) for the dashboard. :class:`Hub` holds the cameras the
server shows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from stream.analytics import Totals
from stream.config import ServeConfig
from stream.labels import face_labels, label_text
from stream.serve.analyze import encode_jpeg
from stream.sinks.base import Sink
from stream.types import Faces, Frame

#: A viewer who fetched a frame this recently is watching: every frame is encoded (up to ``mjpeg_fps``).
_VIEWER_TIMEOUT_S = 5.0
#: Without viewers one frame a second is still encoded, so a page opening shows a picture at once.
_IDLE_ENCODE_S = 1.0
#: A camera whose pipeline delivered nothing for this long is shown as stalled ("reconnecting").
_STALLED_S = 5.0
#: Columns of the table of people in view, and of its CSV export, in order.
PEOPLE_COLUMNS: tuple[str, ...] = ("camera", "track_id", "label", "age_group", "confidence", "age", "gender",
                                   "p_female", "n_obs", "in_view_s")


class CameraView(Sink):
    """One camera's newest annotated frame, people in view and ended tracks, shared with the web server.

    ``write`` runs in the pipeline's thread, the getters in the server's: everything is guarded by a lock,
    and the work in ``write`` is bounded (a JPEG only as often as somebody watches).

    Args:
        camera_id: Short id used in URLs (``cam0``).
        name: Display name of the source (credentials already redacted by the source).
        options: The ``serve:`` section (``jpeg_quality``, ``mjpeg_fps``, ``history_tracks``); None: its defaults.
    """

    def __init__(self, camera_id: str, name: str, options: ServeConfig | None = None) -> None:
        super().__init__()
        options = options if options is not None else ServeConfig()
        self.camera_id = camera_id
        self.name = name
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
        self.totals = Totals()
        self.ended: deque[tuple[float, dict[str, Any]]] = deque(maxlen=options.history_tracks)
        self.started_at = time.time()
        self._status_of: Callable[[], str] | None = None
        self.finished = False

    def follow(self, status_of: Callable[[], str] | None) -> None:
        """Report the source's own status (``live``/``reconnecting``/``offline``) while frames flow."""
        self._status_of = status_of

    # -- the pipeline's side -----------------------------------------------------------------------
    def write(self, frame: Frame, faces: Faces) -> None:
        self._check_open()
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
        """Count tracks that ended (the sinks' hook that :func:`stream.pipeline.run` calls)."""
        now = time.time()
        with self._lock:
            for record in records:
                self.totals.add(record)
                self.ended.append((now, record))

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
                         "age_group": record["age_group"], "confidence": _round(label.confidence, 3),
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
            totals = self.totals.as_dict()
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        return {"id": self.camera_id, "name": self.name, "status": self.status,
                "fps": None if fps is None else round(fps, 1), "faces_in_view": len(people), "people": people,
                "totals": totals}

    def ended_since(self, since: float) -> list[tuple[float, dict[str, Any]]]:
        """Ended tracks ``(wall time, record)`` from ``since`` (epoch seconds) on."""
        with self._lock:
            return [(t, record) for t, record in self.ended if t >= since]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class Hub:
    """The cameras a server shows, by id (``cam0``, ``cam1``...): ids from the request only look them up."""

    def __init__(self) -> None:
        self._cameras: dict[str, CameraView] = {}
        self._lock = threading.Lock()

    def add(self, name: str, options: ServeConfig | None = None) -> CameraView:
        with self._lock:
            camera_id = f"cam{len(self._cameras)}"
            view = CameraView(camera_id, name, options)
            self._cameras[camera_id] = view
            return view

    def get(self, camera_id: str) -> CameraView | None:
        with self._lock:
            return self._cameras.get(camera_id)

    def cameras(self) -> list[CameraView]:
        with self._lock:
            return list(self._cameras.values())
