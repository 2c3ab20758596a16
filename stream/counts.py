"""People over time: per time window and camera (and over all cameras), by age group and gender, with dwell.

What a shop manager reads: how many people came in each quarter hour, how old, which gender, how long they
stayed, and how many are still "estimating" (no label yet: seen too briefly or too small to classify).

* **A person** is a person id when the faces carry one (``faces.data["person_id"]``, from re-identification
  across tracks), else a track (one per face for still images). A person is counted once, in the window in
  which they **arrived** (first seen), with the label shown when their track ended (the fused estimate,
  :func:`stream.analytics.track_record`); a person with several tracks keeps the latest labelled one.
* **Time** is Unix time: for live sources when the frame was captured; for files and folders the run's start
  plus the frame's time in the file (:class:`FrameClock`), so a recording is laid out as if it started when
  the run did. Windows are aligned to the clock (a 15 min window starts at :00, :15, :30, :45 UTC).
* **Dwell** is last seen minus first seen, in seconds (``None`` for still images).

:class:`PeopleCounter` is fed by the summary and counts outputs (``observe`` each frame's faces, ``end`` each
ended track), by ``python -m stream.report`` from an events file, and by ``python -m stream.aggregate`` from
the broker's ``end`` events, so the three give the same tables. :func:`write_table` writes them as CSV (or
Parquet when pyarrow is installed), which ``pandas.read_csv`` / ``read_parquet`` read as they are.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream.config import SinkOptions
from stream.types import AGE_GROUPS, PERSON_ID, Faces, Frame

#: Named window sizes (the command lines' ``--window``) in seconds.
WINDOWS: dict[str, float] = {"1min": 60.0, "15min": 900.0, "1h": 3600.0}
#: The window of ``python -m stream.report`` and ``python -m stream.aggregate`` when ``--window`` is not given.
REPORT_WINDOW = "15min"
#: A window's bounds in seconds: those of ``output.counts_window_s`` (one home: stream/config.py).
_WINDOW_META = next(f.metadata for f in fields(SinkOptions) if f.name == "counts_window_s")
WINDOW_BOUNDS: tuple[float, float] = (float(_WINDOW_META["low"]), float(_WINDOW_META["high"]))
ALL_CAMERAS = "all"
GENDER_COLUMNS = ("female", "male", "gender_unknown")
AGE_COLUMNS = tuple(f"age_{group}" for group in AGE_GROUPS)
#: The columns of every table, in order (a CSV header, a Parquet schema, the summary's rows).
COLUMNS: tuple[str, ...] = ("window_start", "window_s", "camera", "people", "labelled", "estimating",
                            "estimating_share", "age_undecided", *AGE_COLUMNS, *GENDER_COLUMNS, "dwell_mean_s",
                            "dwell_median_s")


def parse_window(text: str | float) -> float:
    """Seconds of a window: ``1min``, ``15min``, ``1h`` or a number of seconds (within :data:`WINDOW_BOUNDS`).

    Raises:
        ValueError: Anything else (the message lists the names).
    """
    if isinstance(text, str) and text in WINDOWS:
        return WINDOWS[text]
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        seconds = math.nan
    low, high = WINDOW_BOUNDS
    if not low <= seconds <= high:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)} or seconds from {low:g} to {high:g}, "
                         f"got {text!r}")
    return seconds


class FrameClock:
    """Unix time of each camera's frames: the wall clock at the camera's first frame, plus the frame's time."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._base: dict[str, float] = {}

    def time(self, frame: Frame) -> float:
        base = self._base.get(frame.camera)
        if base is None:
            base = self._base[frame.camera] = self._clock() - float(frame.timestamp)
        return base + float(frame.timestamp)


@dataclass
class Person:
    """One counted person. ``age_group``/``gender`` are None while estimating (no label when they left) and while
    undecided (the evidence named no one group or gender, :mod:`stream.labels`)."""

    camera: str
    first: float
    last: float
    age_group: str | None = None
    gender: str | None = None
    still: bool = False
    age_undecided: bool = False  # labelled, but the evidence decided no one age group

    @property
    def dwell_s(self) -> float | None:
        return None if self.still else max(0.0, self.last - self.first)


