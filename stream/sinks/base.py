"""The sink interface, its error type and the options of every sink.

A sink receives each processed frame (already annotated) together with its faces.
Every sink is a context manager whose ``__exit__`` always finalizes the output, also
when the pipeline loop is left by an exception or ``KeyboardInterrupt``: a video file
must stay playable and an events file must end on a complete line.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import cv2
import numpy as np

from stream.config import SinkOptions
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

class SinkError(RuntimeError):
    """An output cannot be opened or written; the message names the output and the fix."""


@dataclass(frozen=True)
class SinkContext:
    """What a sink needs to know about the run it serves, beside its own target.

    Attributes:
        source_kind: One of ``stream.sinks.SOURCE_KINDS``.
        fps: The source's frame rate (None when unknown).
        options: The ``output:`` section.
        source_path: The source's local path (file or folder), or None for cameras and URLs.
        source_name: The source's display name (credentials redacted).
        camera: The camera's name (``stream.config.CameraSpec.name``); "" for outputs shared by several cameras.
    """

    source_kind: str
    fps: float | Fraction | None = None
    options: SinkOptions = field(default_factory=SinkOptions)
    source_path: Path | None = None
    source_name: str = ""
    camera: str = ""


#: Name → class registry of the sinks, filled by subclassing: ``class VideoSink(Sink, kind="video")``.
SINKS: dict[str, type[Sink]] = {}


class Sink(abc.ABC):
    """One output of the pipeline: a context manager with ``write`` and ``close``.

    Subclasses implement :meth:`write` and :meth:`_close`; :meth:`close` is idempotent
    and ``__exit__`` always calls it, so outputs are finalized on every way out of a
    ``with`` block. A subclass declared with ``kind="name"`` is registered in :data:`SINKS` and opened
    by :meth:`open` from a command-line target and the run's :class:`SinkContext`.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind:
            if kind in SINKS:
                raise TypeError(f"sink kind {kind!r} is registered twice ({SINKS[kind].__name__}, {cls.__name__})")
            cls.kind = kind
            SINKS[kind] = cls

    @classmethod
    def open(cls, target: str, context: SinkContext) -> Sink:
        """The sink for a command-line ``target`` (a path or URL) in a run described by ``context``."""
        return cls(target, context.options)  # type: ignore[call-arg]

    def __init__(self) -> None:
        self._closed = False

    @abc.abstractmethod
    def write(self, frame: Frame, faces: Faces) -> None:
        """Send one processed frame to the output.

        Args:
            frame: The frame; ``frame.image`` is the annotated ``(H, W, 3)`` uint8 BGR image.
            faces: The faces of that frame (``n`` rows), with tracking and label data.
        """

    def end_tracks(self, records: list[dict[str, Any]]) -> None:  # noqa: B027 (optional hook, no-op default)
        """Tracks that ended (:func:`stream.analytics.track_record` summaries), before the frame they ended on
        reaches :meth:`write` (or after the last frame, for tracks open at the end). Sinks that report people
        leaving override this; the default ignores them.
        """

    def end_source(self, camera: str, inputs_skipped: int) -> None:  # noqa: B027 (optional hook, no-op default)
        """A source finished (ended, gave up or the run stopped): ``inputs_skipped`` inputs it could not read were
        skipped (a folder's damaged images). Called before the outputs close; sinks that report it override this.
        """

    @abc.abstractmethod
    def _close(self) -> None:
        """Finalize the output (called once)."""

    def close(self) -> None:
        """Finalize the output; later calls do nothing. Locks handed to :meth:`hold` are released after."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close()
        finally:
            for lock in getattr(self, "_held", ()):
                lock.release()

    def hold(self, lock: Any) -> None:
        """Keep ``lock`` (anything with ``release()``, e.g. an output's :class:`~stream.sinks.locks.OutputLock`)
        until this sink is closed."""
        self.__dict__.setdefault("_held", []).append(lock)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @property
    def shows_image(self) -> bool:
        """Whether this sink uses the annotated image (a run with none of these skips drawing)."""
        return True

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


def prepare_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """Check that a file can be written at ``path`` before any processing starts.

    Creates missing parent folders. A file that does not exist yet is not created (a run killed before it
    writes leaves no empty file behind): the probe creates and removes a temporary file beside it instead.

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
        if target.exists():
            # Append mode: proves write access without truncating an existing file yet.
            with open(target, "ab"):
                pass
        else:
            with tempfile.TemporaryFile(dir=target.parent):
                pass
    except OSError as err:
        raise SinkError(
            f"cannot write {what} {str(path)!r} ({err.strerror or err}); check permissions or choose another path"
        ) from err
    return target


def write_atomically(path: Path, text: str | bytes, what: str) -> None:
    """Replace ``path`` with ``text`` in one step: readers (and a run killed mid-write) see the old file or the
    whole new one, never a partial one.

    Raises:
        SinkError: The file cannot be written (e.g. disk full); the old file, if any, is left as it was.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise SinkError(f"cannot write {what} {str(path)!r} ({err.strerror or err})") from err


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file or folder: by resolved path, and by inode for existing ones (hard
    links, bind mounts, case-insensitive file systems)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
