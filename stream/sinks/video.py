"""H.264 video file output (.mp4, .mkv, .mov, .avi) through PyAV and libx264.

The file is written at its final path. .mp4/.mov are *fragmented* (an index with every fragment, at least
every second) and .mkv is progressive by design, so even a run killed with SIGKILL leaves a file that plays
up to its last fragment; :meth:`VideoSink.close` still always runs (``__exit__``, also on Ctrl-C) and flushes
the encoder, so an interrupted run keeps every frame written so far.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from fractions import Fraction

import av
import av.error
import cv2
import numpy as np

from stream.config import SinkOptions
from stream.signals import wait_for_worker
from stream.sinks.base import Sink, SinkContext, SinkError, fit_to_size, pad_to_even, prepare_output_file
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".mov", ".avi")
# Time base of timestamp-driven (live source) outputs: milliseconds are finer than any
# camera's frame jitter. AVI is constant-rate (a 1/1000 time base would mean 1000 fps with
# empty frames in between), so there timestamps are rounded onto the 1/fps grid instead.
_TIMESTAMP_TIME_BASE = Fraction(1, 1000)
# Fragmented MP4/MOV: the index is written with every fragment (each keyframe, and at least every second)
# instead of once at the end, so a run killed outright (kill -9, power loss) leaves a file that plays up to its
# last fragment. Cost: see the VideoSink docstring.
# flush_packets: the header and each fragment reach the OS as soon as they are written, so a file killed before
# its first fragment still opens (with no frames) rather than being a 28-byte stub that nothing reads.
_FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000",
               "flush_packets": "1"}
# Matroska is progressive by design, but its muxer holds a cluster (5 s by default) and FFmpeg's 32 KB write
# buffer in memory: a run killed in its first seconds left a 0-byte .mkv. Clusters of 1 s, handed to the OS as
# each packet is written, leave one that plays up to its last second.
_MATROSKA = {"cluster_time_limit": "1000", "flush_packets": "1"}
_CONTAINER_OPTIONS: dict[str, dict[str, str]] = {".mp4": _FRAGMENTED, ".mov": _FRAGMENTED, ".mkv": _MATROSKA}


def as_frame_rate(fps: float | Fraction) -> Fraction:
    """An exact frame rate from a float or a Fraction (29.97002997 → 30000/1001).

    Args:
        fps: Frames per second, > 0.

    Returns:
        The rate as a Fraction with a small denominator.

    Raises:
        ValueError: ``fps`` is not a finite positive number.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction, np.integer, np.floating)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if isinstance(fps, Fraction):
        rate = fps
    else:
        value = float(fps)
        if not np.isfinite(value):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        # NTSC rates (x000/1001) are the common non-integer ones; 1001 as the limit finds them.
        rate = Fraction(value).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return rate


