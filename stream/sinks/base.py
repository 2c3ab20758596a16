"""The sink interface, its error type and the options of every sink.

A sink receives each processed frame (already annotated) together with its faces.
Every sink is a context manager whose ``__exit__`` always finalizes the output, also
when the pipeline loop is left by an exception or ``KeyboardInterrupt``: a video file
must stay playable and an events file must end on a complete line.
"""

from __future__ import annotations

import abc
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

# libx264 presets, fastest first (the encoder rejects any other name).
X264_PRESETS: tuple[str, ...] = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
RTSP_TRANSPORTS: tuple[str, ...] = ("tcp", "udp")


class SinkError(RuntimeError):
    """An output cannot be opened or written; the message names the output and the fix."""


class Sink(abc.ABC):
    """One output of the pipeline: a context manager with ``write`` and ``close``.

    Subclasses implement :meth:`write` and :meth:`_close`; :meth:`close` is idempotent
    and ``__exit__`` always calls it, so outputs are finalized on every way out of a
    ``with`` block.
    """

    def __init__(self) -> None:
        self._closed = False

    @abc.abstractmethod
    def write(self, frame: Frame, faces: Faces) -> None:
        """Send one processed frame to the output.

        Args:
            frame: The frame; ``frame.image`` is the annotated ``(H, W, 3)`` uint8 BGR image.
            faces: The faces of that frame (``n`` rows), with tracking and label data.
        """

    @abc.abstractmethod
    def _close(self) -> None:
        """Finalize the output (called once)."""

    def close(self) -> None:
        """Finalize the output; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self._close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @property
    def quit_requested(self) -> bool:
        """Whether the user asked this sink to stop the pipeline (only windows do)."""
        return False

    def _check_open(self) -> None:
        if self._closed:
            raise SinkError(f"{type(self).__name__} is closed; open a new sink to write more frames")

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except SinkError as err:
            # Finalizing failed while another exception (Ctrl-C, a pipeline error) is
            # propagating: report it, but do not hide the original cause.
            if exc is None:
                raise
            logger.error("%s", err)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    # bool is an int subclass; `video_crf: true` in YAML is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"output.{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"output.{name} must be in [{low}, {high}], got {value!r}")
    return int(value)


def _check_float(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"output.{name} must be a number in ({low}, {high}], got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low < number <= high:
        raise ValueError(f"output.{name} must be in ({low}, {high}], got {value!r}")
    return number


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"output.{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


@dataclass(frozen=True)
class SinkOptions:
    """Options of the output sinks: the ``output:`` section of ``config.yaml``.

    Attributes:
        video_crf: x264 constant rate factor, 0 (lossless) to 51; lower is better and bigger.
        video_preset: x264 preset for files; slower presets give smaller files at the same quality.
        video_writer_thread: Encode video files in a writer thread so encoding overlaps inference.
        video_queue_size: Frames the writer thread may hold before ``write`` waits (bounds memory).
        image_jpeg_quality: JPEG quality (1-100) of annotated image outputs.
        rtsp_fps: Frame rate of the RTSP push; frames arriving faster are dropped. Keyframe every second.
        rtsp_reconnect_max_s: Longest wait between reconnection attempts to the RTSP server (seconds).
        rtsp_transport: RTP transport to the RTSP server, "tcp" or "udp".
        window_name: Title of the ``--show`` window.
    """

    video_crf: int = 23
    video_preset: str = "ultrafast"
    video_writer_thread: bool = True
    video_queue_size: int = 8
    image_jpeg_quality: int = 95
    rtsp_fps: float = 25.0
    rtsp_reconnect_max_s: float = 8.0
    rtsp_transport: str = "tcp"
    window_name: str = "faces"

    def __post_init__(self) -> None:
        # Frozen: normalized values are stored through object.__setattr__.
        set_ = object.__setattr__
        set_(self, "video_crf", _check_int("video_crf", self.video_crf, 0, 51))
        _check_choice("video_preset", self.video_preset, X264_PRESETS)
        if not isinstance(self.video_writer_thread, bool):
            raise ValueError(f"output.video_writer_thread must be true or false, got {self.video_writer_thread!r}")
        set_(self, "video_queue_size", _check_int("video_queue_size", self.video_queue_size, 1, 1024))
        set_(self, "image_jpeg_quality", _check_int("image_jpeg_quality", self.image_jpeg_quality, 1, 100))
        set_(self, "rtsp_fps", _check_float("rtsp_fps", self.rtsp_fps, 0.0, 240.0))
        set_(self, "rtsp_reconnect_max_s", _check_float("rtsp_reconnect_max_s", self.rtsp_reconnect_max_s, 0.0, 3600.0))
        _check_choice("rtsp_transport", self.rtsp_transport, RTSP_TRANSPORTS)
        if not isinstance(self.window_name, str) or not self.window_name.strip():
            raise ValueError(f"output.window_name must be a non-empty string, got {self.window_name!r}")

    @classmethod
    def coerce(cls, options: SinkOptions | Mapping[str, Any] | Any) -> SinkOptions:
        """SinkOptions from itself, a mapping, or a dataclass instance holding some of its keys.

        Lets a configuration object of another class (e.g. the loaded ``output:`` section)
        be passed as is; missing keys keep their defaults.

        Args:
            options: A SinkOptions (returned unchanged), a mapping, or a dataclass instance.

        Returns:
            The options.

        Raises:
            ValueError: A key is unknown or a value is out of range (the message names it).
            TypeError: ``options`` is none of the accepted kinds.
        """
        if isinstance(options, SinkOptions):
            return options
        if isinstance(options, Mapping):
            values = dict(options)
        elif is_dataclass(options) and not isinstance(options, type):
            values = {f.name: getattr(options, f.name) for f in fields(options)}
        else:
            raise TypeError(f"options must be a SinkOptions, a mapping or a dataclass, got {type(options).__name__}")
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown output option(s) {', '.join(unknown)}; valid keys: {', '.join(cls.keys())}")
        return cls(**values)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The option names, in declaration order (the keys of the ``output:`` section)."""
        return tuple(f.name for f in fields(cls))


