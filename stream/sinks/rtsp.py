"""Push the annotated video as H.264 to an RTSP server (e.g. MediaMTX) with PyAV.

Network trouble must never stop the analysis: encoding and sending run in a
background thread, :meth:`RtspSink.write` only hands over the newest frame (never
blocking on the network), and when the server is unreachable or goes away the sink
logs one WARNING, drops frames and reconnects with a capped exponential backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction

import av
import av.error
import cv2
import numpy as np

from stream.config import SinkOptions
from stream.sinks.base import Sink, fit_to_size, pad_to_even
from stream.sources import redact_url
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

RTSP_SCHEMES: tuple[str, ...] = ("rtsp://", "rtsps://")
# First wait after a failed connection; it doubles up to options.rtsp_reconnect_max_s.
_FIRST_BACKOFF_S = 0.5
# How long close() waits for the sender thread (a connect to a silent host can hang longer).
_CLOSE_TIMEOUT_S = 2.0


def is_rtsp_url(output: str) -> bool:
    """Whether ``output`` names an RTSP destination (``rtsp://`` or ``rtsps://``)."""
    return output.lower().startswith(RTSP_SCHEMES)


class RtspSink(Sink, kind="rtsp"):
    """Publish annotated frames to ``rtsp://HOST:PORT/PATH`` as low-latency H.264.

    Timestamps follow the wall clock: a frame written ``t`` seconds after the sink was
    opened gets pts ``round(t * rtsp_fps)`` in a ``1/rtsp_fps`` time base, so the stream
    plays in real time; frames arriving faster than ``rtsp_fps`` are dropped. libx264 runs
    with preset ultrafast, tune zerolatency and a keyframe every second (gop = fps), so a
    viewer joining late waits at most a second.

    The stream is opened for the size of the first frame sent on a connection (padded to
    even sides); frames of another size are letterboxed into it. After a reconnection the
    new stream takes the size of the current frame and its pts restart from 0.

    Args:
        url: ``rtsp://`` or ``rtsps://`` URL to publish to (credentials allowed; logs hide them).
        options: Supplies ``rtsp_fps``, ``rtsp_reconnect_max_s``, ``rtsp_transport`` and ``video_crf``.

    Raises:
        ValueError: ``url`` is not an RTSP URL.
    """

    def __init__(self, url: str, options: SinkOptions | None = None) -> None:
        super().__init__()
        if not isinstance(url, str) or not is_rtsp_url(url):
            raise ValueError(f"url must start with rtsp:// or rtsps://, got {url!r}")
        self.url = url
        self.display_url = redact_url(url)
        self.options = options if options is not None else SinkOptions()
        self.rate = Fraction(self.options.rtsp_fps).limit_denominator(1001)
        self._clock_start = time.monotonic()
        self._last_slot = -1
        # The newest frame waiting for the sender thread: (image, wall-clock slot).
        self._pending: tuple[np.ndarray, int] | None = None
        self._wakeup = threading.Condition()
        self._stop = False
        self._connected = False
        self._attempts = 0
        self._failures = 0
        self._sent = 0
        # Two counters, each written by one thread only (write() and the sender), so no lock is needed.
        self._dropped_in_write = 0
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"rtsp-push:{self.display_url}", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether the last frame sent reached the server."""
        return self._connected

    @property
    def connection_attempts(self) -> int:
        """Connections tried so far (successful or not)."""
        return self._attempts

    @property
    def failures(self) -> int:
        """Failed connection attempts and lost connections so far."""
        return self._failures

    @property
    def frames_sent(self) -> int:
        """Frames encoded and sent to the server."""
        return self._sent

    @property
    def frames_dropped(self) -> int:
        """Frames not sent: over the frame rate, superseded by a newer one, or while disconnected."""
        return self._dropped_in_write + self._dropped

    def write(self, frame: Frame, faces: Faces) -> None:
        """Hand the frame to the sender thread; returns at once, never raises for network errors.

        Args:
            frame: The frame; ``frame.image`` is ``(H, W, 3)`` uint8 BGR.
            faces: Unused (the annotations are already drawn).
        """
        self._check_open()
        slot = round((time.monotonic() - self._clock_start) * self.rate)
        if slot <= self._last_slot:
            self._dropped_in_write += 1  # faster than rtsp_fps
            return
        self._last_slot = slot
        # Copy: the pipeline may reuse the image buffer once write() returns.
        image = frame.image.copy()
        with self._wakeup:
            if self._pending is not None:
                self._dropped_in_write += 1  # the sender is behind; only the newest frame matters live
            self._pending = (image, slot)
            self._wakeup.notify()

    def _next_frame(self) -> tuple[np.ndarray, int] | None:
        with self._wakeup:
            while self._pending is None and not self._stop:
                self._wakeup.wait()
            item, self._pending = self._pending, None
            return None if self._stop else item

    def _run(self) -> None:
        # (container, stream) while connected; None while disconnected.
        link: tuple[av.container.OutputContainer, av.VideoStream] | None = None
        size = (0, 0)  # (width, height) of the connection's frames, before padding
        first_slot = 0
        backoff_s = min(_FIRST_BACKOFF_S, self.options.rtsp_reconnect_max_s)
        next_attempt = 0.0
        warned = False
        while True:
            item = self._next_frame()
            if item is None:
                break
            image, slot = item
            try:
                if link is None:
                    if time.monotonic() < next_attempt:
                        self._dropped += 1
                        continue
                    self._attempts += 1
                    size = (image.shape[1], image.shape[0])
                    first_slot = slot
                    link = self._open(size[0] + size[0] % 2, size[1] + size[1] % 2)
                container, stream = link
                fitted = pad_to_even(fit_to_size(image, size[0], size[1]))
                yuv = np.asarray(cv2.cvtColor(fitted, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
                video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                video_frame.pts = slot - first_slot
                video_frame.time_base = stream.codec_context.time_base
                # The first mux writes the header: that is when the server is contacted.
                container.mux(stream.encode(video_frame))
            except (av.error.FFmpegError, OSError) as err:
                self._failures += 1
                self._dropped += 1
                was_connected = self._connected
                self._connected = False
                if link is not None:
                    self._discard(link[0])
                link = None
                if not warned:
                    what = "lost the connection to" if was_connected else "cannot connect to"
                    logger.warning(
                        "RTSP output %s: %s the server (%s); dropping frames and retrying with backoff up to %.1f s",
                        self.display_url,
                        what,
                        # FFmpeg's message repeats the URL, password included.
                        str(err).replace(self.url, self.display_url),
                        self.options.rtsp_reconnect_max_s,
                    )
                    warned = True
                else:
                    reason = str(err).replace(self.url, self.display_url)
                    logger.debug("RTSP output %s: attempt failed: %s", self.display_url, reason)
                next_attempt = time.monotonic() + min(backoff_s, self.options.rtsp_reconnect_max_s)
                backoff_s = min(backoff_s * 2, self.options.rtsp_reconnect_max_s)
                continue
            if not self._connected:
                logger.info("RTSP output %s: publishing %dx%d at %s fps", self.display_url, size[0], size[1], self.rate)
                self._connected = True
                warned = False
                backoff_s = min(_FIRST_BACKOFF_S, self.options.rtsp_reconnect_max_s)
            self._sent += 1
        if link is not None:
            self._finish(*link)

    def _open(self, width: int, height: int) -> tuple[av.container.OutputContainer, av.VideoStream]:
        gop = max(1, round(self.rate))
        container = av.open(
            self.url,
            mode="w",
            format="rtsp",
            container_options={"rtsp_transport": self.options.rtsp_transport},
        )
        try:
            stream = container.add_stream(
                "libx264",
                rate=self.rate,
                options={
                    "preset": "ultrafast",
                    "tune": "zerolatency",
                    "crf": str(self.options.video_crf),
                    # Keyframe every second and no scene-cut keyframes in between.
                    "g": str(gop),
                    "keyint_min": str(gop),
                },
            )
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = 1 / self.rate
            stream.codec_context.gop_size = gop
        except (av.error.FFmpegError, OSError, ValueError):
            self._discard(container)
            raise
        return container, stream

    def _discard(self, container: av.container.OutputContainer | None) -> None:
        if container is None:
            return
        try:
            container.close()
        except (av.error.FFmpegError, OSError) as err:
            logger.debug("RTSP output %s: closing after an error: %s", self.display_url, err)

    def _finish(self, container: av.container.OutputContainer, stream: av.VideoStream) -> None:
        try:
            container.mux(stream.encode(None))
        except (av.error.FFmpegError, OSError) as err:
            logger.debug("RTSP output %s: flushing on close: %s", self.display_url, err)
        self._discard(container)
        self._connected = False

    def _close(self) -> None:
        with self._wakeup:
            self._stop = True
            self._wakeup.notify()
        self._thread.join(_CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            # Blocked in a connect or send; it is a daemon thread, so it cannot keep the process alive.
            logger.warning(
                "RTSP output %s: sender still blocked on the network after close; abandoning it", self.display_url
            )
        logger.info("RTSP output %s: %d frames sent, %d dropped", self.display_url, self._sent, self.frames_dropped)
