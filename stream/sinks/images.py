"""Annotated still-image outputs: one file, or a folder with one image per input image."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from pathlib import Path, PurePath

import cv2
import numpy as np

from stream.config import SinkOptions
from stream.sinks.base import Sink, SinkContext, SinkError, prepare_output_file, same_file
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _encode_params(ext: str, options: SinkOptions) -> list[int]:
    if ext in (".jpg", ".jpeg"):
        return [cv2.IMWRITE_JPEG_QUALITY, options.image_jpeg_quality]
    if ext == ".webp":
        return [cv2.IMWRITE_WEBP_QUALITY, options.image_jpeg_quality]
    return []


def write_image(path: Path, image: np.ndarray, options: SinkOptions) -> None:
    """Encode and write one image, replacing ``path`` atomically.

    The image is encoded with OpenCV (format from the extension) and written to a
    temporary file in the same folder that then replaces ``path``, so an interrupted run
    never leaves a truncated image. Writing through Python rather than ``cv2.imwrite``
    also gives the operating system's reason when it fails.

    Args:
        path: Output file; its extension selects the format.
        image: ``(H, W, 3)`` uint8 BGR image.
        options: Supplies ``image_jpeg_quality``.

    Raises:
        SinkError: Encoding or writing failed.
    """
    ext = path.suffix.lower()
    ok, encoded = cv2.imencode(ext, image, _encode_params(ext, options))
    if not ok:
        raise SinkError(f"cannot encode image output {str(path)!r} as {ext}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    # A plain open() (not tempfile) so the file gets the usual umask permissions, not 0600.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp_path, "wb") as tmp:
            tmp.write(encoded.tobytes())
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        raise SinkError(
            f"cannot write image output {str(path)!r} ({err.strerror or err}); check free disk space and permissions"
        ) from err


class ImageFileSink(Sink, kind="image"):
    """Write the annotated image of a single-image source to one file.

    Args:
        path: Output file with an image extension (.jpg, .png, ...).
        options: Supplies ``image_jpeg_quality``.

    Raises:
        ValueError: The extension is not an image one.
        SinkError: The path cannot be written (checked here, before any processing).
    """

    def __init__(self, path: str | os.PathLike[str], options: SinkOptions | None = None) -> None:
        super().__init__()
        self.options = options if options is not None else SinkOptions()
        ext = os.path.splitext(os.fspath(path))[1].lower()
        if ext not in IMAGE_EXTENSIONS:
            raise ValueError(f"path must end in one of {', '.join(IMAGE_EXTENSIONS)}, got {os.fspath(path)!r}")
        existed = Path(path).expanduser().exists()
        self.path = prepare_output_file(path, "image output")
        # The writability probe created an empty file; remove it if no image ever replaces it.
        self._remove_if_empty = not existed
        self._frames_written = 0

    def write(self, frame: Frame, faces: Faces) -> None:
        """Write ``frame.image`` to the output file (a later frame replaces an earlier one).

        Args:
            frame: The frame; ``frame.image`` is ``(H, W, 3)`` uint8 BGR.
            faces: Unused (the annotations are already drawn).

        Raises:
            SinkError: Writing failed.
        """
        self._check_open()
        if self._frames_written == 1:
            logger.warning("image output %s receives several frames; each replaces the previous", self.path)
        write_image(self.path, frame.image, self.options)
        self._frames_written += 1

    def _close(self) -> None:
        if self._frames_written == 0 and self._remove_if_empty:
            self.path.unlink(missing_ok=True)


def output_name(frame: Frame) -> PurePath:
    """The relative output file name of an annotated image: the input's name, made safe.

    Absolute parts and ``..`` are dropped so an output never escapes its folder; an
    extension OpenCV cannot write (e.g. .gif) becomes .png; a frame without a name is
    named after its index.

    Args:
        frame: The frame; ``frame.name`` is the input file name (may hold subfolders).

    Returns:
        A relative path inside the output folder.
    """
    parts = [p for p in PurePath(frame.name).parts if p not in ("", ".", "..") and p != PurePath(frame.name).anchor]
    if not parts:
        return PurePath(f"frame_{frame.index:06d}.jpg")
    name = PurePath(*parts)
    if name.suffix.lower() not in IMAGE_EXTENSIONS:
        name = name.with_name(name.name + ".png") if not name.suffix else name.with_suffix(".png")
    return name



class ImageFolderSink(Sink, kind="image_folder"):
    """Write one annotated image per input image into a folder, named after the input.

    Args:
        folder: Output folder (created if missing).
        options: Supplies ``image_jpeg_quality``.
        source_dir: The input folder, when known: writing into it would replace the
            original images, so that is refused.

    Raises:
        SinkError: The folder cannot be created or written, or it is the input folder.
    """

    @classmethod
    def open(cls, target: str, context: SinkContext) -> ImageFolderSink:
        source = context.source_path
        if context.source_kind == "image" and source is not None:
            # One image into a folder: the annotated copy is named after the input, so the input's own folder
            # would get the input overwritten.
            name = output_name(Frame(0, 0.0, np.zeros((1, 1, 3), np.uint8), "", source.name))
            would_write = Path(target).expanduser() / name
            with contextlib.suppress(OSError):
                if would_write.exists() and os.path.samefile(would_write, source):
                    raise SinkError(f"--output folder {target!r} holds the input image {str(source)!r}, which the "
                                    "annotated copy would replace; choose another folder")
        source_dir = source if context.source_kind == "folder" else None
        return cls(target, context.options, source_dir=source_dir)

    def __init__(
        self,
        folder: str | os.PathLike[str],
        options: SinkOptions | None = None,
        *,
        source_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.options = options if options is not None else SinkOptions()
        self.folder = Path(folder).expanduser()
        if source_dir is not None and same_file(self.folder, Path(source_dir).expanduser()):
            raise SinkError(
                f"image output folder {str(folder)!r} is the input folder; its images would be replaced. "
                "Choose another output folder"
            )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Probe write access (permissions, read-only mounts) before any processing.
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as err:
            raise SinkError(
                f"cannot write to image output folder {str(folder)!r} ({err.strerror or err}); "
                "give a writable folder, or a file path with an image extension for a single image"
            ) from err
        self._frames_written = 0

    @property
    def frames_written(self) -> int:
        """Images written so far."""
        return self._frames_written

    def write(self, frame: Frame, faces: Faces) -> None:
        """Write ``frame.image`` to ``folder / output_name(frame)``.

        Args:
            frame: The frame; ``frame.image`` is ``(H, W, 3)`` uint8 BGR, ``frame.name`` the input name.
            faces: Unused (the annotations are already drawn).

        Raises:
            SinkError: Writing failed.
        """
        self._check_open()
        target = self.folder / output_name(frame)
        if target.parent != self.folder:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise SinkError(f"cannot create folder {str(target.parent)!r} ({err.strerror or err})") from err
        write_image(target, frame.image, self.options)
        self._frames_written += 1

    def _close(self) -> None:
        logger.info("image output %s: %d images written", self.folder, self._frames_written)