def fit_to_size(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Letterbox an image into a fixed size, keeping its aspect ratio.

    Encoders are opened for one frame size; a source that changes resolution (a camera
    reconnecting, a folder of mixed images) is scaled into that size with black bars.

    Args:
        image: ``(h, w, 3)`` uint8 BGR image.
        width: Target width in pixels.
        height: Target height in pixels.

    Returns:
        ``(height, width, 3)`` uint8 BGR image (``image`` itself when it already fits).
    """
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    new_w = max(1, min(width, round(w * scale)))
    new_h = max(1, min(height, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((height, width, 3), np.uint8)
    top = (height - new_h) // 2
    left = (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """Pad an image by one pixel on the right and/or bottom so both sides are even.

    yuv420p stores chroma at half resolution, so x264 needs even dimensions. Padding
    (repeating the last column/row) keeps every pixel of the annotated frame, where
    cropping would lose the last row or column.

    Args:
        image: ``(H, W, 3)`` uint8 image.

    Returns:
        ``(H + H % 2, W + W % 2, 3)`` uint8 image (``image`` itself when both are even).
    """
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


def redact_url(url: str) -> str:
    """Hide the password of a URL (``rtsp://user:pass@host`` → ``rtsp://user:***@host``) for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def prepare_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """Check that a file can be written at ``path`` before any processing starts.

    Creates missing parent folders. The file itself is created (empty) by the probe when it
    did not exist, and left in place: the sink writes it next.

    Args:
        path: The output file path.
        what: What the file is, for messages (e.g. ``"video output"``).

    Returns:
        The path as a :class:`~pathlib.Path` (``~`` expanded).

    Raises:
        SinkError: The path is a folder, its folder cannot be created, or it is not writable.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise SinkError(f"{what} {str(path)!r} is a folder; give a file path inside it instead")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SinkError(
            f"cannot create the folder {str(target.parent)!r} for {what} {str(path)!r} ({err.strerror or err}); "
            "create it or choose another path"
        ) from err
    try:
        # Append mode: proves write access without truncating an existing file yet.
        with open(target, "ab"):
            pass
    except OSError as err:
        raise SinkError(
            f"cannot write {what} {str(path)!r} ({err.strerror or err}); check permissions or choose another path"
        ) from err
    return target
