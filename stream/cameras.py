"""Many cameras in one process: one set of models, one classifier batch per tick, each camera on its own.

Each :class:`Camera` keeps what belongs to one stream: its source (with its own grabber thread and reconnect
loop for live sources, :mod:`stream.sources.live`), its :class:`~stream.pipeline.Pipeline` state (tracker,
track book, scheduler, timings) and its own outputs. The detector and the classifiers are built once and
shared by every camera's pipeline. :func:`run_cameras` is the scheduler loop:

1. take the newest frame of every camera that has one (live sources never queue: a camera whose consumer
   fell behind drops frames, as with one camera; files and folders are read in order by a feeder thread);
2. run each of those frames through its camera's detector call and tracker (:meth:`Pipeline.prepare`);
3. classify the chosen faces of all of them in one batch per model (:func:`~stream.pipeline.classify_batch`);
4. fuse, annotate and write per camera (:meth:`Pipeline.complete`), then the shared outputs.

No step waits for a camera: a camera with no new frame is skipped on this tick, so one that stalls,
reconnects or dies never holds up the others. A camera whose source fails (gives up reconnecting, or cannot
be opened) goes ``offline`` and the run goes on with the rest; it ends when every camera has ended.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.config import CameraSpec
from stream.pipeline import PendingFrame, Pipeline, RunResult, classify_batch
from stream.quality import KEPT
from stream.sinks import Sink, SinkError
from stream.sources import LiveSource, Source, SourceError
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

# Sleep of the scheduler loop on a tick where no camera had a frame: short against a 40 ms frame period.
_IDLE_S = 0.002
STATUSES = ("opening", "live", "reconnecting", "ended", "offline")

Opener = Callable[[], Source]
SinkOpener = Callable[[Source], list[Sink]]


class _Feeder:
    """Reads a file-like source (video file, image, folder) in a thread, one frame ahead of the loop.

    Files are processed frame by frame (never dropped), but their decoder may be slower than the loop for a
    while; the loop then skips the camera instead of waiting for it.
    """

    _END = object()

    def __init__(self, source: Source, name: str) -> None:
        self.source = source
        self.slot: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"feeder:{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        item: Any = self._END
        try:
            for frame in self.source:
                if not self._put(frame):
                    return
        except SourceError as error:
            item = error
        self._put(item)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.slot.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def poll(self) -> Frame | None:
        """The next frame if one is decoded. Raises StopIteration at the end, SourceError on failure."""
        try:
            item = self.slot.get_nowait()
        except queue.Empty:
            return None
        if item is self._END:
            raise StopIteration
        if isinstance(item, SourceError):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2.0)


@dataclass
class Camera:
    """One camera's stream: its source, its per-stream pipeline state and its own outputs.

    Args:
        spec: The camera's name, source and settings.
        pipeline: Its pipeline (sharing the detector and classifiers of the others; its own tracker and book).
        opener: Opens the source (called in a thread for live sources: opening waits for the first frame).
        sink_opener: Opens the camera's own outputs once its source is open (they need its kind and frame rate).
        live: Whether the source is live (webcam, stream): opened in the background, newest frame only.
        max_frames: Stop this camera after this many frames (None: at its end).
    """

    spec: CameraSpec
    pipeline: Pipeline
    opener: Opener
    sink_opener: SinkOpener
    live: bool
    max_frames: int | None = None
    status: str = "opening"
    error: str | None = None
    source: Source | None = None
    sinks: list[Sink] = field(default_factory=list)
    frames: int = 0
    still: bool = False
    retired: bool = False
    shared_shows_images: bool = False  # set by run_cameras from the outputs every camera writes to
    _feeder: _Feeder | None = None
    _opening: threading.Thread | None = None
    _opened: Source | BaseException | None = None
    _last_frame_at: float = 0.0
    _recent: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def done(self) -> bool:
        return self.status in ("ended", "offline")

    def start(self) -> None:
        """Open the source: at once for files (a bad path fails the run before any model loads), in a thread for
        live sources (a camera that is slow to answer must not hold up the others).

        Raises:
            SourceError, SinkError: A file source or its outputs cannot be opened.
        """
        if self.live:
            self._opening = threading.Thread(target=self._open_in_background, name=f"open:{self.name}", daemon=True)
            self._opening.start()
            return
        self._attach(self.opener())

    def _open_in_background(self) -> None:
        try:
            self._opened = self.opener()
        except (SourceError, OSError, ValueError, TypeError) as error:
            self._opened = error

    def _attach(self, source: Source) -> None:
        self.source = source
        self.still = source.kind in ("image", "folder")
        self.pipeline.set_frame_rate(source.fps)
        try:
            self.sinks = self.sink_opener(source)
        except BaseException:
            source.close()
            self.source = None
            raise
        if not source.is_live:
            self._feeder = _Feeder(source, self.name)
        self._set_status("live")
        self._last_frame_at = time.monotonic()

    def _set_status(self, status: str, error: str | None = None) -> None:
        if status == self.status:
            return
        previous, self.status = self.status, status
        self.error = error or self.error
        # Outlets with a camera status (the broker's retained PREFIX/CAMERA/status) say it at once; "live" only when
        # it comes back (the outlet said "live" itself when it opened).
        if status in ("reconnecting", "offline") or (status == "live" and previous == "reconnecting"):
            for sink in self.sinks:
                report = getattr(sink, "camera_status", None)
                if callable(report) and not sink.closed:
                    report(status, **({"reason": error} if error else {}))
        if status == "offline":
            logger.error("camera %s offline: %s", self.name, error)
        elif status == "reconnecting":
            logger.warning("camera %s: no frame for %.1f s (reconnecting)", self.name,
                           time.monotonic() - self._last_frame_at)
        else:
            logger.info("camera %s %s", self.name, status)

    def poll(self) -> Frame | None:
        """The camera's newest frame not processed yet, or None; never waits. Updates :attr:`status`."""
        if self.done:
            return None
        if self.source is None:
            if self._opening is None or self._opening.is_alive():
                return None
            opened, self._opened = self._opened, None
            if not isinstance(opened, Source):
                self._set_status("offline", str(opened))
                return None
            try:
                self._attach(opened)
            except (SinkError, OSError, ValueError) as error:
                self._set_status("offline", f"cannot open its outputs: {error}")
                return None
        if self.max_frames is not None and self.frames >= self.max_frames:
            self._set_status("ended")
            return None
        try:
            frame = self._read()
        except StopIteration:
            self._set_status("ended")
            return None
        except SourceError as error:
            self._set_status("offline", str(error))
            return None
        now = time.monotonic()
        if frame is None:
            if self.live and now - self._last_frame_at > self.pipeline.config.source.read_timeout_s:
                self._set_status("reconnecting")
            return None
        self._last_frame_at = now
        if self.status == "reconnecting":
            self._set_status("live")
        self.frames += 1
        return dataclasses.replace(frame, camera=self.name)

    def _read(self) -> Frame | None:
        if self._feeder is not None:
            return self._feeder.poll()
        source = self.source
        if source is None:
            return None
        if not isinstance(source, LiveSource):  # a live source of another kind: take what comes
            return next(source)
        # A frame between detections whose picture nobody shows is not converted (analytics: ~3 ms a 1080p frame).
        pixels = not self.pipeline.next_frame_coasts or self.shows_images()
        return source.read(0.0, pixels=pixels)

    def shows_images(self) -> bool:
        """Whether an output of this camera (its own, or one it shares) uses the annotated picture."""
        return self.shared_shows_images or any(sink.shows_image for sink in self.sinks)

    def fps(self, now: float) -> float | None:
        """Frames processed per second over the last two seconds (for the overlay)."""
        self._recent = [t for t in self._recent if now - t < 2.0] + [now]
        span = self._recent[-1] - self._recent[0]
        return (len(self._recent) - 1) / span if len(self._recent) > 1 and span > 0 else None

    def close(self) -> None:
        """Stop reading and finalize the camera's own outputs (also after an error)."""
        if self._feeder is not None:
            self._feeder.stop.set()
        if self.source is not None:
            self.source.close()
        if self._feeder is not None:
            self._feeder.close()
        if self._opening is not None and self._opening.is_alive():
            self._opening.join(timeout=0.5)
        if isinstance(self._opened, Source):
            self._opened.close()
        for sink in reversed(self.sinks):
            try:
                sink.close()
            except SinkError as error:
                logger.error("camera %s: %s", self.name, error)


