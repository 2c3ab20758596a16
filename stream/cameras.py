"""Many cameras in one process: one set of models, one classifier batch per tick, each camera on its own.

Each :class:`Camera` keeps what belongs to one stream: its source (with its own grabber thread and reconnect
loop for live sources, :mod:`stream.sources.live`), its :class:`~stream.pipeline.Pipeline` state (tracker,
track book, scheduler, timings) and its own outputs. The detector and the classifiers are built once and
shared by every camera's pipeline. :func:`run_cameras` is the scheduler loop:

1. take the newest frame of every camera that has one (live sources never queue: a camera whose consumer
   fell behind drops frames, as with one camera; files and folders are read in order by a feeder thread);
2. convert each of those frames to BGR and run it through its camera's detector call and tracker
   (:meth:`Pipeline.prepare`), the cameras' frames in parallel threads (:class:`_Workers`);
3. classify the chosen faces of all of them in one batch per model (:func:`~stream.pipeline.classify_batch`);
4. fuse per camera (:meth:`Pipeline.complete`), again in parallel; then, in the loop's thread and camera
   order, annotate and write each camera's own outputs, then the shared outputs.

No step waits for a camera: a camera with no new frame is skipped on this tick, so one that stalls,
reconnects or dies never holds up the others. A camera whose source fails (gives up reconnecting, or cannot
be opened) goes ``offline`` and the run goes on with the rest; it ends when every camera has ended.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
#: Converts a live frame's picture when called (:meth:`stream.sources.LiveSource.read_unconverted`).
Convert = Callable[[], np.ndarray]


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
        taken = self.take()
        if taken is None:
            return None
        frame, convert = taken
        return frame if convert is None else dataclasses.replace(frame, image=convert())

    def take(self) -> tuple[Frame, Convert | None] | None:
        """As :meth:`poll`, but a live frame's picture is converted only when the returned function is called
        (None: the frame is as it will be), so that the loop converts several cameras' frames in parallel."""
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
            taken = self._read()
        except StopIteration:
            self._set_status("ended")
            return None
        except SourceError as error:
            self._set_status("offline", str(error))
            return None
        now = time.monotonic()
        if taken is None:
            if self.live and now - self._last_frame_at > self.pipeline.config.source.read_timeout_s:
                self._set_status("reconnecting")
            return None
        self._last_frame_at = now
        if self.status == "reconnecting":
            self._set_status("live")
        self.frames += 1
        frame, convert = taken
        return dataclasses.replace(frame, camera=self.name), convert

    def _read(self) -> tuple[Frame, Convert | None] | None:
        if self._feeder is not None:
            frame = self._feeder.poll()
            return None if frame is None else (frame, None)
        source = self.source
        if source is None:
            return None
        if not isinstance(source, LiveSource):  # a live source of another kind: take what comes
            return next(source), None
        read = source.read_unconverted(0.0)
        if read is None:
            return None
        # A frame between detections whose picture nobody shows is not converted (analytics: 0.6-3 ms a 1080p frame).
        frame, convert = read
        return frame, (convert if not self.pipeline.next_frame_coasts or self.shows_images() else None)

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
    draw = {camera.name: False for camera in cameras}
    for camera in cameras:
        camera.shared_shows_images = any(sink.shows_image for sink in shared_sinks)
    # The loop's thread and one worker per further core (one camera: no worker, everything in the loop's thread).
    workers = _Workers(min(len(cameras), os.cpu_count() or 1) - 1)
    try:
        frames, batches, batched = _serve(cameras, shared_sinks, classifiers, workers, should_stop, on_result, draw)
    finally:
        workers.close()
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


def _serve(cameras: list[Camera], shared_sinks: list[Sink], classifiers: list[Any], workers: _Workers,
           should_stop: Callable[[], bool] | None, on_result: OnResult | None,
           draw: dict[str, bool]) -> tuple[int, int, int]:
    """The loop of :func:`run_cameras`; returns the frames processed, the classifier batches and their faces."""
    frames = batches = batched = 0
    while not all(camera.done for camera in cameras):
        if should_stop is not None and should_stop():
            break
        ready: list[tuple[Camera, Frame, Convert | None]] = []
        for camera in cameras:
            t0 = time.perf_counter()
            taken = camera.take()
            if taken is not None:
                camera.pipeline.timer.add("decode", time.perf_counter() - t0)
                ready.append((camera, *taken))
                # Drawing costs time on every frame; a camera whose outputs are all analytics skips it.
                draw[camera.name] = camera.shows_images()
        for camera in cameras:
            if camera.done and not camera.retired:
                _retire(camera, shared_sinks)
        if not ready:
            time.sleep(_IDLE_S)
            continue
        pending = workers.map(_prepare, ready)
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
        completed = workers.map(_complete, [(camera, item, estimate)
                                            for (camera, _, _), item, estimate in zip(ready, pending, estimates)])
        for (camera, _, _), item, (faces, ended) in zip(ready, pending, completed):
            _finish_frame(camera, item.frame, faces, ended, shared_sinks, draw[camera.name], on_result)
            frames += 1
    return frames, batches, batched


