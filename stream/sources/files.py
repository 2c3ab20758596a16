"""File sources: still images, video files and folders of images.

Files (video, image, folder) are read in order, every frame, by a reader thread that fills a bounded
queue, so decoding overlaps the pipeline's inference without buffering a whole file. Video files are
decoded with PyAV (why PyAV: see :mod:`stream.sources.captures`).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.error
import cv2
import numpy as np

from stream.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, SourceOptions
from stream.sources.base import _POLL_S, ReaderThread, Source, SourceError
from stream.sources.captures import upright_bgr
from stream.types import Frame

# One logger for the whole package: log lines keep the name ``stream.sources`` whichever module writes them.
logger = logging.getLogger("stream.sources")

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


# --------------------------------------------------------------------------------------------------
# Still images
# --------------------------------------------------------------------------------------------------


def _read_image(path: Path, max_height: int) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 BGR, at most ``max_height`` tall.

    Raises:
        SourceError: The file cannot be read or is not a supported image.
    """
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise SourceError(f"cannot read image '{path}': larger than {MAX_IMAGE_BYTES >> 20} MiB, which no photo "
                              "is (is it another kind of file under an image name?)")
        # np.fromfile + imdecode instead of imread: imread cannot open non-ASCII paths on Windows and
        # gives no reason on failure.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise SourceError(f"cannot read image '{path}': {exc.strerror} (check the file's permissions)") from exc
    try:
        image = decode_image(data)
    except ValueError as exc:
        raise SourceError(f"cannot read image '{path}': {exc}") from None
    return fit_height(image, max_height)