class VideoSink(Sink, kind="video"):
    """Write annotated frames to an H.264 (yuv420p) video file.

    Frame ``k`` written gets pts ``k`` in a time base of ``1/fps``, so the output has the
    input's frame count and frame rate. For live sources (``use_timestamps=True``) the pts
    follow ``frame.timestamp`` instead (milliseconds; rounded onto the ``1/fps`` grid for
    .avi, a constant-rate container), so a video of a camera plays at real speed even
    though the pipeline drops frames.

    The encoder is opened for the first frame's size, padded to even dimensions (one
    replicated column/row on the right/bottom when odd: yuv420p needs even sizes). Frames of
    another size are letterboxed into the first size.

    With ``video_writer_thread`` (the default) encoding runs in a thread behind a bounded
    queue, so x264 overlaps the next frame's inference; on 2 CPU cores with YuNet inference
    this cut the time per frame by about 10-15 % (`python -m bench`).

    Args:
        path: Output file; the container follows the extension (.mp4, .mkv, .mov, .avi).
        fps: Frame rate of the input (frames per second). For ``use_timestamps`` it is only
            the nominal rate given to the encoder.
        options: Encoder settings (``video_crf``, ``video_preset``, ``video_writer_thread``,
            ``video_queue_size``).
        use_timestamps: Take pts from ``frame.timestamp`` (seconds) instead of the frame count.

    Raises:
        SinkError: The path cannot be written (checked here, before any processing).
        ValueError: ``fps`` is not a positive number or the extension is not a video one.
    """

    @classmethod
    def open(cls, target: str, context: SinkContext) -> VideoSink:
        """A video of the run: the source's frame rate (1 fps for stills, 25 when a video reports none); a live
        source's frames keep their wall-clock timestamps."""
        fps = context.fps
        live = context.source_kind in ("webcam", "stream")
        if fps is None:
            fps = 1.0 if context.source_kind in ("image", "folder") else 25.0
            if not live:
                logger.warning("source reports no frame rate; video output %s uses %g fps", target, fps)
        return cls(target, fps, context.options, use_timestamps=live)

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction,
        options: SinkOptions | None = None,
        *,
        use_timestamps: bool = False,
    ) -> None:
        super().__init__()
        self.options = options if options is not None else SinkOptions()
        self.rate = as_frame_rate(fps)
        self.use_timestamps = bool(use_timestamps)
        ext = os.path.splitext(os.fspath(path))[1].lower()
        if ext not in VIDEO_EXTENSIONS:
            raise ValueError(f"path must end in one of {', '.join(VIDEO_EXTENSIONS)}, got {os.fspath(path)!r}")
        # A file that existed before is only replaced once a frame is written (the header is
        # written with the first packet); a file this sink created is removed if none is.
        self._created_file = not os.path.exists(os.path.expanduser(os.fspath(path)))
        self.path = prepare_output_file(path, "video output")
        if not self.use_timestamps or ext == ".avi":
            self.time_base = 1 / self.rate
        else:
            self.time_base = _TIMESTAMP_TIME_BASE
        try:
            # Absolute: FFmpeg reads 'name:rest' as a protocol ('run:1.mp4' is no file to it).
            self._container = av.open(str(self.path.absolute()), mode="w",
                                      container_options=_CONTAINER_OPTIONS.get(ext, {}))
        except (av.error.FFmpegError, OSError) as err:
            raise SinkError(f"cannot open video output {str(self.path)!r}: {err}; choose another path") from err
        self._stream: av.VideoStream | None = None
        self._size: tuple[int, int] = (0, 0)  # (width, height) of the first frame, before padding
        self._frames_written = 0
        self._next_pts = 0
        self._first_timestamp: float | None = None
        self._warned_resize = False
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[np.ndarray, int] | None] | None = None
        self._thread: threading.Thread | None = None
        # Set when the writer thread has left its loop (never read from is_alive(): see wait_for_worker).
        self._writer_done = threading.Event()
        self._abandon = threading.Event()  # a second signal: drop the queued frames, stop after the one in hand
        if self.options.video_writer_thread:
            self._queue = queue.Queue(maxsize=self.options.video_queue_size)
            self._thread = threading.Thread(target=self._run_writer, name=f"video-writer:{self.path.name}", daemon=True)
            self._thread.start()

    @property
    def frames_written(self) -> int:
        """Frames handed to the encoder so far."""
        return self._frames_written

    def write(self, frame: Frame, faces: Faces) -> None:
        """Encode one annotated frame (queued to the writer thread when it is enabled).

        Args:
            frame: The frame; ``frame.image`` is ``(H, W, 3)`` uint8 BGR.
            faces: Unused (the annotations are already drawn).

        Raises:
            SinkError: Encoding or writing the file failed (e.g. disk full).
        """
        self._check_open()
        self._raise_pending_error()
        pts = self._pts_for(frame)
        image = self._fit(frame.image)
        if self._queue is not None:
            # The colour conversion runs in the writer thread too (6 ms at 1080p). Safe because the
            # pipeline hands every sink a fresh annotated image and never touches it after write().
            self._queue.put((image, pts))
        else:
            self._encode(image, pts)
        self._frames_written += 1

    def _pts_for(self, frame: Frame) -> int:
        if not self.use_timestamps:
            pts = self._next_pts
        else:
            if self._first_timestamp is None:
                self._first_timestamp = float(frame.timestamp)
            pts = round((float(frame.timestamp) - self._first_timestamp) / self.time_base)
            # Containers need strictly increasing pts; a clock step back must not break the file.
            pts = max(pts, self._next_pts)
        self._next_pts = pts + 1
        return pts

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """The frame at the output's size (the first frame's), letterboxed if the source changed size."""
        if self._size == (0, 0):
            self._size = (int(image.shape[1]), int(image.shape[0]))
        width, height = self._size
        if image.shape[:2] != (height, width):
            if not self._warned_resize:
                logger.warning(
                    "video output %s: frame size changed from %dx%d to %dx%d; letterboxing into the first size",
                    self.path,
                    width,
                    height,
                    image.shape[1],
                    image.shape[0],
                )
                self._warned_resize = True
            image = fit_to_size(image, width, height)
        return image

    @staticmethod
    def _to_yuv420(image: np.ndarray) -> np.ndarray:
        # OpenCV's I420 is BT.601 limited range, the yuv420p that x264 and players assume by default.
        return cv2.cvtColor(pad_to_even(image), cv2.COLOR_BGR2YUV_I420)

    def _open_stream(self, width: int, height: int) -> av.VideoStream:
        time_base = self.time_base
        stream = self._container.add_stream(
            "libx264",
            rate=self.rate,
            options={"crf": str(self.options.video_crf), "preset": self.options.video_preset},
        )
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        return stream

    def _encode(self, image: np.ndarray, pts: int) -> None:
        yuv = self._to_yuv420(image)
        height = yuv.shape[0] * 2 // 3
        width = yuv.shape[1]
        if self._stream is None:
            self._stream = self._open_stream(width, height)
        video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        video_frame.pts = pts
        video_frame.time_base = self._stream.codec_context.time_base
        try:
            self._container.mux(self._stream.encode(video_frame))
        except (av.error.FFmpegError, OSError) as err:
            raise SinkError(f"writing video output {str(self.path)!r} failed: {err}; check free disk space") from err

    def _run_writer(self) -> None:
        # Runs until the None sentinel. After an error it keeps draining the queue so a
        # producer blocked in put() never deadlocks; the error surfaces in write()/close().
        try:
            while self._queue is not None:
                item = self._queue.get()
                if item is None or self._abandon.is_set():
                    return
                if self._error is not None:
                    continue
                try:
                    self._encode(*item)
                except SinkError as err:
                    self._error = err
        finally:
            self._writer_done.set()

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            raise SinkError(str(self._error)) from self._error

    def _drop_queued_frames(self, frames: queue.Queue[tuple[np.ndarray, int] | None]) -> None:
        """A second Ctrl-C/SIGTERM while the writer drains its queue: it stops after the frame in hand."""
        self._abandon.set()
        dropped = 0
        with contextlib.suppress(queue.Empty):
            while True:
                dropped += frames.get_nowait() is not None
        frames.put_nowait(None)  # wakes a writer waiting for a frame; the queue was just emptied
        self._frames_written -= dropped
        logger.warning("video output %s: %d queued frames dropped (stopped again while they were written)",
                       self.path, dropped)

    def _close(self) -> None:
        stopped_again: BaseException | None = None
        try:
            frames = self._queue
            if self._thread is not None and frames is not None:
                # The container is flushed and closed only once the writer has left the encoder: closed under
                # it, libav crashed or the file was deleted as empty. A second signal meanwhile is raised once
                # the frames encoded so far are flushed and indexed.
                stopped_again = wait_for_worker(self._writer_done, start=lambda: frames.put(None),
                                                hurry=lambda: self._drop_queued_frames(frames))
            self._raise_pending_error()
            if self._stream is not None:
                try:
                    self._container.mux(self._stream.encode(None))
                except (av.error.FFmpegError, OSError) as err:
                    raise SinkError(
                        f"finishing video output {str(self.path)!r} failed: {err}; check free disk space"
                    ) from err
        finally:
            # Closing writes the mp4 index (moov); it must run even when flushing failed or
            # a second Ctrl-C arrived, or the frames already written are unplayable.
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError) as err:
                logger.error("closing video output %s failed: %s", self.path, err)
            if self._stream is None:
                # Nothing was written: leave no empty, unplayable file behind.
                logger.warning("video output %s: no frames were written", self.path)
                if self._created_file:
                    try:
                        self.path.unlink()
                    except OSError as err:
                        logger.warning("could not remove empty video output %s: %s", self.path, err)
            else:
                logger.info("video output %s: %d frames written", self.path, self._frames_written)
        if stopped_again is not None:
            raise stopped_again
