"""JSON Lines events: one JSON object per processed frame, flushed line by line.

A line looks like (wrapped here)::

    {"frame": 12, "t": 0.48, "source": "clip.mp4", "faces": [{"track_id": 3, "person_id": 2,
     "box_xyxy": [10.0, 20.5, 110.0, 140.0], "score": 0.97, "age_group": "31-40",
     "age_group_probs": [0.0, 0.01, 0.08, 0.7, 0.2, 0.01, 0.0, 0.0], "age": 34.2,
     "gender": "female", "p_female": 0.93, "n_obs": 6}]}

Label fields are what the overlay shows (one rule: :mod:`stream.labels`), ``null`` until the face's
track has a label, when the stage that computes them did not run, or when a value is not finite.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import IO, Any

from stream.config import SinkOptions
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


def frame_record(frame: Frame, faces: Faces) -> dict[str, Any]:
    """The event object of one frame: ``frame``, ``t``, ``source``, ``image`` (stills only), ``faces``.

    Args:
        frame: The processed frame.
        faces: Its faces (see :func:`face_records`).

    Returns:
        A JSON-ready dict.
    """
    record: dict[str, Any] = {
        "frame": int(frame.index),
        "t": _number(frame.timestamp, 3),
        "source": frame.source,
    }
    if frame.name:
        record["image"] = frame.name
    record["faces"] = face_records(faces)
    return record


class EventsSink(Sink, kind="events"):
    """Write one JSON line per processed frame, flushed after every line.

    Each line is written with a single ``write`` and flushed, so a crash or a kill leaves
    only complete lines and a reader (``tail -f``) sees frames as they are processed.

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
        self._file: IO[str]
        if os.fspath(path) == STDOUT:
            self._file = sys.stdout
            self._owns_file = False
        else:
            self.path = prepare_output_file(path, "events output")
            try:
                # Held open for the sink's lifetime and closed in _close(), hence no `with`.
                self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as err:
                raise SinkError(
                    f"cannot write events output {str(path)!r} ({err.strerror or err}); choose another path"
                ) from err
            self._owns_file = True
        self._frames = 0

    @property
    def frames_written(self) -> int:
        """Lines written so far."""
        return self._frames

    def write(self, frame: Frame, faces: Faces) -> None:
        """Append the frame's event line and flush it.

        Args:
            frame: The processed frame.
            faces: Its faces (see :func:`face_records`).

        Raises:
            SinkError: Writing failed (e.g. disk full).
        """
        self._check_open()
        record = frame_record(frame, faces)
        # allow_nan=False: a NaN that slipped through is a bug to surface, not invalid JSON to write.
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as err:
            raise SinkError(f"writing events output {self._name()!r} failed ({err.strerror or err})") from err
        self._frames += 1

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "<stdout>"

    def _close(self) -> None:
        try:
            if self._owns_file:
                self._file.close()
            else:
                self._file.flush()
        except OSError as err:
            raise SinkError(f"closing events output {self._name()!r} failed ({err.strerror or err})") from err
        logger.info("events output %s: %d frames", self._name(), self._frames)
