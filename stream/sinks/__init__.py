"""Outputs of the pipeline: video file, images, RTSP push, on-screen window, JSONL events.

Every sink is a context manager with ``write(frame, faces)`` and ``close()``; ``__exit__``
always finalizes the output (a video file stays playable after Ctrl-C). :func:`open_sinks`
picks the sinks from the command line's ``--output``/``--events``/``--show`` and checks every
output can be written before any processing starts::

    with contextlib.ExitStack() as stack:
        sinks = [stack.enter_context(s) for s in open_sinks(args.output, args.events, args.show,
                                                              source_kind=source.kind, fps=source.fps,
                                                              options=config.output)]
        for frame, faces in results:
            for sink in sinks:
                sink.write(frame, faces)
            if any_quit_requested(sinks):
                break
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from stream.config import SinkOptions
from stream.sinks.base import Sink, SinkError
from stream.sinks.events import STDOUT, EventsSink, face_records, frame_record
from stream.sinks.images import IMAGE_EXTENSIONS, ImageFileSink, ImageFolderSink
from stream.sinks.mqtt import MqttSink, is_mqtt_url
from stream.sinks.rtsp import RtspSink, is_rtsp_url
from stream.sinks.video import VIDEO_EXTENSIONS, VideoSink
from stream.sinks.window import WindowSink, display_problem
from stream.sources import redact_url

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_SOURCE_KINDS",
    "LIVE_SOURCE_KINDS",
    "SINKS",
    "SOURCE_KINDS",
    "VIDEO_EXTENSIONS",
    "EventsSink",
    "ImageFileSink",
    "ImageFolderSink",
    "MqttSink",
    "RtspSink",
    "Sink",
    "SinkError",
    "SinkOptions",
    "VideoSink",
    "WindowSink",
    "any_quit_requested",
    "display_problem",
    "face_records",
    "frame_record",
    "get_sink_class",
    "open_sinks",
    "output_kind",
    "redact_url",
]

logger = logging.getLogger(__name__)

# Kinds of source the pipeline reads (stream.sources): files are read frame by frame, live
# sources drop frames to stay real-time, image sources yield one frame per still image.
SOURCE_KINDS: tuple[str, ...] = ("video", "webcam", "stream", "image", "folder")
LIVE_SOURCE_KINDS: frozenset[str] = frozenset({"webcam", "stream"})
IMAGE_SOURCE_KINDS: frozenset[str] = frozenset({"image", "folder"})
# Frame rate of a video made from still images when the source has none.
_STILLS_FPS = 1.0
# Frame rate assumed for a video source that reports none.
_DEFAULT_FPS = 25.0

# Name → class registry of the sinks (the names output_kind() returns).
SINKS: dict[str, type[Sink]] = {
    "video": VideoSink,
    "image": ImageFileSink,
    "image_folder": ImageFolderSink,
    "rtsp": RtspSink,
    "events": EventsSink,
    "mqtt": MqttSink,
    "window": WindowSink,
}


def get_sink_class(name: str) -> type[Sink]:
    """The sink class registered under ``name``.

    Raises:
        ValueError: Unknown name; the message lists the valid ones.
    """
    try:
        return SINKS[name]
    except KeyError:
        raise ValueError(f"unknown sink {name!r}; valid sinks: {', '.join(SINKS)}") from None


def output_kind(output: str, source_kind: str) -> str:
    """Which sink an ``--output`` value selects, from its form.

    ``rtsp://``/``rtsps://`` → "rtsp"; a path ending in .mp4/.mkv/.mov/.avi → "video"; for
    image sources, a path with an image extension → "image" (one file, "image" source
    only) and any other path → "image_folder" (one image per input, named after it).

    Args:
        output: The ``--output`` value.
        source_kind: One of :data:`SOURCE_KINDS`.

    Returns:
        A key of :data:`SINKS`.

    Raises:
        ValueError: ``source_kind`` is unknown.
        SinkError: The output's form does not fit the source (the message says what would).
    """
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind must be one of {', '.join(SOURCE_KINDS)}, got {source_kind!r}")
    if is_rtsp_url(output):
        return "rtsp"
    ext = os.path.splitext(output)[1].lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if source_kind in IMAGE_SOURCE_KINDS:
        if ext in IMAGE_EXTENSIONS:
            if source_kind == "folder":
                raise SinkError(
                    f"--output {output!r} is one image file but the source is a folder of images; "
                    "give an output folder (one annotated image per input) or a video file"
                )
            return "image"
        if ext and not Path(output).is_dir():
            raise SinkError(
                f"--output {output!r}: unknown extension {ext!r}; use an image extension "
                f"({', '.join(IMAGE_EXTENSIONS)}), a video one ({', '.join(VIDEO_EXTENSIONS)}) or a folder"
            )
        return "image_folder"
    raise SinkError(
        f"--output {output!r}: for a {source_kind} source give a video file "
        f"({', '.join(VIDEO_EXTENSIONS)}) or an rtsp://HOST:PORT/PATH URL"
    )


def open_sinks(
    output: str | None,
    events: str | None,
    show: bool,
    *,
    source_kind: str,
    fps: float | Fraction | None,
    options: SinkOptions | Mapping[str, Any] | Any,
    source_path: str | os.PathLike[str] | None = None,
    camera: str | None = None,
) -> list[Sink]:
    """Open the sinks a run asks for, checking every output before any processing.

    Either all sinks open or none stays open: when one fails, those already opened are
    closed before the error propagates. The caller closes the returned sinks, best by
    entering each into a :class:`contextlib.ExitStack`.

    Args:
        output: ``--output``: an ``rtsp://`` URL, a video file, or for image sources an
            image file or folder; None for no output.
        events: ``--events``: a JSONL file path, ``"-"`` for standard output, an ``mqtt[s]://`` broker URL
            (:mod:`stream.sinks.mqtt`), or None.
        show: ``--show``: open a window (raises SinkError when there is no display).
        source_kind: One of :data:`SOURCE_KINDS`: decides how ``output`` is read and whether a
            video's timestamps follow the frame count (files) or the wall clock (live sources).
        fps: Frame rate of the source (None if unknown); a video file output gets the same.
        options: The ``output:`` section of the configuration: a :class:`SinkOptions`, or a
            mapping or dataclass holding some of its keys (see :meth:`SinkOptions.coerce`).
        source_path: The source's path for image folders, so an output folder equal to the
            input folder (which would overwrite the originals) is refused.
        camera: The source's name, from which an MQTT sink names its camera (unless its URL gives one).

    Returns:
        The opened sinks, in the order output, events, window.

    Raises:
        SinkError: An output cannot be written, does not fit the source, or no display is available.
        ValueError: ``source_kind`` is unknown or ``fps`` is not positive.
        TypeError: ``options`` is neither SinkOptions, a mapping nor a dataclass.
    """
    options = SinkOptions.coerce(options)
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind must be one of {', '.join(SOURCE_KINDS)}, got {source_kind!r}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive or None, got {fps!r}")
    if (
        output is not None
        and events is not None
        and not is_rtsp_url(output)
        and events != STDOUT
        and Path(output).expanduser().resolve() == Path(events).expanduser().resolve()
    ):
        raise SinkError(f"--output and --events name the same file {output!r}; give them different paths")
    sinks: list[Sink] = []
    try:
        if output is not None:
            sinks.append(_open_output(output, source_kind, fps, options, source_path))
        if events is not None:
            mqtt = is_mqtt_url(events)
            sinks.append(MqttSink(events, options, camera=camera) if mqtt else EventsSink(events, options))
        if show:
            sinks.append(WindowSink(options))
    except BaseException:
        # All or nothing: do not leave a half-opened set (e.g. an empty video file) behind.
        for sink in reversed(sinks):
            try:
                sink.close()
            except SinkError as err:
                logger.warning("%s", err)
        raise
    return sinks


def _open_output(
    output: str,
    source_kind: str,
    fps: float | Fraction | None,
    options: SinkOptions,
    source_path: str | os.PathLike[str] | None,
) -> Sink:
    kind = output_kind(output, source_kind)
    if kind == "rtsp":
        return RtspSink(output, options)
    if kind == "video":
        if fps is None:
            fps = _STILLS_FPS if source_kind in IMAGE_SOURCE_KINDS else _DEFAULT_FPS
            if source_kind not in LIVE_SOURCE_KINDS:
                logger.warning("source reports no frame rate; video output %s uses %g fps", output, fps)
        return VideoSink(output, fps, options, use_timestamps=source_kind in LIVE_SOURCE_KINDS)
    if kind == "image":
        return ImageFileSink(output, options)
    source_dir = source_path if source_kind == "folder" else None
    return ImageFolderSink(output, options, source_dir=source_dir)


def any_quit_requested(sinks: Iterable[Sink]) -> bool:
    """Whether any sink (a window: q/Esc or closed) asked the pipeline to stop."""
    return any(sink.quit_requested for sink in sinks)