class PeopleCounter:
    """Counts people per window (see the module docstring): ``observe`` frames, ``end`` tracks, read ``rows``."""

    def __init__(self) -> None:
        self.people: dict[tuple[str, str], Person] = {}
        # (camera, track id) -> [first time, last time, person key]
        self._tracks: dict[tuple[str, int], list[Any]] = {}
        self._last_time: dict[str, float] = {}

    def observe(self, camera: str, when: float, faces: Faces) -> None:
        """Note when each tracked face of a frame was seen (and, when the faces carry one, its person id)."""
        self._last_time[camera] = when
        person_ids = faces.data.get(PERSON_ID)
        for row, track_id in enumerate(faces.track_id.tolist()):
            if track_id < 0:
                continue
            seen = self._tracks.get((camera, track_id))
            if seen is None:
                seen = self._tracks[(camera, track_id)] = [when, when, f"t{track_id}"]
            seen[1] = when
            if person_ids is not None and int(person_ids[row]) >= 0:
                seen[2] = f"p{int(person_ids[row])}"

    def end(self, camera: str, record: dict[str, Any], when: float | None = None) -> None:
        """A track ended: count its person with the label of ``record`` (a track summary).

        Args:
            camera: The track's camera.
            record: :func:`stream.analytics.track_record` (or ``Pipeline.still_records``) summary; ``image``
                marks a still's face, ``person_id`` (optional) overrides the id seen with the faces.
            when: When it ended, if it was never observed (e.g. from a broker's ``end`` event); with
                ``record["duration_s"]`` it gives the arrival time.
        """
        track_id = int(record["track_id"])
        still = "image" in record
        seen = self._tracks.pop((camera, track_id), None)
        if still:
            # Stills number their faces 1..n per image: the image makes the key unique.
            key = f"{record['image']}#{track_id}"
        elif record.get(PERSON_ID) is not None:
            key = f"p{int(record[PERSON_ID])}"
        else:
            key = seen[2] if seen is not None else f"t{track_id}"
        if seen is not None:
            first, last = float(seen[0]), float(seen[1])
        else:
            last = when if when is not None else self._last_time.get(camera, time.time())
            first = last - float(record.get("duration_s") or 0.0)
        person = self.people.get((camera, key))
        if person is None:
            person = self.people[(camera, key)] = Person(camera, first, last, still=still)
        person.first, person.last = min(person.first, first), max(person.last, last)
        if record.get("age_group") is not None or person.age_group is None:
            person.age_group = record.get("age_group")
            person.gender = record.get("gender")
            person.age_undecided = person.age_group is None and record.get("age_group_probs") is not None

    def rows(self, window_s: float, *, per_camera: bool = True, across: bool = True) -> list[dict[str, Any]]:
        """The table: one row per window with arrivals, per camera and/or over all cameras (``camera: all``).

        Rows are sorted by window, then camera; windows without arrivals are left out.
        """
        groups: dict[tuple[float, str], list[Person]] = {}
        for person in self.people.values():
            start = math.floor(person.first / window_s) * window_s
            if per_camera:
                groups.setdefault((start, person.camera), []).append(person)
            if across:
                groups.setdefault((start, ALL_CAMERAS), []).append(person)
        return [_row(start, window_s, camera, people) for (start, camera), people in sorted(groups.items())]

    def totals(self) -> list[dict[str, Any]]:
        """One row per camera and one over all cameras (``camera: all``) for the whole period: ``window_start`` is
        the first arrival and ``window_s`` the time from it to the last person's departure."""
        by_camera: dict[str, list[Person]] = {}
        for person in self.people.values():
            by_camera.setdefault(person.camera, []).append(person)
        if by_camera:
            by_camera[ALL_CAMERAS] = list(self.people.values())
        rows = []
        for camera, people in sorted(by_camera.items()):
            start = min(p.first for p in people)
            rows.append(_row(start, round(max(p.last for p in people) - start, 3), camera, people))
        return rows


def _row(start: float, window_s: float, camera: str, people: list[Person]) -> dict[str, Any]:
    labelled = [p for p in people if p.age_group is not None]
    undecided = sum(p.age_undecided for p in people)
    estimating = len(people) - len(labelled) - undecided
    dwell = [d for p in people if (d := p.dwell_s) is not None]
    row: dict[str, Any] = {
        "window_start": datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
        "window_s": window_s,
        "camera": camera,
        "people": len(people),
        "labelled": len(labelled),
        "estimating": estimating,
        "estimating_share": round(estimating / len(people), 4),
        "age_undecided": undecided,
    }
    for group, column in zip(AGE_GROUPS, AGE_COLUMNS):
        row[column] = sum(p.age_group == group for p in labelled)
    # A gender can be decided while the age is not: genders are counted over everyone.
    row["female"] = sum(p.gender == "female" for p in people)
    row["male"] = sum(p.gender == "male" for p in people)
    row["gender_unknown"] = len(people) - row["female"] - row["male"]
    row["dwell_mean_s"] = round(statistics.fmean(dwell), 2) if dwell else None
    row["dwell_median_s"] = round(statistics.median(dwell), 2) if dwell else None
    return row