@dataclass
class CamerasResult:
    """What :func:`run_cameras` did: per camera a :class:`RunResult`, and the loop's totals."""

    cameras: dict[str, RunResult]
    status: dict[str, str]
    errors: dict[str, str]
    frames: int
    seconds: float
    batches: int = 0
    batched_faces: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


OnResult = Callable[[Camera, Frame, Faces, float], None]


def run_cameras(
    cameras: list[Camera],
    shared_sinks: list[Sink],
    *,
    should_stop: Callable[[], bool] | None = None,
    on_result: OnResult | None = None,
) -> CamerasResult:
    """Serve every camera until all have ended (or ``should_stop()``); see the module docstring.

    The cameras must have been started (:meth:`Camera.start`); their own outputs are closed by the caller
    (:meth:`Camera.close`), as are ``shared_sinks``.

    Args:
        cameras: The cameras; their pipelines share one detector and one list of classifiers.
        shared_sinks: Outputs that get every camera's frames and ended tracks (events, summary).
        should_stop: Polled once per tick (Ctrl-C, a window's quit key).
        on_result: Called after each processed frame with ``(camera, frame, faces, time.perf_counter())``.
    """
    if not cameras:
        raise ValueError("cameras must not be empty")
    classifiers = cameras[0].pipeline.classifiers
    if any(camera.pipeline.classifiers is not classifiers for camera in cameras):
        raise ValueError("the cameras' pipelines must share one list of classifiers (Pipeline(classifiers=...))")
    started = time.perf_counter()
    frames = batches = batched = 0
    draw = {camera.name: False for camera in cameras}
    for camera in cameras:
        camera.shared_shows_images = any(sink.shows_image for sink in shared_sinks)
    while not all(camera.done for camera in cameras):
        if should_stop is not None and should_stop():
            break
        ready: list[tuple[Camera, Frame, float]] = []
        for camera in cameras:
            t0 = time.perf_counter()
            frame = camera.poll()
            if frame is not None:
                camera.pipeline.timer.add("decode", time.perf_counter() - t0)
                ready.append((camera, frame, t0))
                # Drawing costs time on every frame; a camera whose outputs are all analytics skips it.
                draw[camera.name] = camera.shows_images()
        for camera in cameras:
            if camera.done and not camera.retired:
                _retire(camera, shared_sinks)
        if not ready:
            time.sleep(_IDLE_S)
            continue
        pending: list[PendingFrame] = []
        for camera, frame, _ in ready:
            pipeline = camera.pipeline
            pending.append(pipeline.prepare_still(frame) if camera.still else pipeline.prepare(frame))
        # One classifier call per model for the due faces of every camera on this tick.
        due = [i for i, p in enumerate(pending) if len(p.picked)]
        estimates: list[dict[str, Any]] = [{} for _ in pending]
        if due:
            t0 = time.perf_counter()
            results, align_s = classify_batch(classifiers, [(pending[i].frame.image, pending[i].picked) for i in due],
                                              [pending[i].quality for i in due])
            seconds = time.perf_counter() - t0
            total = sum(len(pending[i].picked) for i in due)
            for i, result in zip(due, results):
                estimates[i] = result
                timer = ready[i][0].pipeline.timer
                share = len(pending[i].picked) / total  # the batch's time, shared by the faces each camera sent
                timer.add("align", align_s * share)
                timer.add("classify", (seconds - align_s) * share)
                timer.classified_faces += int(result[KEPT].sum())
            batches += 1
            batched += sum(int(result[KEPT].sum()) for result in results)  # the faces the models saw
        for (camera, frame, _), item, estimate in zip(ready, pending, estimates):
            _finish_frame(camera, frame, item, estimate, shared_sinks, draw[camera.name], on_result)
            frames += 1
    for camera in cameras:
        if not camera.retired:
            _retire(camera, shared_sinks)
    seconds = time.perf_counter() - started
    results_by_camera = {
        camera.name: RunResult(camera.frames, seconds, camera.pipeline.timer.ms_per_frame(),
                               camera.pipeline.totals.as_dict())
        for camera in cameras
    }
    return CamerasResult(results_by_camera, {c.name: c.status for c in cameras},
                         {c.name: c.error for c in cameras if c.error}, frames, seconds, batches, batched)


