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

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stream.config import SourceOptions
from stream.sources.base import (
    _URL_RE,
    KINDS,
    CaptureFactory,
    CaptureLike,
    Source,
    SourceError,
    _check_option_names,
    _coerce_options,
    redact_url,
)
from stream.sources.captures import _open_webcam, _PyAVStreamCapture
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
]

STREAM_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "http", "https")


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
        factory = capture_factory if capture_factory is not None else _PyAVStreamCapture.factory(options)
        return LiveSource(target, redact_url(target), "stream", factory, options)
    if kind == "folder":
        return FolderSource(target, options)
    if kind == "image":
        return ImageSource(target, options)
    return VideoFileSource(target, options)


def local_source_path(spec: int | str | os.PathLike[str]) -> Path | None:
    """The local file or folder a source spec reads (so outputs can be kept from overwriting it), else None."""
    try:
        kind, target = _classify(spec)
    except (SourceError, TypeError, ValueError):
        return None
    return target if kind in ("video", "image", "folder") else None


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
        raise ValueError("spec must not be empty (give a camera index, URL or path)")
    if text.isdigit():
        return "webcam", int(text)
    if text == DEMO_SPEC and not Path(text).exists():  # a file or folder named "demo" is still read as such
        return "demo", text
    match = _URL_RE.match(text)
    if match is not None and len(match["scheme"]) > 1:  # 'C://x' is a Windows path, not a URL
        scheme = match["scheme"].lower()
        if scheme not in STREAM_SCHEMES:
            raise ValueError(f"unsupported URL scheme {scheme!r} in spec; supported: {list(STREAM_SCHEMES)}")
        return "stream", text
    if text.startswith("/dev/video"):
        return "webcam", text
    path = Path(text).expanduser()
    if not path.exists():
        raise SourceError(
            f"source {text!r} not found (check the path; for a webcam give its index, for a stream an "
            "rtsp:// or http(s):// URL)"
        )
    if path.is_dir():
        return "folder", path
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return "image", path
    return "video", path
