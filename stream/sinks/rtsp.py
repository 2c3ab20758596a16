"""Push the annotated video as H.264 to an RTSP server (e.g. MediaMTX) with PyAV, from a child process.

Network trouble must never stop the analysis, and a receiver that accepts the connection and then says
nothing must not freeze the process: PyAV writes the RTSP header (the ANNOUNCE/SETUP/RECORD handshake)
holding the GIL and without any timeout, so in-process even a background thread would stop every other
thread, the frame loop and the signal handlers included. Encoding and sending therefore run in a child
*process* (:func:`_publish_main`, one per connection); :meth:`RtspSink.write` only leaves the
newest frame in a one-frame mailbox that a feeder thread writes to the child's stdin, and never waits.
The parent watches the child: one that has not taken a frame for ``rtsp_timeout_s`` (stalled in a
connect, handshake or send) is killed and restarted with a capped exponential backoff, as is one whose
connection failed. On close the child gets ``_CLOSE_TIMEOUT_S`` to flush, then it is killed, so closing is
bounded whatever the network does. The child runs in its own session, so a terminal's Ctrl-C reaches the
parent alone, and dies with the parent (stdin EOF, and ``PR_SET_PDEATHSIG`` on Linux for a kill -9).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import numpy as np

from stream.config import SinkOptions
from stream.redact import SecretFilter, redact_url, scrub
from stream.sinks.base import Sink, SinkError, fit_to_size, pad_to_even
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

RTSP_SCHEMES: tuple[str, ...] = ("rtsp://", "rtsps://")
# First wait after a failed connection; it doubles up to options.rtsp_reconnect_max_s.
_FIRST_BACKOFF_S = 0.5
# How long close() lets the child flush before killing it.
_CLOSE_TIMEOUT_S = 2.0
# A fresh interpreter imports PyAV, OpenCV and numpy first; on a busy machine that takes seconds.
_STARTUP_GRACE_S = 20.0
# One frame on the child's stdin: slot (pts), width, height, then height * width * 3 bytes of BGR.
_HEADER = struct.Struct("<qII")
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD_COMMAND = "import sys; from stream.sinks.rtsp import _publish_main; sys.exit(_publish_main())"


def is_rtsp_url(output: str) -> bool:
    """Whether ``output`` names an RTSP destination (``rtsp://`` or ``rtsps://``, any case)."""
    return output.lower().startswith(RTSP_SCHEMES)


class _Publisher:
    """One publisher child process, its feeder thread (mailbox → stdin) and its status reader thread."""

    def __init__(self, url: str, options: SinkOptions, log_level: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, env.get("PYTHONPATH", "")]))
        # The URL travels in the environment, never on the command line (ps shows argv to every user).
        env["STREAM_RTSP_PUBLISH"] = json.dumps({"url": url, "options": asdict(options), "log_level": log_level})
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, start_new_session=True, close_fds=True,
        )
        self.ready = False
        self.connected = False
        self.sent = 0
        self.reason = ""
        self.busy_since: float | None = None  # when the feeder began writing the frame in flight
        self._mailbox: tuple[np.ndarray, int] | None = None
        self._stopping = False
        self._cond = threading.Condition()
        self._feeder = threading.Thread(target=self._feed, name="rtsp-feeder", daemon=True)
        self._reader = threading.Thread(target=self._read_status, name="rtsp-status", daemon=True)
        self._feeder.start()
        self._reader.start()

    def offer(self, image: np.ndarray, slot: int) -> None:
        """Leave a frame for the child, replacing one it has not taken yet."""
        with self._cond:
            self._mailbox = (image, slot)
            self._cond.notify()

    def _feed(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while True:
                with self._cond:
                    while self._mailbox is None and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        break
                    image, slot = self._mailbox  # type: ignore[misc]
                    self._mailbox = None
                    self.busy_since = time.monotonic()
                # Blocking writes here release the GIL: a stalled child stalls only this thread.
                stdin.write(_HEADER.pack(slot, image.shape[1], image.shape[0]))
                stdin.write(np.ascontiguousarray(image).data)
                stdin.flush()
                self.busy_since = None
        except (OSError, ValueError):
            pass  # the child is gone; the parent notices through poll()
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()  # EOF: the child flushes and exits

    def _read_status(self) -> None:
        stdout: IO[bytes] | None = self.process.stdout
        assert stdout is not None
        for raw in stdout:
            word, _, rest = raw.decode("utf-8", "replace").rstrip("\n").partition(" ")
            if word == "ready":
                self.ready = True
            elif word == "connected":
                self.connected = True
            elif word == "sent":
                self.sent += 1
            elif word == "failed":
                self.reason = rest

    def stop(self, grace_s: float) -> None:
        """Ask the child to flush and exit; kill it after ``grace_s``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()  # SIGKILL: it may be stuck in C code that holds its GIL
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2.0)
        self._reader.join(1.0)
        with contextlib.suppress(OSError):
            if self.process.stdout is not None:
                self.process.stdout.close()


class RtspSink(Sink, kind="rtsp"):
    """Publish annotated frames to ``rtsp://HOST:PORT/PATH`` as low-latency H.264.

    Timestamps follow the wall clock: a frame written ``t`` seconds after the sink was
    opened gets pts ``round(t * rtsp_fps)`` in a ``1/rtsp_fps`` time base, so the stream
    plays in real time; frames arriving faster than ``rtsp_fps`` are dropped. libx264 runs
    with preset ultrafast, tune zerolatency and a keyframe every second (gop = fps), so a
    viewer joining late waits at most a second.

    The stream has the size of the first frame (padded to even sides); frames of another size are
    letterboxed into it. After a reconnection the new stream's pts restart from 0.

    Args:
        url: ``rtsp://`` or ``rtsps://`` URL to publish to (credentials allowed; logs hide them).
        options: Supplies ``rtsp_fps``, ``rtsp_reconnect_max_s``, ``rtsp_timeout_s``, ``rtsp_transport``
            and ``video_crf``.

    Raises:
        ValueError: ``url`` is not an RTSP URL.
    """

    def __init__(self, url: str, options: SinkOptions | None = None) -> None:
        super().__init__()
        if not isinstance(url, str) or not is_rtsp_url(url):
            raise ValueError(f"url must start with rtsp:// or rtsps://, got {redact_url(str(url))!r}")
        if not urlsplit(url).hostname:
            # The publisher would retry a server that cannot exist for the whole run: a typo, said at once.
            raise SinkError(f"--output {redact_url(url)!r} names no server; give rtsp://HOST[:PORT]/PATH")
        self.url = url
        self.display_url = redact_url(url)
        SecretFilter.add_url(url)
        self.options = options if options is not None else SinkOptions()
        self.rate = Fraction(self.options.rtsp_fps).limit_denominator(1001)
        self._clock_start = time.monotonic()
        self._last_slot = -1
        self._size = (0, 0)  # (width, height) of the first frame, before padding
        self._publisher: _Publisher | None = None
        self._attempts = 0
        self._failures = 0
        self._sent_before = 0  # frames sent by earlier publishers
        self._written = 0
        self._backoff_s = min(_FIRST_BACKOFF_S, self.options.rtsp_reconnect_max_s)
        self._next_start = 0.0
        self._warned = False
        self._was_connected = False
        self._ever_connected = False
        # Started now, so the child's imports overlap the models loading; it connects on the first frame.
        self._start()

    def _start(self) -> None:
        self._attempts += 1
        self._publisher = _Publisher(self.url, self.options, logging.getLogger().getEffectiveLevel())

    @property
    def connected(self) -> bool:
        """Whether the publisher reports a working connection."""
        return self._publisher is not None and self._publisher.connected

    @property
    def connection_attempts(self) -> int:
        """Publisher processes started so far (one connection each, successful or not)."""
        return self._attempts

    @property
    def failures(self) -> int:
        """Failed, lost or stalled connections so far."""
        return self._failures

    @property
    def frames_sent(self) -> int:
        """Frames encoded and sent to the server."""
        return self._sent_before + (self._publisher.sent if self._publisher is not None else 0)

    @property
    def frames_dropped(self) -> int:
        """Frames written but not sent (yet): over the frame rate, superseded by a newer one, lost with a
        connection, or while disconnected."""
        return self._written - self.frames_sent

    def write(self, frame: Frame, faces: Faces) -> None:
        """Offer the frame to the publisher process; returns at once, never raises for network errors.

        Args:
            frame: The frame; ``frame.image`` is ``(H, W, 3)`` uint8 BGR.
            faces: Unused (the annotations are already drawn).
        """
        self._check_open()
        self._written += 1
        now = time.monotonic()
        slot = round((now - self._clock_start) * self.rate)
        if slot <= self._last_slot:
            return  # faster than rtsp_fps
        self._last_slot = slot
        if self._size == (0, 0):
            self._size = (int(frame.image.shape[1]), int(frame.image.shape[0]))
        self._watch(now)
        if self._publisher is None:
            if now < self._next_start:
                return  # waiting to reconnect
            self._start()
        assert self._publisher is not None
        # A copy (fit/pad may return the same array): the pipeline may reuse the image once write() returns.
        image = np.array(pad_to_even(fit_to_size(frame.image, *self._size)))
        # A frame the child has not taken yet is replaced: only the newest frame matters live.
        self._publisher.offer(image, slot)

    def _watch(self, now: float) -> None:
        """Restart a publisher that failed, or that has not taken a frame for ``rtsp_timeout_s``."""
        publisher = self._publisher
        if publisher is None:
            return
        if publisher.connected and not self._was_connected:
            self._was_connected = self._ever_connected = True
            self._warned = False
            self._backoff_s = min(_FIRST_BACKOFF_S, self.options.rtsp_reconnect_max_s)
        timeout_s = self.options.rtsp_timeout_s
        busy_since = publisher.busy_since
        reason = ""
        if publisher.process.poll() is not None:
            reason = publisher.reason or f"the publisher process ended (exit code {publisher.process.returncode})"
        elif not publisher.ready:
            if now - publisher.started_at > _STARTUP_GRACE_S + timeout_s:
                reason = "the publisher process did not start"
        elif busy_since is not None and now - busy_since > timeout_s:
            reason = f"no progress for output.rtsp_timeout_s={timeout_s:g} s (the server does not answer)"
        if not reason:
            return
        self._retire(0.0)
        self._failures += 1
        if not self._warned:
            what = "lost the connection to" if self._was_connected else "cannot publish to"
            logger.warning("RTSP output %s: %s the server (%s); dropping frames and retrying with backoff up to "
                           "%.1f s", self.display_url, what, scrub(reason, self.url),
                           self.options.rtsp_reconnect_max_s)
            self._warned = True
        else:
            logger.debug("RTSP output %s: attempt failed: %s", self.display_url, scrub(reason, self.url))
        self._was_connected = False
        self._next_start = now + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.options.rtsp_reconnect_max_s)

    def _retire(self, grace_s: float) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.stop(grace_s)
            self._sent_before += publisher.sent
            self._ever_connected |= publisher.connected

    def _close(self) -> None:
        self._retire(_CLOSE_TIMEOUT_S)
        if not self._ever_connected and not self._warned:
            logger.warning("RTSP output %s: never connected to the server", self.display_url)
        logger.info("RTSP output %s: %d frames sent, %d dropped", self.display_url, self.frames_sent,
                    self.frames_dropped)


# --------------------------------------------------------------------------------------------------
# The child process: :func:`_publish_main`, with its settings in STREAM_RTSP_PUBLISH
# --------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Make the kernel kill this child when the parent dies (Linux), even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _publish_main() -> int:
    """Child process: encode the frames read from stdin and send them to the URL; one connection.

    Prints ``ready``, ``connected``, ``sent`` and ``failed REASON`` lines on stdout for the parent. Ends at
    stdin's EOF (flushing the encoder) or at the first network error; the parent decides about reconnecting.
    """
    _die_with_parent()
    settings = json.loads(os.environ.pop("STREAM_RTSP_PUBLISH"))
    url: str = settings["url"]
    options = SinkOptions(**settings["options"])
    logging.basicConfig(level=settings["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    SecretFilter.install()
    SecretFilter.add_url(url)
    import av
    import av.error
    import cv2

    stdin, out = sys.stdin.buffer, sys.stdout

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    display_url = redact_url(url)
    rate = Fraction(options.rtsp_fps).limit_denominator(1001)
    gop = max(1, round(rate))
    container: Any = None
    stream: Any = None
    first_slot = 0
    say("ready")
    try:
        while True:
            header = _read_exactly(stdin, _HEADER.size)
            if header is None:
                break
            slot, width, height = _HEADER.unpack(header)
            data = _read_exactly(stdin, width * height * 3)
            if data is None:
                break
            image = np.frombuffer(data, np.uint8).reshape(height, width, 3)
            if container is None:
                container = av.open(url, mode="w", format="rtsp",
                                    container_options={"rtsp_transport": options.rtsp_transport})
                stream = container.add_stream("libx264", rate=rate, options={
                    "preset": "ultrafast", "tune": "zerolatency", "crf": str(options.video_crf),
                    # Keyframe every second and no scene-cut keyframes in between.
                    "g": str(gop), "keyint_min": str(gop)})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.time_base = 1 / rate
                stream.codec_context.gop_size = gop
                first_slot = slot
            yuv = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
            video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            video_frame.pts = slot - first_slot
            video_frame.time_base = stream.codec_context.time_base
            # The first mux writes the header: that is when the server is contacted.
            container.mux(stream.encode(video_frame))
            if slot == first_slot:
                logger.info("RTSP output %s: publishing %dx%d at %s fps", display_url, width, height, rate)
                say("connected")
            say("sent")
        if container is not None:
            container.mux(stream.encode(None))
    except Exception as err:  # noqa: BLE001 - any failure ends this connection; the parent reports it
        say("failed " + " ".join(scrub(str(err), url).split()))
        return 1
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
    return 0