def _retire(camera: Camera, shared_sinks: list[Sink]) -> None:
    """A camera that ended, went offline or whose run stops: its open tracks end now, with their fused labels,
    and its own outputs are finalized at once (its video is playable, its broker status says offline)."""
    camera.retired = True
    if camera.source is not None and not camera.still:
        _end_tracks(camera, shared_sinks, camera.pipeline.finish())
    for sink in camera.sinks:
        try:
            sink.close()
        except SinkError as error:
            logger.error("camera %s: %s", camera.name, error)


def _finish_frame(camera: Camera, frame: Frame, pending: PendingFrame, estimates: dict[str, Any],
                  shared_sinks: list[Sink], draw: bool, on_result: OnResult | None) -> None:
    pipeline = camera.pipeline
    if camera.still:
        faces = pipeline.complete_still(pending, estimates)
        ended = pipeline.still_records(frame, faces)
    else:
        faces, ended = pipeline.complete(pending, estimates)
    now = time.perf_counter()
    annotated = frame
    t_draw = now
    if draw:
        drawn = pipeline.annotator.draw(frame.image, faces, camera.fps(now), in_place=True)
        annotated = dataclasses.replace(frame, image=drawn)
        t_draw = time.perf_counter()
        pipeline.timer.add("draw", t_draw - now)
    for sink in camera.sinks:
        sink.write(annotated, faces)
    for sink in shared_sinks:
        sink.write(annotated, faces)
    _end_tracks(camera, shared_sinks, ended)
    done = time.perf_counter()
    pipeline.timer.add("encode", done - t_draw)
    if on_result is not None:
        on_result(camera, frame, faces, done)


def _end_tracks(camera: Camera, shared_sinks: list[Sink], records: list[dict[str, Any]]) -> None:
    if not records:
        return
    for sink in [*camera.sinks, *shared_sinks]:
        sink.end_tracks(records)