def table_format(path: str | Path) -> str:
    """``csv`` or ``parquet``, from the file's extension.

    Raises:
        ValueError: Another extension, or ``.parquet`` without pyarrow installed.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401 (only checks that it is there)
        except ImportError:
            raise ValueError(f"{path}: writing Parquet needs pyarrow (pip install -r requirements.txt), or give "
                             "a .csv path") from None
        return "parquet"
    raise ValueError(f"{path}: counts are written as .csv or .parquet, got {suffix or 'no extension'!r}")


def table_bytes(rows: Iterable[dict[str, Any]], fmt: str) -> bytes:
    """The rows as a CSV (header always, empty cells for None) or Parquet file."""
    rows = list(rows)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, pa.string() if c in ("window_start", "camera") else
                             pa.float64() if c in ("window_s", "estimating_share", "dwell_mean_s", "dwell_median_s")
                             else pa.int64()) for c in COLUMNS])
        table = pa.Table.from_pylist([{c: row.get(c) for c in COLUMNS} for row in rows], schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in COLUMNS})
    return text.getvalue().encode("utf-8")


def faces_from_records(records: list[dict[str, Any]]) -> Faces:
    """Faces of an events line (``face_records``): track ids and, when present, person ids (for ``observe``)."""
    n = len(records)
    faces = Faces(np.zeros((n, 4), np.float32), np.zeros(n, np.float32), np.full((n, 5, 2), np.nan, np.float32),
                  np.array([r.get("track_id") if r.get("track_id") is not None else -1 for r in records], np.int64))
    if any(r.get(PERSON_ID) is not None for r in records):
        ids = np.array([r.get(PERSON_ID) if r.get(PERSON_ID) is not None else -1 for r in records], np.int64)
        faces = faces.with_data(**{PERSON_ID: ids})
    return faces


class EventsCounter:
    """Counts people from event objects, as written to ``--events`` files or published to a broker.

    Two kinds of line are understood: the per-frame lines of ``--events`` files (``{"frame", "t", "time",
    "camera", "faces": [...]}``: each face's track is followed, and counted when the file ends with the last
    label it showed; a still's faces at once), and the person-life events of the broker outlet (``{"type":
    "end", "camera", "time", "after": {track summary}}``: counted from the summary; ``new``/``update`` lines and
    anything else are ignored).
    """

    def __init__(self, counter: PeopleCounter | None = None) -> None:
        self.counter = counter if counter is not None else PeopleCounter()
        self._labels: dict[tuple[str, int], dict[str, Any]] = {}
        self.lines = 0

    def add(self, event: dict[str, Any]) -> None:
        """Count one event object (a parsed JSON line)."""
        self.lines += 1
        camera = str(event.get("camera") or event.get("source") or "")
        when = event.get("time", event.get("t"))
        if event.get("type") == "end" and isinstance(event.get("after"), dict):
            self.counter.end(camera, event["after"], when=float(when) if when is not None else None)
            return
        faces = event.get("faces")
        if not isinstance(faces, list) or when is None:
            return
        if "image" in event:
            for face in faces:
                if face.get("track_id") is not None:
                    self.counter.end(camera, {**face, "image": event["image"]}, when=float(when))
            return
        self.counter.observe(camera, float(when), faces_from_records(faces))
        for face in faces:
            if face.get("track_id") is None:
                continue
            # The last label the track showed once it had one (a decided group, a range, age?, a gender alone).
            labelled = face.get("age_group_probs") is not None or face.get("p_female") is not None
            if labelled or (camera, face["track_id"]) not in self._labels:
                self._labels[(camera, int(face["track_id"]))] = face

    def finish(self) -> PeopleCounter:
        """End the tracks still followed (the file ended) with the last label each showed; the counter."""
        for (camera, track_id), face in self._labels.items():
            self.counter.end(camera, {**face, "track_id": track_id})
        self._labels = {}
        return self.counter