class _Workers:
    """Runs one step of every ready camera's frame at once: the loop's thread and ``count`` worker threads.

    Why threads help under the GIL: most of a frame's work runs in native code that releases it (the picture's
    conversion in FFmpeg's swscale, the detector's resize in OpenCV, inference in onnxruntime: the detector and
    the face embedder), so on a machine with several cores the cameras' frames are converted, detected and
    completed in parallel (``python -m bench.streams``: 2 cores, 4 cameras of 1080p25). The frames of one tick
    belong to different cameras, each with its own tracker, book, scheduler and identities; the shared detector is
    stateless and onnxruntime sessions may be run from several threads. A camera's next frame is taken only after
    this one is completed (the next tick), so its state is never touched by two threads at once.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.executor = ThreadPoolExecutor(count, thread_name_prefix="camera-worker") if count > 0 else None

    def map(self, function: Callable[..., Any], items: list[tuple[Any, ...]]) -> list[Any]:
        """``[function(*item) for item in items]``, the items shared out over the threads; raises what one raised."""
        if self.executor is None or len(items) < 2:
            return [function(*item) for item in items]
        results: list[Any] = [None] * len(items)
        order = iter(range(len(items)))
        lock = threading.Lock()

        def drain() -> None:
            # Each thread takes the next item not started: a slow frame does not leave the other threads idle.
            while True:
                with lock:
                    k = next(order, None)
                if k is None:
                    return
                results[k] = function(*items[k])

        futures = [self.executor.submit(drain) for _ in range(min(self.count, len(items) - 1))]
        try:
            drain()
        finally:
            for future in futures:
                future.result()
        return results

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _prepare(camera: Camera, frame: Frame, convert: Convert | None) -> PendingFrame:
    """One camera's frame converted (when it came unconverted), detected and tracked: :meth:`Pipeline.prepare`."""
    pipeline = camera.pipeline
    if convert is not None:
        t0 = time.perf_counter()
        frame = dataclasses.replace(frame, image=convert())
        pipeline.timer.add("decode", time.perf_counter() - t0)
    return pipeline.prepare_still(frame) if camera.still else pipeline.prepare(frame)


def _retire(camera: Camera, shared_sinks: list[Sink]) -> None:
    """A camera that ended, went offline or whose run stops: its open tracks end now, with their fused labels,
    and its own outputs are finalized at once (its video is playable, its broker status says offline)."""
    camera.retired = True
    if camera.source is not None and not camera.still:
        _end_tracks(camera, shared_sinks, camera.pipeline.finish())
    if camera.source is not None:
        for sink in [*camera.sinks, *shared_sinks]:
            sink.end_source(camera.name, camera.source.inputs_skipped)
    for sink in camera.sinks:
        try:
            sink.close()
        except SinkError as error:
            logger.error("camera %s: %s", camera.name, error)


def _complete(camera: Camera, pending: PendingFrame, estimates: dict[str, Any]) -> tuple[Faces, list[dict[str, Any]]]:
    """One camera's frame fused (:meth:`Pipeline.complete`): its faces, and the summaries of the tracks that ended."""
    pipeline = camera.pipeline
    if camera.still:
        faces = pipeline.complete_still(pending, estimates)
        return faces, pipeline.still_records(pending.frame, faces)
    return pipeline.complete(pending, estimates)


def _finish_frame(camera: Camera, frame: Frame, faces: Faces, ended: list[dict[str, Any]], shared_sinks: list[Sink],
                  draw: bool, on_result: OnResult | None) -> None:
    """One camera's frame drawn (when an output shows it) and written, in the loop's thread (outputs are not
    thread-safe, and the shared ones get the cameras' frames in one order)."""
    pipeline = camera.pipeline
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
