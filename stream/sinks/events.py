"""JSON Lines events: one JSON object per processed frame, flushed line by line.

A line looks like (wrapped here)::

    {"frame": 12, "t": 0.48, "source": "clip.mp4", "faces": [{"track_id": 3,
     "box_xyxy": [10.0, 20.5, 110.0, 140.0], "score": 0.97, "age_group": "31-40",
     "age_group_probs": [0.0, 0.01, 0.08, 0.7, 0.2, 0.01, 0.0, 0.0], "age": 34.2,
     "gender": "female", "p_female": 0.93, "n_obs": 6}]}

Label fields (``age_group``, ``age_group_probs``, ``age``, ``gender``, ``p_female``) are
``null`` until the face's track has a label (``LABEL_READY``), when the stage that
computes them did not run, or when a value is not finite: JSON has no NaN.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from stream.config import SinkOptions
from stream.sinks.base import Sink, SinkError, prepare_output_file
from stream.types import (
    AGE_GROUP_PROBS,
    AGE_GROUPS,
    AGE_YEARS,
    LABEL_READY,
    N_OBS,
    NO_TRACK,
    P_FEMALE,
    SHOWN_FEMALE,
    SHOWN_GROUP,
    Faces,
    Frame,
)

logger = logging.getLogger(__name__)

# Path meaning "standard output" (``--events -``).
STDOUT = "-"


def _number(value: Any, digits: int) -> float | None:
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def face_records(faces: Faces) -> list[dict[str, Any]]:
    """Convert faces to JSON-ready dicts, one per face (row order kept).

    Args:
        faces: ``n`` faces. Label values are read from ``faces.data``:
            :data:`~stream.types.AGE_GROUP_PROBS` ``(n, 8)``, :data:`~stream.types.AGE_YEARS` ``(n,)``,
            :data:`~stream.types.P_FEMALE` ``(n,)``, :data:`~stream.types.N_OBS` ``(n,)`` and
            :data:`~stream.types.LABEL_READY` ``(n,)`` bool. Any of them may be absent.

    Returns:
        ``n`` dicts with keys ``track_id`` (int, or None before tracking), ``box_xyxy``
        (4 floats, 1 decimal), ``score`` (4 decimals), ``age_group`` (a label of
        :data:`~stream.types.AGE_GROUPS`: :data:`~stream.types.SHOWN_GROUP` when present, else the
        argmax of the probabilities), ``age_group_probs``
        (8 floats, 4 decimals, in ``AGE_GROUPS`` order), ``age`` (years, 1 decimal),
        ``gender`` ("female" if ``p_female >= 0.5`` else "male"), ``p_female`` (4 decimals) and
        ``n_obs`` (int). Label fields are None while ``LABEL_READY`` is false for the face,
        when their array is absent, or when the value is not finite; without a
        ``LABEL_READY`` array labels are not gated. No value is ever NaN.
    """
    n = len(faces)
    data = faces.data
    ready = np.asarray(data[LABEL_READY], bool) if LABEL_READY in data else np.ones(n, bool)
    probs = np.asarray(data[AGE_GROUP_PROBS], np.float64) if AGE_GROUP_PROBS in data else None
    if probs is not None and probs.shape != (n, len(AGE_GROUPS)):
        raise ValueError(f"faces.data[{AGE_GROUP_PROBS!r}] must have shape ({n}, {len(AGE_GROUPS)}), got {probs.shape}")
    ages = data.get(AGE_YEARS)
    shown = data.get(SHOWN_GROUP)
    shown_female = data.get(SHOWN_FEMALE)
    p_female = data.get(P_FEMALE)
    n_obs = data.get(N_OBS)
    records: list[dict[str, Any]] = []
    for i in range(n):
        track_id = int(faces.track_id[i])
        record: dict[str, Any] = {
            "track_id": None if track_id == NO_TRACK else track_id,
            "box_xyxy": [_number(v, 1) for v in faces.xyxy[i]],
            "score": _number(faces.score[i], 4),
            "age_group": None,
            "age_group_probs": None,
            "age": None,
            "gender": None,
            "p_female": None,
            "n_obs": None if n_obs is None else int(n_obs[i]),
        }
        if ready[i]:
            if probs is not None and np.isfinite(probs[i]).all() and probs[i].sum() > 0:
                # The group on screen (the track book's hysteresis applied), so events and overlay agree.
                group = int(shown[i]) if shown is not None and shown[i] >= 0 else int(np.argmax(probs[i]))
                record["age_group"] = AGE_GROUPS[group]
                record["age_group_probs"] = [round(float(p), 4) for p in probs[i]]
            if ages is not None:
                record["age"] = _number(ages[i], 1)
            if p_female is not None:
                record["p_female"] = _number(p_female[i], 4)
                if record["p_female"] is not None:
                    # The gender on screen (hysteresis applied) when the track book gives it.
                    female = shown_female[i] if shown_female is not None and shown_female[i] >= 0 else (
                        float(p_female[i]) >= 0.5)
                    record["gender"] = "female" if female else "male"
        records.append(record)
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


class EventsSink(Sink):
    """Write one JSON line per processed frame, flushed after every line.

    Each line is written with a single ``write`` and flushed, so a crash or a kill leaves
    only complete lines and a reader (``tail -f``) sees frames as they are processed.

    Args:
        path: Output ``.jsonl`` file, or ``"-"`` for standard output (not closed by the sink).
        options: Accepted for a uniform constructor; no events option exists yet.
        summary_path: If given, a JSON file written at close with the number of frames and,
            per track, its first and last frame, frame count and last label.

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
        *,
        summary_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.options = options if options is not None else SinkOptions()
        self.path: Path | None = None
        self.summary_path = prepare_output_file(summary_path, "events summary") if summary_path is not None else None
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
        self._detections = 0
        self._source = ""
        self._tracks: dict[int, dict[str, Any]] = {}

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
        self._source = frame.source
        if self.summary_path is not None:
            self._update_tracks(record)

    def _update_tracks(self, record: dict[str, Any]) -> None:
        for face in record["faces"]:
            track_id = face["track_id"]
            if track_id is None:
                continue
            self._detections += 1
            track = self._tracks.setdefault(
                track_id, {"track_id": track_id, "first_frame": record["frame"], "frames": 0}
            )
            track["last_frame"] = record["frame"]
            track["frames"] += 1
            if face["age_group"] is not None or face["gender"] is not None:
                track.update({k: face[k] for k in ("age_group", "age", "gender", "p_female", "n_obs")})

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
        if self.summary_path is not None:
            summary = {
                "source": self._source,
                "frames": self._frames,
                "tracked_faces": self._detections,
                "tracks": sorted(self._tracks.values(), key=lambda t: t["track_id"]),
            }
            try:
                self.summary_path.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")
            except OSError as err:
                raise SinkError(
                    f"writing events summary {str(self.summary_path)!r} failed ({err.strerror or err})"
                ) from err
        logger.info("events output %s: %d frames", self._name(), self._frames)
