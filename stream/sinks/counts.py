"""People per time window as a table: ``--counts counts.csv`` (or ``.parquet``), by camera and over all cameras.

The table (:data:`stream.counts.COLUMNS`) is rewritten in one step (:func:`~stream.sinks.base.write_atomically`)
whenever a window of ``output.counts_window_s`` has passed on the wall clock, and at the end, so a long live
run always has a complete, readable file: ``pandas.read_csv("counts.csv")`` or ``pandas.read_parquet(...)``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from stream.config import SinkOptions
from stream.counts import FrameClock, PeopleCounter, table_bytes, table_format
from stream.sinks.base import Sink, SinkError, prepare_output_file, write_atomically
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)


class CountsSink(Sink, kind="counts"):
    """Count people per window (:class:`stream.counts.PeopleCounter`) and write the table.

    Args:
        path: A ``.csv`` or ``.parquet`` file (checked writable now, before any processing).
        options: The ``output:`` section (``counts_window_s``).

    Raises:
        SinkError: Another extension, Parquet without pyarrow, or a path that cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str], options: SinkOptions | None = None) -> None:
        super().__init__()
        try:
            self.format = table_format(os.fspath(path))
        except ValueError as error:
            raise SinkError(f"--counts {error}") from None
        existed = os.path.lexists(os.path.expanduser(os.fspath(path)))
        self.path = prepare_output_file(path, "counts output")
        self._probe = not existed
        self.options = options if options is not None else SinkOptions()
        self.window_s = self.options.counts_window_s
        self.counter = PeopleCounter()
        self._clock = FrameClock()
        self._frames = 0
        self._next_write = time.monotonic() + self.window_s

    @property
    def shows_image(self) -> bool:
        return False

    def write(self, frame: Frame, faces: Faces) -> None:
        self._check_open()
        self._frames += 1
        self.counter.observe(frame.camera, self._clock.time(frame), faces)
        if time.monotonic() >= self._next_write:
            self._write_table()

    def end_tracks(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.counter.end(record.get("camera", ""), record)

    def _write_table(self) -> None:
        self._next_write = time.monotonic() + self.window_s
        write_atomically(self.path, table_bytes(self.counter.rows(self.window_s), self.format), "counts output")

    def _close(self) -> None:
        if self._frames == 0:
            if self._probe:
                self.path.unlink(missing_ok=True)
            return
        self._write_table()
        logger.info("counts %s: %d people", self.path, len(self.counter.people))