def decode_image(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, WebP, BMP...) to ``(H, W, 3)`` uint8 BGR, EXIF orientation applied.

    Raises:
        ValueError: Not an image, damaged, or over the pixel limit (the message says which, and what to do).
    """
    buffer = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    image = None
    if buffer.size:
        try:
            image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)  # 8-bit BGR whatever the file's depth/channels
        except cv2.error as exc:
            # OpenCV checks the declared size before allocating (OPENCV_IO_MAX_IMAGE_PIXELS, set by the CLIs).
            if "MAX_IMAGE_PIXELS" in str(exc):
                raise ValueError(f"it declares more than {MAX_IMAGE_PIXELS // 1_000_000} megapixels (a "
                                 "decompression bomb, or a scan too big to analyse); scale it down") from None
            image = None
    if image is None:
        raise ValueError("not an image or damaged (re-save it as JPEG or PNG)")
    return image


def fit_height(image: np.ndarray, max_height: int) -> np.ndarray:
    """Downscale ``(H, W, 3)`` images taller than ``max_height`` to that height, keeping the aspect (the one rule
    for ``source.max_image_height``: image sources and the web page's uploads)."""
    height, width = image.shape[:2]
    if height <= max_height:
        return image
    new_width = max(1, round(width * max_height / height))
    # INTER_AREA: the antialiasing choice for shrinking (no moire on fine textures).
    return cv2.resize(image, (new_width, max_height), interpolation=cv2.INTER_AREA)


class ImageSource(Source):
    """A single still image: one frame, decoded at open so a bad file fails early."""

    kind = "image"

    def __init__(self, path: Path, options: SourceOptions) -> None:
        super().__init__(str(path), fps=None, frame_count=1)
        self._image: np.ndarray | None = _read_image(path, options.max_image_height)
        self._file_name = path.name

    def _next_frame(self) -> Frame:
        if self._image is None:
            raise StopIteration
        image, self._image = self._image, None
        return Frame(index=0, timestamp=0.0, image=image, source=self.name, name=self._file_name)

    def close(self) -> None:
        self._image = None
        super().close()


# --------------------------------------------------------------------------------------------------
# Files read by a reader thread into a bounded queue (video files, folders)
# --------------------------------------------------------------------------------------------------

_END = object()  # queue sentinel: the reader reached the end


def _put(out: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put with backpressure, giving up when ``stop`` is set (so close() never deadlocks)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


class _QueuedFileSource(Source):
    """Base of file sources: a reader thread produces items (Frame, SourceError or _END) into a queue."""

    def _start_reader(self, target: Callable[..., None], *args: Any, queue_size: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._finished = False
        # The thread gets the queue and the stop event, never ``self``, so an abandoned source can be
        # garbage-collected and its finalizer stops the thread.
        self._thread = ReaderThread(target, args=(*args, self._queue, self._stop), name=f"reader:{self.name}")
        self._finalizer = weakref.finalize(self, self._stop.set)
        self._thread.start()

    def _next_frame(self) -> Frame:
        if self._finished:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._thread.finished.is_set() and self._queue.empty():
                    # The reader always ends with _END or an error unless close() stopped it; anything
                    # else is a crash (traceback on stderr), which must not pass for a clean end of file.
                    self._finished = True
                    if self._stop.is_set():
                        raise StopIteration from None
                    raise SourceError(f"reading '{self.name}' failed: the reader thread died unexpectedly") from None
        if item is _END:
            self._finished = True
            raise StopIteration
        if isinstance(item, SourceError):
            self._finished = True
            raise item
        return item

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        self._stop.set()
        self._thread.wait(2.0)


def _open_video_container(path: Path | BinaryIO) -> tuple[Any, Any]:
    """Open a video file (or a file object holding one: the web page's uploads) with PyAV; return
    ``(container, video stream)``."""
    try:
        # A file object (an upload read from memory) is read as it is; a path is made absolute, since FFmpeg
        # reads 'name:rest' as a protocol ('clip:1.mp4' is no file to it).
        container = av.open(path if hasattr(path, "read") else str(path.absolute()), mode="r")
    except av.error.FileNotFoundError as exc:
        raise SourceError(f"source '{path}' not found (check the path)") from exc
    except av.error.PermissionError as exc:
        raise SourceError(f"cannot open video file '{path}': permission denied (check the file's permissions)") from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise SourceError(
            f"cannot open video file '{path}': not a video or unsupported codec (check the path / re-encode)"
        ) from exc
    if not container.streams.video:
        container.close()
        raise SourceError(f"cannot open video file '{path}': it has no video stream (is it an audio file?)")
    stream = container.streams.video[0]
    # Frame threading: decoding throughput for files, where the added frames of latency do not matter.
    stream.thread_type = "AUTO"
    return container, stream


def _video_reader(
    container: Any,
    stream: Any,
    name: str,
    fps: float | None,
    expected_frames: int | None,
    network: bool,
    out: queue.Queue[Any],
    stop: threading.Event,
) -> None:
    """Reader thread: decode every frame of ``stream`` in order into ``out``."""
    index = 0
    origin: float | None = None
    last_ts = 0.0
    bad_packets = 0
    stopped_early: str | None = None
    try:
        for packet in container.demux(stream):
            if stop.is_set():
                return
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                # A corrupt packet costs its frame(s), not the rest of the file.
                bad_packets += 1
                continue
            for av_frame in decoded:
                if av_frame.time is not None:
                    origin = av_frame.time if origin is None else origin
                    timestamp = float(av_frame.time - origin)
                else:
                    timestamp = index / fps if fps else last_ts
                # Clamp: a broken container may reorder pts; downstream trackers assume time moves forward.
                last_ts = timestamp = max(timestamp, last_ts)
                image = upright_bgr(av_frame)
                frame = Frame(index=index, timestamp=timestamp, image=image, source=name)
                if not _put(out, frame, stop):
                    return
                index += 1
    except (av.error.ExitError, TimeoutError):
        # PyAV's read timeout interrupts FFmpeg, which words it "Immediate exit requested".
        stopped_early = "no data for source.read_timeout_s: the server stalled"
    except (av.error.FFmpegError, OSError) as exc:
        stopped_early = getattr(exc, "strerror", None) or type(exc).__name__
    finally:
        container.close()
    if stopped_early is not None and index and network:
        _put(out, SourceError(f"lost '{name}' after frame {index} ({stopped_early}); the outputs hold the frames "
                              "read so far"), stop)
        return
    if stopped_early is not None and index:
        logger.warning("video '%s' is damaged after frame %d (%s); ending there", name, index, stopped_early)
    elif expected_frames and 0 < index < expected_frames:
        logger.warning("video '%s' ended after %d of %d frames (truncated file?)", name, index, expected_frames)
    if bad_packets:
        logger.warning("video '%s': skipped %d undecodable packet(s)", name, bad_packets)
    if index == 0:
        reason = f" ({stopped_early})" if stopped_early else ""
        _put(
            out,
            SourceError(f"cannot decode any frame of video file '{name}'{reason}: truncated or damaged (re-encode it)"),
            stop,
        )
    else:
        _put(out, _END, stop)


class VideoFileSource(_QueuedFileSource):
    """A video file decoded in order by PyAV in a reader thread (every frame, media timestamps)."""

    kind = "video"

    def __init__(self, path: Path | str | BinaryIO, options: SourceOptions, *, container: Any = None,
                 name: str = "") -> None:
        # ``container``: an already opened PyAV container (an http(s) file, see stream.sources.open_source),
        # read like a local file; a connection lost for good then ends the run with an error, not a warning.
        # ``path`` may also be a file object (an upload held in memory by the web page).
        if container is None:
            container, stream = _open_video_container(Path(path) if isinstance(path, str) else path)
        else:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
        network = isinstance(path, str)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        frame_count: int | None = int(stream.frames) if stream.frames else None
        if frame_count is None and fps and container.duration:
            # Some containers (mkv, webm) store no frame count: estimate it from the duration.
            frame_count = round(container.duration / av.time_base * fps)
        super().__init__(name or str(path), fps=fps, frame_count=frame_count)
        # Read before the reader thread owns the stream.
        context = stream.codec_context
        described = f"{context.width}x{context.height} {context.name}"
        self._start_reader(_video_reader, container, stream, self.name, fps, frame_count, network,
                           queue_size=options.queue_size)
        # Decode the first frame now, so a file with nothing decodable fails at open, not mid-pipeline.
        try:
            self._first: Frame | None = super()._next_frame()
        except StopIteration:  # pragma: no cover - the reader always reports an error instead
            self._first = None
        except SourceError:
            self.close()
            raise
        logger.info(
            "opened video '%s': %s, %s fps, %s frames",
            self.name,
            described,
            f"{fps:.3g}" if fps else "?",
            frame_count if frame_count is not None else "?",
        )

    def _next_frame(self) -> Frame:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        return super()._next_frame()


def _natural_key(path: Path) -> tuple[Any, ...]:
    # Natural order (frame_2 before frame_10): image sequences are rarely zero-padded consistently.
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _folder_reader(paths: list[Path], name: str, max_height: int, skipped: list[str], out: queue.Queue[Any],
                   stop: threading.Event) -> None:
    """Reader thread: decode the folder's images in order into ``out``; an unreadable one is skipped with a
    warning (and listed in ``skipped``), as a damaged video packet is."""
    index = 0
    for path in paths:
        try:
            image = _read_image(path, max_height)
        except SourceError as exc:
            skipped.append(path.name)
            logger.warning("skipping %s", exc)
            continue
        # Stills have no media time: one image per second keeps timestamps increasing for trackers.
        frame = Frame(index=index, timestamp=float(index), image=image, source=name, name=path.name)
        if not _put(out, frame, stop):
            return
        index += 1
    if skipped:
        logger.warning("folder '%s': skipped %d unreadable image(s) of %d", name, len(skipped), len(paths))
    if index == 0:
        _put(out, SourceError(f"folder '{name}' has no readable image ({len(skipped)} unreadable); check the files"),
             stop)
        return
    _put(out, _END, stop)


class FolderSource(_QueuedFileSource):
    """The images of a folder (not recursive), in natural name order, decoded in a reader thread."""

    kind = "folder"

    def __init__(self, path: Path, options: SourceOptions) -> None:
        try:
            files = [p for p in path.iterdir() if not p.name.startswith(".") and p.is_file()]
        except OSError as exc:
            raise SourceError(f"cannot list folder '{path}': {exc.strerror} (check its permissions)") from exc
        paths = sorted((p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)
        others = sorted({p.suffix.lower() or "(no extension)" for p in files if p not in paths})
        if paths and others:  # said once, so that a .gif or .tif left out is not a silent surprise
            logger.warning("folder '%s': %d file(s) that are not %s images left out (%s)", path,
                           len(files) - len(paths), "/".join(sorted(e[1:] for e in IMAGE_EXTENSIONS)),
                           ", ".join(others[:5]) + (", ..." if len(others) > 5 else ""))
        if not paths:
            raise SourceError(
                f"folder '{path}' has no images ({'/'.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))}); check the path"
            )
        super().__init__(str(path), fps=None, frame_count=len(paths))
        self.skipped: list[str] = []  # names of the images that could not be read (filled as the reader goes)
        self._start_reader(_folder_reader, paths, self.name, options.max_image_height, self.skipped,
                           queue_size=options.queue_size)
