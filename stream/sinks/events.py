"""JSON Lines events: one JSON object per processed frame, flushed line by line.

A line looks like (wrapped here)::

    {"frame": 12, "t": 0.48, "time": 1764756000.48, "source": "clip.mp4", "camera": "clip",
     "faces": [{"track_id": 3, "person_id": 2, "box_xyxy": [10.0, 20.5, 110.0, 140.0], "score": 0.97,
     "age_group": "31-40",
     "age_group_probs": [0.0, 0.01, 0.08, 0.7, 0.2, 0.01, 0.0, 0.0], "age": 34.2,
     "gender": "female", "p_female": 0.93, "n_obs": 6}]}

``time`` is Unix time (for files: the run's start plus ``t``, see :class:`stream.counts.FrameClock`), so
``python -m stream.report`` can lay the events out in time windows. Label fields are what the overlay shows
(one rule: :mod:`stream.labels`), ``null`` until the face's track has a label, when the stage that computes them
did not run, or when a value is not finite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from stream.config import SinkOptions
from stream.counts import FrameClock
from stream.labels import face_labels
from stream.sinks.base import Sink, SinkError, prepare_output_file
from stream.types import NO_TRACK, PERSON_ID, Faces, Frame

logger = logging.getLogger(__name__)

# Path meaning "standard output" (``--events -``).
STDOUT = "-"


def _number(value: Any, digits: int) -> float | None:
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def face_records(faces: Faces) -> list[dict[str, Any]]:
    """Convert faces to JSON-ready dicts, one per face (row order kept).

    Args:
        faces: ``n`` faces with the track book's label arrays in ``faces.data`` (any may be absent).

    Returns:
        ``n`` dicts with keys ``track_id`` (int, or None before tracking), ``person_id`` (int: the person the track
        belongs to, the same across tracks when appearance re-identified them; None without the identity stage),
        ``box_xyxy`` (4 floats, 1 decimal),
        ``score`` (4 decimals), and the label fields of :meth:`stream.labels.ShownLabel.as_record` (``age_group``,
        ``age_group_probs``, ``age``, ``gender``, ``p_female``, ``n_obs``): what the overlay shows, by the one
        rule of :mod:`stream.labels`; ``None`` until the track's label is ready. No value is ever NaN.
    """
    records: list[dict[str, Any]] = []
    person_ids = faces.data.get(PERSON_ID)
    for i, label in enumerate(face_labels(faces)):
        track_id = int(faces.track_id[i])
        records.append({
            "track_id": None if track_id == NO_TRACK else track_id,
            "person_id": None if person_ids is None else int(person_ids[i]),
            "box_xyxy": [_number(v, 1) for v in faces.xyxy[i]],
            "score": _number(faces.score[i], 4),
            **label.as_record(),
        })
    return records


def frame_record(frame: Frame, faces: Faces, when: float | None = None) -> dict[str, Any]:
    """The event object of one frame: ``frame``, ``t``, ``time``, ``source``, ``camera``, ``image`` (stills only),
    ``faces``.

    Args:
        frame: The processed frame.
        faces: Its faces (see :func:`face_records`).
        when: The frame's Unix time (:class:`stream.counts.FrameClock`), or None to leave ``time`` out.

    Returns:
        A JSON-ready dict.
    """
    record: dict[str, Any] = {
        "frame": int(frame.index),
        "t": _number(frame.timestamp, 3),
    }
    if when is not None:
        record["time"] = round(when, 3)
    record["source"] = frame.source
    if frame.camera:
        record["camera"] = frame.camera
    if frame.name:
        record["image"] = frame.name
    record["faces"] = face_records(faces)
    return record


class EventsSink(Sink, kind="events"):
    """Write one JSON line per processed frame, each with a single ``os.write`` to an ``O_APPEND`` file.

    Whatever happens the file ends on a complete line: a kill (even ``kill -9``) lands between two writes, and
    when a write fails or is cut short (disk full, file size limit) the file is truncated back to the last
    complete line before the error is raised. A reader (``tail -f``) sees frames as they are processed.

    Args:
        path: Output ``.jsonl`` file, or ``"-"`` for standard output (not closed by the sink).
        options: Accepted for a uniform constructor; no events option exists yet.

    Raises:
        SinkError: A path cannot be written (checked here, before any processing).
    """

    @property
    def shows_image(self) -> bool:
        return False  # records faces only; analytics-only runs skip drawing

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: SinkOptions | None = None,
    ) -> None:
        super().__init__()
        self.options = options if options is not None else SinkOptions()
        self.path: Path | None = None
        self._fd: int | None = None
        self._complete = 0  # bytes of complete lines written (the file's length after each line)
        if os.fspath(path) != STDOUT:
            self.path = prepare_output_file(path, "events output")
            try:
                # Held open for the sink's lifetime and closed in _close().
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o666)
            except OSError as err:
                raise SinkError(
                    f"cannot write events output {str(path)!r} ({err.strerror or err}); choose another path"
                ) from err
        self._frames = 0
        self._clock = FrameClock()

    @property
    def frames_written(self) -> int:
        """Lines written so far."""
        return self._frames

    def write(self, frame: Frame, faces: Faces) -> None:
        """Append the frame's event line.

        Args:
            frame: The processed frame.
            faces: Its faces (see :func:`face_records`).

        Raises:
            SinkError: Writing failed (e.g. disk full); the file still ends on a complete line.
        """
        self._check_open()
        record = frame_record(frame, faces, self._clock.time(frame))
        # allow_nan=False: a NaN that slipped through is a bug to surface, not invalid JSON to write.
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        if self._fd is None:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except OSError as err:
                raise SinkError(f"writing events to standard output failed ({err.strerror or err})") from err
        else:
            self._append(line.encode("utf-8"))
        self._frames += 1

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        written = 0
        try:
            while written < len(data):  # a regular file takes it in one write unless it is full
                written += os.write(self._fd, data[written:])
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._complete)  # back to the last complete line
            raise SinkError(f"writing events output {self._name()!r} failed ({err.strerror or err}); it ends "
                            f"after {self._frames} complete frame lines") from err
        self._complete += len(data)

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "<stdout>"

    def _close(self) -> None:
        try:
            if self._fd is not None:
                os.close(self._fd)
            else:
                sys.stdout.flush()
        except OSError as err:
            raise SinkError(f"closing events output {self._name()!r} failed ({err.strerror or err})") from err
        logger.info("events output %s: %d frames", self._name(), self._frames)
