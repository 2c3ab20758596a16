"""Frame sources: one :func:`open_source` for webcams, network streams, video files, images and folders.

Every source is a context manager and an iterator of :class:`stream.types.Frame` (BGR uint8 images).
Two reading disciplines, chosen by what the source is:

* **Files** (video, image, folder), :mod:`stream.sources.files`: read in order, every frame, by a reader
  thread that fills a bounded queue.
* **Live sources** (webcam, RTSP, HTTP/HLS), :mod:`stream.sources.live`: read by a grabber thread that
  keeps only the newest frame and reconnects with capped backoff; their backends (OpenCV for webcams,
  PyAV for network streams) are in :mod:`stream.sources.captures`.

What every source shares (:class:`Source`, :class:`SourceError`, :func:`redact_url`, option checks) is
in :mod:`stream.sources.base`.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stream.config import SourceOptions
from stream.sources.base import (
    _POLL_S,
    _URL_RE,
    KINDS,
    CaptureFactory,
    CaptureLike,
    ReaderThread,
    SecretFilter,
    Source,
    SourceError,
    _check_option_names,
    _coerce_options,
    redact_url,
)
from stream.sources.captures import (
    _ConnectError,
    _open_webcam,
    _PyAVStreamCapture,
    download_remote_file,
    open_remote_file,
)
from stream.sources.demo import DEMO_SPEC, DemoSource
from stream.sources.files import IMAGE_EXTENSIONS, FolderSource, ImageSource, VideoFileSource
from stream.sources.live import LiveSource

__all__ = [
    "IMAGE_EXTENSIONS",
    "KINDS",
    "STREAM_SCHEMES",
    "CaptureFactory",
    "CaptureLike",
    "DemoSource",
    "FolderSource",
    "ImageSource",
    "LiveSource",
    "Source",
    "SourceError",
    "SourceOptions",
    "VideoFileSource",
    "local_source_path",
    "open_source",
    "redact_url",
    "source_kind",
]

logger = logging.getLogger("stream.sources")

STREAM_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "http", "https")
# V4L2 numbers devices /dev/video0../dev/video255; larger indices are typos (and overflow OpenCV's int).
MAX_WEBCAM_INDEX = 255


def open_source(
    spec: int | str | os.PathLike[str],
    options: SourceOptions | None = None,
    *,
    capture_factory: CaptureFactory | None = None,
    **overrides: Any,
) -> Source:
    """Open a webcam, network stream, video file, image or folder of images.

    Args:
        spec: ``"demo"`` (the built-in demo clip, :mod:`stream.sources.demo`); webcam index (``0`` or ``"0"``)
            or device path (``/dev/video0``); ``rtsp://``,
            ``rtsps://``, ``http(s)://`` URL (HLS included); path of a video file, of an image
            (jpg/jpeg/png/bmp/webp) or of a folder of images.
        options: Settings: a :class:`SourceOptions`, a mapping of its fields, or a dataclass with the same
            fields (``stream.config.SourceConfig``); defaults to ``SourceOptions()``.
        capture_factory: ``callable(spec) -> cv2.VideoCapture``-like object (``read``, ``isOpened``,
            ``get``, ``release``) used to open webcams and, when given, network streams instead of the
            default backends. Tests inject fake cameras through it.
        **overrides: Individual :class:`SourceOptions` fields overriding ``options``.

    Returns:
        An open :class:`Source`; use it as a context manager.

    Raises:
        SourceError: The source is missing, unreadable, not a video, or cannot be opened within
            ``open_timeout_s`` (``give_up_after_s`` with ``wait_for_source``).
        TypeError: ``spec``, ``options`` or an override has the wrong type or an unknown name.
        ValueError: A URL scheme is unsupported or an option is out of range.
    """
    options = _coerce_options(options)
    if overrides:
        _check_option_names("open_source()", overrides)
        options = replace(options, **overrides)
    if capture_factory is not None and not callable(capture_factory):
        raise TypeError(f"capture_factory must be callable, got {type(capture_factory).__name__}")

    kind, target = _classify(spec)
    if kind == "demo":
        return DemoSource(options)
    if kind == "webcam":
        factory = capture_factory if capture_factory is not None else _open_webcam
        return LiveSource(target, f"camera {target}", "webcam", factory, options)
    if kind == "stream":
        SecretFilter.add_url(target)
        if capture_factory is None and target.lower().startswith("http"):
            remote = _off_the_main_thread(_remote_file, target, options, name=redact_url(target))
            if remote is not None:
                return remote
        factory = capture_factory if capture_factory is not None else _PyAVStreamCapture.factory(options)
        return LiveSource(target, redact_url(target), "stream", factory, options)
    if kind == "folder":
        return FolderSource(target, options)
    if kind == "image":
        return ImageSource(target, options)
    return VideoFileSource(target, options)


def _off_the_main_thread(function: Any, *args: Any, name: str) -> Any:
    """``function(*args)`` run in a reader thread while this thread waits in short, interruptible steps.

    FFmpeg's blocking network calls (``av.open``, the first reads) hold this thread in native code until their
    timeouts, and Python runs signal handlers only between bytecodes of the main thread: opened here, a
    server that stalls would hold off Ctrl-C/SIGTERM for the whole open timeout (twice, counting the
    live retry). A signal now raises at once; the abandoned thread ends at its own timeout, and the CLI's
    exit does not wait for it (:func:`stream.sources.base.exit_past_stuck_readers`).
    """
    outcome: list[tuple[bool, Any]] = []

    def call() -> None:
        try:
            outcome.append((True, function(*args)))
        except BaseException as exc:  # handed to the waiting thread, which raises it
            outcome.append((False, exc))

    thread = ReaderThread(call, name=f"reader:open {name}")
    thread.start()
    while not thread.wait(_POLL_S):  # short steps: the signal handler runs between them
        pass
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _remote_file(url: str, options: SourceOptions) -> VideoFileSource | None:
    """A VideoFileSource for an http(s) URL serving a file of known duration; None for a live stream, or when
    the first try failed in a way the live source retries and words itself (refused, timeout)."""
    try:
        container = open_remote_file(url, options)
    except _ConnectError as exc:
        if exc.fatal:
            raise SourceError(f"cannot open stream '{redact_url(url)}': {exc}") from None
        return None
    if container is None:
        return None
    try:
        return VideoFileSource(url, options, container=container, name=redact_url(url))
    except SourceError as exc:
        # Nothing decodes in place, e.g. an mp4 with its index at the end from a server without Range requests.
        logger.warning("%s cannot be read in place (%s); downloading it first", redact_url(url), exc)
    path = download_remote_file(url, options)
    try:
        return VideoFileSource(path, options, name=redact_url(url))
    finally:
        path.unlink(missing_ok=True)  # the open file stays readable (POSIX); nothing is left behind


def source_kind(spec: int | str | os.PathLike[str]) -> str:
    """What ``spec`` names, without opening it: one of :data:`KINDS`.

    Raises:
        SourceError: A path that does not exist.
        TypeError, ValueError: As :func:`open_source`.
    """
    return _classify(spec)[0]


def local_source_path(spec: int | str | os.PathLike[str]) -> Path | None:
    """The local file or folder a source spec reads (so outputs can be kept from overwriting it), else None."""
    try:
        kind, target = _classify(spec)
    except (SourceError, TypeError, ValueError):
        return None
    return target if kind in ("video", "image", "folder") else None


class SourceSpecError(SourceError, ValueError):
    """The source spec itself is unusable (empty, an unsupported scheme, an index out of range)."""


def _check_path(text: str, path: Path) -> None:
    """Raise a SourceError that says why ``path`` cannot be read (missing, a symlink loop, a name too long...)."""
    try:
        os.stat(path)
    except OSError as exc:
        reasons = {
            errno.ENOENT: "not found (check the path; for a webcam give its index, for a stream an rtsp:// or "
                          "http(s):// URL)",
            errno.ELOOP: "is a symbolic link loop (a link that points back to itself); fix or remove the link",
            errno.ENAMETOOLONG: "has a name too long for the file system (255 bytes per name); rename it",
            errno.EACCES: "cannot be read: permission denied (check its permissions)",
            errno.ENOTDIR: "not found: a part of the path is a file, not a folder",
        }
        reason = reasons.get(exc.errno or 0, f"cannot be read ({exc.strerror})")
        if exc.errno == errno.ENOENT and path.is_symlink():
            reason = f"is a symbolic link to a missing file ({os.readlink(path)!r})"
        shown = text if len(text) <= 120 else text[:60] + "..." + text[-40:]
        raise SourceError(f"source {shown!r} {reason}") from None


def _special_kind(path: Path) -> str:
    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), which can block forever"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _classify(spec: Any) -> tuple[str, Any]:
    """Return ``(kind, normalized spec)``: int/device path, URL string or Path."""
    if isinstance(spec, bool):
        raise TypeError("spec must be a camera index, URL or path, got bool")
    if isinstance(spec, (int, np.integer)):
        if spec < 0:
            raise ValueError(f"spec (camera index) must be >= 0, got {spec}")
        return "webcam", int(spec)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a camera index, URL or path, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise SourceSpecError("the source must not be empty: give a webcam index (0), an rtsp:// or http(s):// URL, "
                              "a video or image file, or a folder of images")
    if "\0" in text:
        raise SourceSpecError("the source holds a NUL character, which no path or URL may; check the config's "
                              "sources list")
    if text.isdigit():
        index = int(text)
        if index > MAX_WEBCAM_INDEX:
            raise SourceSpecError(f"webcam index {text[:20]}{'...' if len(text) > 20 else ''} is out of range "
                                  f"(0-{MAX_WEBCAM_INDEX}); give the N of /dev/videoN")
        return "webcam", index
    if text == DEMO_SPEC and not Path(text).exists():  # a file or folder named "demo" is still read as such
        return "demo", text
    match = _URL_RE.match(text)
    if match is not None and len(match["scheme"]) > 1:  # 'C://x' is a Windows path, not a URL
        scheme = match["scheme"].lower()
        if scheme not in STREAM_SCHEMES:
            raise SourceSpecError(f"unsupported URL scheme '{scheme}' in the source; supported: "
                              f"{', '.join(s + '://' for s in STREAM_SCHEMES)} (for a local file give its path)")
        # Schemes are case-insensitive (RFC 3986); FFmpeg's protocol lookup is not.
        return "stream", scheme + text[len(scheme):]
    if text.startswith("/dev/video"):
        return "webcam", text
    path = Path(text).expanduser()
    _check_path(text, path)
    if path.is_dir():
        return "folder", path
    if not path.is_file():
        raise SourceError(f"source {text!r} is {_special_kind(path)}, not a regular file: give a video or image "
                          "file (a live feed goes through rtsp:// or http(s)://)")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return "image", path
    return "video", path
