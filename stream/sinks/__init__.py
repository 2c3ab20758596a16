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

import contextlib
import errno
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from stream.config import SinkOptions
from stream.sinks.base import SINKS, Sink, SinkContext, SinkError, same_file
from stream.sinks.counts import CountsSink
from stream.sinks.events import STDOUT, EventsSink, face_records, frame_record
from stream.sinks.images import IMAGE_EXTENSIONS, ImageFileSink, ImageFolderSink
from stream.sinks.locks import OutputLock
from stream.sinks.mqtt import MqttSink, is_mqtt_url
from stream.sinks.rtsp import RtspSink, is_rtsp_url
from stream.sinks.summary import SummarySink
from stream.sinks.video import VIDEO_EXTENSIONS, VideoSink
from stream.sinks.window import WindowSink, display_problem
from stream.sources import IMAGE_EXTENSIONS as INPUT_IMAGE_EXTENSIONS
from stream.sources import redact_url

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_SOURCE_KINDS",
    "LIVE_SOURCE_KINDS",
    "SINKS",
    "SOURCE_KINDS",
    "VIDEO_EXTENSIONS",
    "CountsSink",
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
    "run_inputs",
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
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]+):/", output)
    if scheme is not None:  # not a path: 'http://h/x.mp4' would become a folder named 'http:'
        raise SinkError(f"--output {redact_url(output)!r}: {scheme[1].lower()}:// is not an output; give a file "
                        "path, or an rtsp:// URL to push to an RTSP server")
    ext = os.path.splitext(output)[1].lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if source_kind in IMAGE_SOURCE_KINDS:
        if ext in IMAGE_EXTENSIONS:
            if source_kind == "folder":
                raise SinkError(
                    f"--output {redact_url(output)!r} is one image file but the source is a folder of images; "
                    "give an output folder (one annotated image per input) or a video file"
                )
            return "image"
        if ext and not Path(output).is_dir():
            raise SinkError(
                f"--output {redact_url(output)!r}: unknown extension {ext!r}; use an image extension "
                f"({', '.join(IMAGE_EXTENSIONS)}), a video one ({', '.join(VIDEO_EXTENSIONS)}) or a folder"
            )
        return "image_folder"
    raise SinkError(
        f"--output {redact_url(output)!r}: for a {source_kind} source give a video file "
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
    camera: str = "",
    counts: str | None = None,
    inputs: Sequence[tuple[str, Path]] = (),
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
            unless its URL gives one or ``camera`` is given).
        camera: The camera's name ("" for outputs that several cameras share).
        counts: ``--counts``: a .csv or .parquet file of people per time window, or None.
        inputs: The other files the run reads (:func:`run_inputs`), which no output may name.

    Returns:
        The opened sinks, in the order output, events, summary, counts, window.

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
        if summary == STDOUT:  # '-' is standard output for --events only; a file named '-' would surprise
            raise SinkError("--summary -: the summary is a file written at the end; give its path (only --events - "
                            "writes to standard output)")
        requests.append(("--summary", "summary", summary))
    if counts is not None:
        requests.append(("--counts", "counts", counts))
    if show:
        requests.append(("--show", "window", ""))
    local = Path(source_path) if source_path is not None else None
    check_distinct_outputs(local, [(flag, target) for flag, kind, target in requests if _is_local_file(kind, target)],
                           inputs)
    context = SinkContext(source_kind, fps, options, local, source_name, camera)
    sinks: list[Sink] = []
    locks: list[OutputLock] = []
    try:
        for flag, kind, target in requests:
            lock = None
            if _is_local_file(kind, target):
                # Before the sink opens (and truncates) the file: another run's output stays whole.
                lock = OutputLock(flag, target).acquire()
                locks.append(lock)
            try:
                sinks.append(get_sink_class(kind).open(target, context))
                if lock is not None:
                    sinks[-1].hold(lock)
            except OSError as err:  # anything a sink's own checks did not put into words
                raise SinkError(f"{flag} {redact_url(target)!r}: cannot write it ({err.strerror or err}); "
                                "choose another path") from err
    except BaseException:
        # All or nothing: do not leave a half-opened set (e.g. an empty video file) behind.
        for sink in reversed(sinks):
            try:
                sink.close()
            except SinkError as err:
                logger.warning("%s", err)
        for lock in locks:
            lock.release()
        raise
    return sinks


