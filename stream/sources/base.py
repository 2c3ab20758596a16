"""What every source shares: :class:`SourceError`, the :class:`Source` base class, URL redaction, options.

Every source is a context manager and an iterator of :class:`stream.types.Frame` (BGR uint8 images);
:class:`CaptureLike` is the part of ``cv2.VideoCapture`` that live sources read through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, Protocol

import numpy as np

from stream.config import SourceOptions, section_values
from stream.redact import _URL_RE, SecretFilter, has_credentials, redact_url, scrub, url_secrets
from stream.types import Frame

__all__ = ["_URL_RE", "SecretFilter", "has_credentials", "redact_url", "scrub", "url_secrets"]

KINDS: tuple[str, ...] = ("webcam", "stream", "video", "image", "folder")

# The consumer polls at this period while waiting, so Ctrl-C and close() are noticed promptly.
_POLL_S = 0.2


class ReaderThread(threading.Thread):
    """A daemon thread that reads a source inside native code (FFmpeg through PyAV or OpenCV).

    Whether it is still running is kept by the thread itself (:attr:`finished`, set when its target returns)
    and never read from ``Thread.is_alive()``: on Python 3.11, a ``join(timeout)`` that a signal handler
    interrupts (Ctrl-C's KeyboardInterrupt, SIGTERM's Terminated) marks a thread that is still running as
    stopped (bpo-45274's fix releases the running thread's own lock). The CLI then let the interpreter shut
    down under a reader still blocked in FFmpeg, which crashed the process (SIGSEGV) after its outputs were
    finalized. So waits go through :meth:`wait`, an Event, which an exception interrupts harmlessly.
    """

    _lock = threading.Lock()
    _unfinished: set[ReaderThread] = set()

    def __init__(self, target: Callable[..., None], name: str, args: tuple[Any, ...] = ()) -> None:
        super().__init__(target=target, args=args, name=name, daemon=True)
        self.finished = threading.Event()

    def start(self) -> None:
        with ReaderThread._lock:  # registered before it runs, so an exit right after start() sees it
            ReaderThread._unfinished.add(self)
        try:
            super().start()
        except BaseException:
            self._finish()
            raise

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._finish()

    def _finish(self) -> None:
        self.finished.set()
        with ReaderThread._lock:
            ReaderThread._unfinished.discard(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for the target to return; True when it has (and the thread is gone)."""
        if not self.finished.wait(timeout):
            return False
        if self is not threading.current_thread():
            self.join(1.0)  # only the thread's own unwinding is left: what was read is released and closed
        return True

    @classmethod
    def unfinished(cls) -> list[str]:
        """Names of the readers whose target has not returned (blocked in native code, or still reading)."""
        with cls._lock:
            return sorted(t.name for t in cls._unfinished)


def exit_past_stuck_readers(code: int) -> int:
    """Return ``code``; but when a source's reader thread is still blocked in native code, end the process now.

    A reader blocked on a silent camera or server cannot be joined (its read ends only at ``read_timeout_s``).
    Letting the interpreter shut down under it crashes the process (SIGSEGV): PyAV's timeout callback takes
    the GIL from FFmpeg's thread after finalization. Every output is already finalized when this is called, so
    the streams are flushed and the process exits with ``code`` without running the interpreter's teardown.
    """
    stuck = ReaderThread.unfinished()
    if not stuck:
        return code
    logging.getLogger(__name__).debug("exiting past reader thread(s) still blocked: %s", ", ".join(stuck))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more can be said
            stream.flush()
    os._exit(code)


class SourceError(Exception):
    """A source cannot be opened or read; the message names the problem and what to do."""


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the live sources use (the fake-camera seam for tests)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def isOpened(self) -> bool: ...  # noqa: N802 - cv2's spelling

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[Any], CaptureLike]


class Source:
    """An open source of frames: an iterator of :class:`Frame` and a context manager.

    Attributes:
        name: Display name (credentials redacted); also ``Frame.source``.
        kind: One of ``"webcam"``, ``"stream"``, ``"video"``, ``"image"``, ``"folder"``.
        is_live: True for webcams and network streams (frames may be dropped, never queued).
        fps: Nominal frame rate, or None when unknown (stills, some streams).
        frame_count: Number of frames of a file (container metadata), None for live sources.
    """

    kind: str = ""
    is_live: bool = False

    def __init__(self, name: str, fps: float | None = None, frame_count: int | None = None) -> None:
        self.name = name
        self.fps = fps
        self.frame_count = frame_count
        self._closed = False

    @property
    def inputs_skipped(self) -> int:
        """Inputs that could not be read and were skipped (a folder's damaged images); 0 for other sources."""
        return len(getattr(self, "skipped", ()))

    @property
    def frames_dropped(self) -> int:
        """Frames read from the source but never delivered (always 0 for files)."""
        return 0

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> Frame:
        if self._closed:
            raise StopIteration
        return self._next_frame()

    def _next_frame(self) -> Frame:
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading and release the backend; idempotent. Iteration then stops."""
        self._closed = True

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, kind={self.kind!r}, fps={self.fps}, frames={self.frame_count})"


def _check_option_names(where: str, values: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(SourceOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"{where} got unknown option(s) {unknown}; valid: {sorted(known)}")


def _coerce_options(options: Any) -> SourceOptions:
    """Accept a SourceOptions (config's ``source`` section), a mapping, or another dataclass with its fields."""
    if options is None:
        return SourceOptions()
    if isinstance(options, SourceOptions):
        return options
    values = section_values(options, "SourceOptions")
    _check_option_names("options", values)
    return SourceOptions(**values)
