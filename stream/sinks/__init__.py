"""Outputs of the pipeline: video file, images, RTSP push, on-screen window, JSONL events, summary.

Every sink is a context manager with ``write(frame, faces)`` and ``close()``; ``__exit__``
always finalizes the output (a video file stays playable after Ctrl-C). Sinks register themselves by
kind (``class VideoSink(Sink, kind="video")``, see :data:`SINKS`); :func:`open_sinks` maps the command
line's ``--output``/``--events``/``--summary``/``--show`` to kinds and opens them through the registry,
checking every output can be written before any processing starts::

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
from stream.sinks.base import SINKS, Sink, SinkContext, SinkError
from stream.sinks.events import STDOUT, EventsSink, face_records, frame_record
from stream.sinks.images import IMAGE_EXTENSIONS, ImageFileSink, ImageFolderSink
from stream.sinks.mqtt import MqttSink, is_mqtt_url
from stream.sinks.rtsp import RtspSink, is_rtsp_url
from stream.sinks.summary import SummarySink
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
    "SinkContext",
    "SinkError",
    "SinkOptions",
    "SummarySink",
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


def events_kind(events: str) -> str:
    """Which sink an ``--events`` value selects: ``mqtt[s]://`` a broker, else a JSONL file (``-``: standard output)."""
    return "mqtt" if is_mqtt_url(events) else "events"


def open_sinks(
    output: str | None,
    events: str | None,
    show: bool,
    *,
    source_kind: str,
    fps: float | Fraction | None,
    options: SinkOptions | Mapping[str, Any] | Any,
    source_path: str | os.PathLike[str] | None = None,
    summary: str | None = None,
    source_name: str = "",
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
        source_path: The source's local path (a file or a folder), so that no output overwrites it.
        summary: ``--summary``: a JSON file written when the run ends, or None.
        source_name: The source's display name (the summary records it; an MQTT sink names its camera after it
            unless its URL gives one).

    Returns:
        The opened sinks, in the order output, events, summary, window.

    Raises:
        SinkError: An output cannot be written, does not fit the source, names the input or another output,
            or no display is available.
        ValueError: ``source_kind`` is unknown or ``fps`` is not positive.
        TypeError: ``options`` is neither SinkOptions, a mapping nor a dataclass.
    """
    options = SinkOptions.coerce(options)
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind must be one of {', '.join(SOURCE_KINDS)}, got {source_kind!r}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive or None, got {fps!r}")
    requests: list[tuple[str, str, str]] = []  # (flag, kind, target)
    if output is not None:
        requests.append(("--output", output_kind(output, source_kind), output))
    if events is not None:
        requests.append(("--events", events_kind(events), events))
    if summary is not None:
        requests.append(("--summary", "summary", summary))
    if show:
        requests.append(("--show", "window", ""))
    local = Path(source_path) if source_path is not None else None
    check_distinct_outputs(local, [(flag, target) for flag, kind, target in requests if _is_local_file(kind, target)])
    context = SinkContext(source_kind, fps, options, local, source_name)
    sinks: list[Sink] = []
    try:
        for _flag, kind, target in requests:
            sinks.append(get_sink_class(kind).open(target, context))
    except BaseException:
        # All or nothing: do not leave a half-opened set (e.g. an empty video file) behind.
        for sink in reversed(sinks):
            try:
                sink.close()
            except SinkError as err:
                logger.warning("%s", err)
        raise
    return sinks


def _is_local_file(kind: str, target: str) -> bool:
    return kind not in ("rtsp", "window") and target != STDOUT and "://" not in target


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file or folder: by resolved path, and by inode for existing ones (hard
    links, bind mounts, case-insensitive file systems)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_distinct_outputs(source: Path | None, outputs: list[tuple[str, str]]) -> None:
    """Refuse outputs that would overwrite the input or each other, before anything is opened.

    Args:
        source: The source's local file or folder, or None.
        outputs: ``(flag, path)`` of every local output.

    Raises:
        SinkError: Two paths name the same file (through links too), or an output would replace the input.
    """
    paths = [(flag, Path(target).expanduser()) for flag, target in outputs]
    for i, (flag, path) in enumerate(paths):
        if source is not None and _same_file(path, source):
            raise SinkError(f"{flag} {str(path)!r} is the input itself; writing it would destroy the input. "
                            "Choose another path")
        for other_flag, other in paths[:i]:
            if _same_file(path, other):
                raise SinkError(f"{other_flag} and {flag} name the same file {str(path)!r}; give them different "
                                "paths")


def any_quit_requested(sinks: Iterable[Sink]) -> bool:
    """Whether any sink (a window: q/Esc or closed) asked the pipeline to stop."""
    return any(sink.quit_requested for sink in sinks)