def _is_local_file(kind: str, target: str) -> bool:
    return kind not in ("rtsp", "window") and target != STDOUT and "://" not in target


def _check_output_path(flag: str, path: Path) -> None:
    """Refuse a path no file can have (a name over 255 bytes, a symlink loop on the way) with a SinkError."""
    shown = str(path) if len(str(path)) <= 120 else str(path)[:60] + "..." + str(path)[-40:]
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise SinkError(f"{flag} {shown!r} has a name too long for the file system (255 bytes per name); "
                        "choose a shorter one")
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        # A new file (ENOENT) is fine; a file in the way or no permission is worded by the sink's own checks.
        if err.errno in (errno.ELOOP, errno.ENAMETOOLONG):
            reason = "a symbolic link loop is on the way" if err.errno == errno.ELOOP else "a name is too long"
            raise SinkError(f"{flag} {shown!r}: {reason}; choose another path") from None
    else:
        # Opening a FIFO for writing blocks until a reader comes, maybe forever; a socket cannot be opened.
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise SinkError(f"{flag} {shown!r} is a named pipe or socket, not a file; give a file path "
                            "(--events - writes the events to standard output)")
    try:
        path.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        raise SinkError(f"{flag} {shown!r}: a symbolic link loop is on the way ({err}); choose another path") from None



def check_distinct_outputs(source: Path | None, outputs: list[tuple[str, str]],
                           inputs: Sequence[tuple[str, Path]] = ()) -> None:
    """Refuse outputs that would overwrite an input or each other, before anything is opened.

    Args:
        source: The source's local file or folder (whose images are inputs too), or None.
        outputs: ``(flag, path)`` of every local output.
        inputs: ``(what, path)`` of the other files the run reads: the config file, the model files
            (see :func:`run_inputs`).

    Raises:
        SinkError: Two paths name the same file (through links too), or an output would replace an input.
    """
    paths = [(flag, Path(target).expanduser()) for flag, target in outputs]
    for flag, path in paths:
        _check_output_path(flag, path)
    read = list(inputs)
    if source is not None and source.is_dir():
        # A folder's images are read one by one: an output onto one of them would replace it.
        with contextlib.suppress(OSError):
            read += [("an image of the input folder", p) for p in source.iterdir()
                     if p.suffix.lower() in INPUT_IMAGE_EXTENSIONS and p.is_file()]
    for i, (flag, path) in enumerate(paths):
        if source is not None and same_file(path, source):
            raise SinkError(f"{flag} {str(path)!r} is the input itself; writing it would destroy the input. "
                            "Choose another path")
        for what, other in read:
            if same_file(path, other):
                raise SinkError(f"{flag} {str(path)!r} is {what} ({str(other)!r}); writing it would destroy it. "
                                "Choose another path")
        for other_flag, other in paths[:i]:
            if same_file(path, other):
                raise SinkError(f"{other_flag} and {flag} name the same file {str(path)!r}; give them different "
                                "paths")


def run_inputs(config_file: str | os.PathLike[str] | None, model_dirs: Iterable[Path]) -> list[tuple[str, Path]]:
    """The files a run reads besides its source, which no output may name: the config file and every file in
    the model folders (the cache and the local folders; an output there would replace a model).

    Args:
        config_file: The ``--config`` file (None: none given).
        model_dirs: The model cache and local model folders (missing ones are skipped).
    """
    found: list[tuple[str, Path]] = []
    if config_file is not None:
        found.append(("the config file", Path(config_file).expanduser()))
    for folder in model_dirs:
        with contextlib.suppress(OSError):
            found += [("a model file", p) for p in Path(folder).iterdir() if p.is_file()]
    return found


def any_quit_requested(sinks: Iterable[Sink]) -> bool:
    """Whether any sink (a window: q/Esc or closed) asked the pipeline to stop."""
    return any(sink.quit_requested for sink in sinks)
