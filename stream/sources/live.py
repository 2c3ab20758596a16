"""Live sources: a grabber thread keeping the newest frame, reconnection with backoff.

Live sources (webcam, RTSP, HTTP/HLS) are read by a grabber thread that keeps only the newest frame:
a slow consumer gets the latest picture, never a backlog, and the frames it missed are counted in
``frames_dropped``. The grabber reconnects with capped exponential backoff on read failure or a stalled
stream, and gives up with :class:`SourceError` after ``give_up_after_s``. The captures it reads
(OpenCV for webcams, PyAV for network streams) are in :mod:`stream.sources.captures`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import av.error
import cv2
import numpy as np

from stream.config import SourceOptions
from stream.redact import scrub as _scrub
from stream.sources.base import _POLL_S, CaptureFactory, CaptureLike, ReaderThread, Source, SourceError
from stream.sources.captures import _ConnectError, _PyAVStreamCapture, _to_bgr
from stream.types import Frame

# One logger for the whole package: log lines keep the name ``stream.sources`` whichever module writes them.
logger = logging.getLogger("stream.sources")


class _Grabber:
    """Owns a live capture and the thread that reads it; shares only the newest frame.

    It never references the :class:`LiveSource`, so an abandoned source can be collected and its
    finalizer stops the thread.
    """

    def __init__(
        self,
        spec: Any,
        name: str,
        kind: str,
        factory: CaptureFactory,
        options: SourceOptions,
    ) -> None:
        self.spec = spec
        self.name = name
        self.kind = kind
        self.factory = factory
        self.options = options
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.latest: tuple[int, float, Any] | None = None  # (index, timestamp, payload), guarded by cond
        self.error: SourceError | None = None
        self.started = False  # first frame delivered
        self.fps: float | None = None
        self.frames_read = 0
        self.frames_dropped = 0
        self.outages = 0
        self.last_frame_at = time.monotonic()
        self.t0 = time.monotonic()
        self.thread = ReaderThread(self._run, name=f"grabber:{name}")

    # -- connection ---------------------------------------------------------------------------------
    def _connect(self) -> CaptureLike:
        try:
            capture = self.factory(self.spec)
        except _ConnectError:
            raise
        except SourceError as exc:
            raise _ConnectError(str(exc)) from exc
        except (cv2.error, OSError, av.error.FFmpegError, RuntimeError, ValueError) as exc:
            raise _ConnectError(_scrub(str(exc), str(self.spec))) from exc
        if not capture.isOpened():
            capture.release()
            if self.kind == "webcam" and isinstance(self.spec, int):
                raise _ConnectError(f"no camera at index {self.spec} (is a webcam connected? try another --source)")
            if self.kind == "webcam":
                raise _ConnectError(f"cannot open camera {self.spec} (is it connected and not in use?)")
            raise _ConnectError("the capture backend could not open it (check the URL)")
        return capture

    def _read(self, capture: Any) -> Any:
        """One frame's payload (av.VideoFrame or ndarray), or None on failure."""
        # Captures with read_frame() (PyAV's) hand over undecoded-to-BGR frames: only delivered ones are converted.
        if isinstance(capture, _PyAVStreamCapture) or callable(getattr(capture, "read_frame", None)):
            return capture.read_frame()
        try:
            ok, image = capture.read()
        except cv2.error:
            return None
        return image if ok and image is not None else None

    @staticmethod
    def _describe_failure(capture: Any) -> str:
        reason = getattr(capture, "last_error", "")
        return reason or "read failed (camera unplugged, in use, or stream ended?)"

    # -- thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        options = self.options
        capture: Any = None
        delay = options.reconnect_initial_s
        outage_since: float | None = None  # monotonic start of the current outage (or of waiting at start)
        attempts = 0
        try:
            while not self.stop.is_set():
                if capture is None:
                    try:
                        capture = self._connect()
                        if self.fps is None:
                            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
                            self.fps = fps if fps > 0 and math.isfinite(fps) else None
                    except _ConnectError as exc:
                        attempts += 1
                        now = time.monotonic()
                        message = f"cannot open {self.kind} '{self.name}': {exc}"
                        if exc.fatal or (not self.started and not options.wait_for_source):
                            self._fail(SourceError(message))
                            return
                        if outage_since is None:
                            outage_since = now
                            logger.warning("%s; retrying with backoff for up to %g s", message, options.give_up_after_s)
                        else:
                            logger.debug("%s (attempt %d)", message, attempts)
                        down_for = now - outage_since
                        if down_for >= options.give_up_after_s:
                            self._fail(
                                SourceError(
                                    f"{self.kind} '{self.name}' unavailable for {down_for:.0f} s, giving up "
                                    f"(last error: {exc}; raise source.give_up_after_s to wait longer)"
                                )
                            )
                            return
                        self.stop.wait(min(delay, options.give_up_after_s - down_for))
                        delay = min(delay * 2, options.reconnect_max_s)
                        continue
                payload = self._read(capture)
                now = time.monotonic()
                if payload is None:
                    failure = self._describe_failure(capture)
                    self._release(capture)
                    capture = None
                    if not self.started and not options.wait_for_source:
                        self._fail(SourceError(f"{self.kind} '{self.name}' opened but delivered no frame: {failure}"))
                        return
                    if outage_since is None:
                        outage_since = now
                        attempts = 0
                        self.outages += int(self.started)
                        logger.warning(
                            "%s '%s' lost: %s; reconnecting (giving up after %g s)",
                            self.kind,
                            self.name,
                            failure,
                            options.give_up_after_s,
                        )
                    if now - outage_since >= options.give_up_after_s:
                        self._fail(
                            SourceError(
                                f"{self.kind} '{self.name}' unavailable for {now - outage_since:.0f} s, giving up "
                                "(raise source.give_up_after_s to wait longer)"
                            )
                        )
                        return
                    self.stop.wait(delay)
                    delay = min(delay * 2, options.reconnect_max_s)
                    continue
                if outage_since is not None:
                    if self.started:
                        logger.info(
                            "%s '%s' back after %.1f s outage (%d reconnection attempt(s))",
                            self.kind,
                            self.name,
                            now - outage_since,
                            attempts + 1,
                        )
                    else:
                        logger.info("%s '%s' available after %.1f s", self.kind, self.name, now - outage_since)
                    outage_since = None
                    attempts = 0
                delay = options.reconnect_initial_s
                self._publish(payload, now)
        finally:
            if capture is not None:
                self._release(capture)
            with self.cond:
                self.cond.notify_all()

    def _publish(self, payload: Any, now: float) -> None:
        with self.cond:
            if self.latest is not None:
                self.frames_dropped += 1  # the consumer did not take the previous one in time
            self.latest = (self.frames_read, now - self.t0, payload)
            self.frames_read += 1
            self.last_frame_at = now
            self.started = True
            self.cond.notify_all()

    def _fail(self, error: SourceError) -> None:
        with self.cond:
            self.error = error
            self.cond.notify_all()

    @staticmethod
    def _release(capture: Any) -> None:
        try:
            capture.release()
        except (cv2.error, OSError, av.error.FFmpegError):
            logger.debug("release() of a capture failed", exc_info=True)


