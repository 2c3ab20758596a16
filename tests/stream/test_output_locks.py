"""Advisory output locks (stream.sinks.locks) and the events file's complete-line guarantee, in-process."""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import numpy as np
import pytest

from stream.sinks import EventsSink, SinkError
from stream.sinks.locks import OutputLock
from stream.types import Faces, Frame


def test_a_locked_path_is_refused_until_released(tmp_path: Path) -> None:
    target = tmp_path / "e.jsonl"
    first = OutputLock("--events", target).acquire()
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with pytest.raises(SinkError, match=rf"being written by another run \(pid {os.getpid()}\)"):
        OutputLock("--events", link).acquire()
    first.release()
    assert not (tmp_path / ".e.jsonl.lock").exists()
    OutputLock("--events", link).acquire().release()


def test_an_existing_file_is_locked_through_its_hard_links(tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"x")
    os.link(target, tmp_path / "hard.mp4")
    held = OutputLock("--output", target).acquire()
    try:
        with pytest.raises(SinkError, match="being written by another run"):
            OutputLock("--output", tmp_path / "hard.mp4").acquire()
    finally:
        held.release()


def test_events_file_over_its_size_limit_ends_on_a_complete_line(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes a write fail part-way, as a full disk does; the sink truncates back to the last line.
    path = tmp_path / "e.jsonl"
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    sink = EventsSink(path)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
    try:
        with pytest.raises(SinkError, match="complete frame lines"):
            for i in range(100):
                sink.write(Frame(i, i / 30, np.zeros((4, 4, 3), np.uint8), "x" * 40), Faces.empty())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
        sink.close()
    data = path.read_bytes()
    assert data.endswith(b"\n") and 0 < len(data) <= 1000
    assert data.count(b"\n") == sink.frames_written
