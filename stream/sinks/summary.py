"""The run's summary: one JSON file with every track's fused label and the totals, written when the run ends.

It is a sink like the others: it counts the frames it is given and collects the summaries of the tracks that
end (``Sink.end_tracks``), so it sees exactly what the other outputs saw, also on Ctrl-C. The file is replaced
in one step (see :func:`~stream.sinks.base.write_atomically`), so it is never left half-written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from stream.analytics import Totals
from stream.config import SinkOptions
from stream.counts import FrameClock, PeopleCounter
from stream.sinks.base import Sink, SinkContext, prepare_output_file, write_atomically
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)


class SummarySink(Sink, kind="summary"):
    """Write ``{"source", "frames", "seconds", "fps", "totals", "tracks", "counts", "cameras"}`` to a JSON file.

    ``counts`` is the people per ``output.counts_window_s`` window, per camera and over all cameras, by age
    group and gender, with dwell times (:mod:`stream.counts`). ``cameras`` has one entry per camera seen
    (``{"source", "frames", "totals"}``, by ``Frame.camera``), and every track summary names its camera, so one
    summary can serve several cameras (``python -m stream`` with many sources) with the totals over all of them
    and per camera.

    Args:
        path: The ``.json`` file (checked writable now, before any processing).
        options: Accepted for a uniform constructor.
        source_name: The source's display name, recorded in the file.

    Raises:
        SinkError: The path cannot be written.
    """

    @classmethod
    def open(cls, target: str, context: SinkContext) -> SummarySink:
        return cls(target, context.options, source_name=context.source_name)  # the camera comes with the frames

    def __init__(self, path: str | os.PathLike[str], options: SinkOptions | None = None, *,
                 source_name: str = "") -> None:
        super().__init__()
        existed = os.path.lexists(os.path.expanduser(os.fspath(path)))
        self.path = prepare_output_file(path, "summary output")
        self._probe = not existed  # an empty probe file this run created is removed if nothing is written
        self.source_name = source_name
        self.options = options if options is not None else SinkOptions()
        self.counter = PeopleCounter()
        self._clock = FrameClock()
        self.frames = 0
        self.tracks: list[dict[str, Any]] = []
        self.totals = Totals()
        self._cameras: dict[str, dict[str, Any]] = {}
        self._started: float | None = None
        self._skipped: dict[str, int] = {}  # inputs each camera's source could not read and skipped

    @property
    def shows_image(self) -> bool:
        return False

    def write(self, frame: Frame, faces: Faces) -> None:
        self._check_open()
        if self._started is None:
            self._started = time.perf_counter()
        self.frames += 1
        self.source_name = self.source_name or frame.source
        if frame.camera:
            self._camera(frame.camera, frame.source)["frames"] += 1
        self.counter.observe(frame.camera, self._clock.time(frame), faces)

    def _camera(self, name: str, source: str = "") -> dict[str, Any]:
        entry = self._cameras.get(name)
        if entry is None:
            entry = self._cameras[name] = {"source": source, "frames": 0, "totals": Totals()}
        return entry

    def end_tracks(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.totals.add(record)
            if record.get("camera"):
                self._camera(record["camera"])["totals"].add(record)
            self.counter.end(record.get("camera", ""), record)
        self.tracks.extend(records)

    def end_source(self, camera: str, inputs_skipped: int) -> None:
        self._skipped[camera] = inputs_skipped

    def _close(self) -> None:
        if self.frames == 0:
            # Nothing ran (e.g. a model failed to load): keep an earlier file as it was, drop our empty probe.
            if self._probe:
                self.path.unlink(missing_ok=True)
            return
        seconds = time.perf_counter() - self._started if self._started is not None else 0.0
        sources = list(dict.fromkeys(entry["source"] for entry in self._cameras.values() if entry["source"]))
        source = "; ".join(sources) if len(sources) > 1 else self.source_name
        payload = {"source": source, "frames": self.frames, "seconds": round(seconds, 3),
                   "fps": round(self.frames / seconds, 2) if seconds > 0 else 0.0,
                   "inputs_skipped": sum(self._skipped.values()), "totals": self.totals.as_dict(),
                   "tracks": self.tracks,
                   "counts": {"window_s": self.options.counts_window_s,
                              "rows": self.counter.rows(self.options.counts_window_s),
                              "totals": self.counter.totals()}}
        if self._cameras:
            payload["cameras"] = {name: {**entry, "totals": entry["totals"].as_dict()}
                                  for name, entry in self._cameras.items()}
        write_atomically(self.path, json.dumps(payload, indent=1, allow_nan=False) + "\n", "summary output")
        logger.info("summary %s: %d tracks", self.path, len(self.tracks))