#: The image of a frame read with ``pixels=False``: no rows, no columns (a valid, empty BGR image).
NO_PIXELS = np.empty((0, 0, 3), np.uint8)
NO_PIXELS.flags.writeable = False


class LiveSource(Source):
    """A webcam or network stream read by a grabber thread that keeps only the newest frame.

    ``next()`` returns the newest frame not yet returned, waiting for one if needed; during an outage
    it waits while the grabber reconnects, and raises :class:`SourceError` once the source has been down
    for ``give_up_after_s``. Frame indices count every frame read, so they skip the dropped ones.
    Timestamps are seconds since open (wall clock).
    """

    is_live = True

    def __init__(self, spec: Any, name: str, kind: str, factory: CaptureFactory, options: SourceOptions) -> None:
        super().__init__(name, fps=None, frame_count=None)
        self.kind = kind
        self._options = options
        self._grabber = _Grabber(spec, name, kind, factory, options)
        self._finalizer = weakref.finalize(self, self._grabber.stop.set)
        self._grabber.thread.start()
        try:
            self._wait_started()
        except BaseException:  # also KeyboardInterrupt while waiting: stop the thread, then re-raise
            self.close()
            raise
        self.fps = self._grabber.fps
        logger.info("opened %s '%s' (%s fps)", kind, name, f"{self.fps:.3g}" if self.fps else "?")

    def _wait_started(self) -> None:
        grabber = self._grabber
        options = self._options
        limit = options.open_timeout_s
        if options.wait_for_source:
            limit = options.give_up_after_s + options.open_timeout_s + options.read_timeout_s
        deadline = time.monotonic() + limit
        with grabber.cond:
            while not grabber.started and grabber.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(
                        f"cannot open {self.kind} '{self.name}': no frame within open_timeout_s="
                        f"{options.open_timeout_s:g} s (is it reachable? raise source.open_timeout_s for slow links)"
                    )
                if grabber.thread.finished.is_set() and grabber.error is None:
                    raise SourceError(f"cannot open {self.kind} '{self.name}': the grabber thread died unexpectedly")
                grabber.cond.wait(min(remaining, _POLL_S))
            if grabber.error is not None:
                raise grabber.error

    @property
    def frames_dropped(self) -> int:
        """Frames the grabber read that were replaced by a newer one before the consumer took them."""
        return self._grabber.frames_dropped

    @property
    def outages(self) -> int:
        """Number of times the source was lost after it had started."""
        return self._grabber.outages

    @property
    def status(self) -> str:
        """``live``, ``reconnecting`` (no frame for ``read_timeout_s``: lost or stalled, being retried) or
        ``offline`` (closed, or gave up)."""
        grabber = self._grabber
        if self._closed or grabber.error is not None:
            return "offline"
        if time.monotonic() - grabber.last_frame_at > self._options.read_timeout_s:
            return "reconnecting"
        return "live"

    def read(self, timeout_s: float | None = None, *, pixels: bool = True) -> Frame | None:
        """The newest frame not returned yet, waiting at most ``timeout_s`` (None: until one comes).

        Args:
            timeout_s: Longest wait.
            pixels: False: the frame's picture is not converted and ``image`` is :data:`NO_PIXELS`
                (``(0, 0, 3)``): for a consumer that needs only its index and time (a frame between
                detections with no output that shows images): the conversion is skipped.

        Returns:
            A :class:`Frame`, or None when ``timeout_s`` passed without a new frame or the source is
            closed.

        Raises:
            SourceError: The source gave up (down for ``give_up_after_s``).
        """
        read = self.read_unconverted(timeout_s)
        if read is None:
            return None
        frame, convert = read
        # Converted outside the lock and only for frames that are delivered.
        return dataclasses.replace(frame, image=convert()) if pixels else frame

    def read_unconverted(self, timeout_s: float | None = None) -> tuple[Frame, Callable[[], np.ndarray]] | None:
        """As :meth:`read` with ``pixels=False``, plus a function that converts the frame's picture when called.

        For a consumer serving several cameras (:mod:`stream.cameras`): it takes every camera's frame in its own
        thread and converts them in parallel worker threads (the conversion runs in FFmpeg's swscale, which
        releases the GIL). The function may be called once, from any thread.

        Returns:
            ``(frame, convert)`` (``frame.image`` is :data:`NO_PIXELS`), or None as :meth:`read`.

        Raises:
            SourceError: As :meth:`read`.
        """
        grabber = self._grabber
        options = self._options
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with grabber.cond:
            while grabber.latest is None and grabber.error is None and not self._closed:
                now = time.monotonic()
                # Backstop for a backend whose read() hangs despite its timeouts: the grabber cannot
                # notice it is stuck, so the consumer enforces the give-up bound itself.
                hung_for = now - grabber.last_frame_at
                if hung_for > options.read_timeout_s + options.open_timeout_s + options.give_up_after_s + 2.0:
                    grabber.error = SourceError(
                        f"{self.kind} '{self.name}' stopped responding {hung_for:.0f} s ago, giving up "
                        "(the capture backend hangs; check the camera/driver)"
                    )
                    break
                if grabber.thread.finished.is_set():
                    # Only close() and _fail() end the thread normally; anything else is a bug or a
                    # capture_factory raising an unexpected exception (its traceback is on stderr).
                    raise SourceError(f"{self.kind} '{self.name}': the grabber thread died unexpectedly")
                wait = _POLL_S if deadline is None else min(_POLL_S, deadline - now)
                if wait <= 0:
                    return None
                grabber.cond.wait(wait)
            if grabber.latest is None:
                if grabber.error is not None:
                    raise grabber.error
                return None  # closed
            index, timestamp, payload = grabber.latest
            grabber.latest = None
        return Frame(index=index, timestamp=timestamp, image=NO_PIXELS, source=self.name), partial(_to_bgr, payload)

    def _next_frame(self) -> Frame:
        frame = self.read(None)
        if frame is None:
            raise StopIteration
        return frame

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        grabber = self._grabber
        grabber.stop.set()
        with grabber.cond:
            grabber.cond.notify_all()
        if grabber.thread is not threading.current_thread():
            # The thread releases the capture itself; a read in flight ends within its read timeout.
            grabber.thread.wait(1.0)
