"""The per-frame pipeline: detect → track → schedule → align → classify → fuse → annotate.

:class:`Pipeline` holds the stages and their state for one stream; :func:`run` drives
it from a source to sinks and times every stage, so the same code path serves the
CLI, the tests and the benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.registry import get_spec
from stream.align import align_for
from stream.analytics import Totals, track_record
from stream.annotate import Annotator
from stream.classify import OnnxClassifier, build_classifiers
from stream.config import Config, detection_interval
from stream.detectors import Detector, build_detector
from stream.labels import LabelRule, face_labels
from stream.quality import QualityRule
from stream.scheduler import Scheduler
from stream.trackbook import TrackBook
from stream.tracking import ByteTracker
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, LABEL_READY, N_OBS, P_FEMALE, Faces, Frame

logger = logging.getLogger(__name__)

STAGES = ("decode", "detect", "track", "align", "classify", "fuse", "draw", "encode")


@dataclass
class StageTimer:
    """Accumulated wall time per stage, in seconds."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    frames: int = 0
    classified_faces: int = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def ms_per_frame(self) -> dict[str, float]:
        frames = max(self.frames, 1)
        return {stage: round(self.seconds.get(stage, 0.0) * 1000 / frames, 3) for stage in STAGES}


class Pipeline:
    """All per-stream state: tracker ids, the track book, stage timings.

    Args:
        config: Validated configuration.
        detector: Use this detector instead of building one from the config.
        classifiers: Use these classifiers instead of building them from the config.
    """

    def __init__(
        self,
        config: Config,
        *,
        detector: Detector | None = None,
        classifiers: list[OnnxClassifier] | None = None,
    ) -> None:
        self.config = config
        self.detector = detector or build_detector(config.detector, config.models, config.runtime)
        self.classifiers = (
            classifiers if classifiers is not None
            else build_classifiers(config.classifier, config.models, config.runtime)
        )
        self.tracker = ByteTracker(config.tracker)
        self.scheduler = Scheduler(config.scheduler)
        self.book = TrackBook(config.trackbook)
        self.quality = QualityRule(config.quality)
        self.labels = LabelRule(config.labels)
        self.annotator = Annotator(config.annotate)
        self.timer = StageTimer()
        self.totals = Totals()
        self.fps_hint = 0.0
        self._last_faces = Faces.empty()
        self.detection_interval = detection_interval(config.detector.interval, None)
        self._since_detection = self.detection_interval  # so the first frame is a detection frame

    def set_frame_rate(self, fps: float | None) -> None:
        """Tell the tracker the source's frame rate (its lost-track buffer is in 30 fps frames)."""
        if fps and fps > 0:
            self.fps_hint = fps
            self.tracker = ByteTracker(self.config.tracker, frame_rate=float(fps))
            self.detection_interval = detection_interval(self.config.detector.interval, float(fps))
            self._since_detection = self.detection_interval

    def active_models(self) -> list[str]:
        return [self.detector.name, *(c.name for c in self.classifiers)]

    def _classify(self, frame: Frame, faces: Faces, *, gate: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                                              np.ndarray]:
        """Align, weigh (:mod:`stream.quality`) and classify ``faces``.

        Returns:
            ``(kept, estimates, weights)``: ``(n,)`` bool of the faces classified (``gate``: those the quality rule
            keeps; else all), the estimates of those faces, and their ``(k,)`` quality weights.
        """
        estimates: dict[str, np.ndarray] = {}
        start = time.perf_counter()
        chip_sets = align_for(frame.image, faces.landmarks, [(c.template, c.chip_size) for c in self.classifiers])
        weights = self.quality.weights(faces, chip_sets[0] if chip_sets else None)
        kept = self.quality.keep(weights) if gate else np.ones(len(faces), bool)
        mid = time.perf_counter()
        for classifier, chips in zip(self.classifiers, chip_sets):
            estimates.update(classifier.predict(chips[kept]))
        self.timer.add("align", mid - start)
        self.timer.add("classify", time.perf_counter() - mid)
        self.timer.classified_faces += int(kept.sum())
        return kept, estimates, weights[kept]

    def process(self, frame: Frame) -> tuple[Faces, list[dict[str, Any]]]:
        """Run one video frame through detection, tracking, classification and fusion.

        Returns:
            The tracked faces with fused labels, and summaries of the tracks that ended on this frame.
        """
        timer = self.timer
        book = self.book
        if self._since_detection < self.detection_interval:
            # A frame between detections (detector.interval): faces move with the tracker's motion
            # model and keep their labels; chips from predicted landmarks are not worth classifying.
            start = time.perf_counter()
            faces = self._last_faces = self.tracker.coast(self._last_faces)
            self._since_detection += 1
            book.observe_presence(faces, frame.index)
            labelled = self.labels.annotate(book.annotate(faces))
            timer.add("track", time.perf_counter() - start)
            timer.frames += 1
            return labelled, []
        self._since_detection = 0
        start = time.perf_counter()
        detections = self.detector.detect(frame.image)
        t1 = time.perf_counter()
        faces = self._last_faces = self.tracker.update(detections)
        t2 = time.perf_counter()
        timer.add("detect", t1 - start)
        timer.add("track", t2 - t1)

        book.observe_presence(faces, frame.index)
        chosen = self.scheduler.select(faces, book, frame.index, book.min_observations)
        if chosen.any():
            picked = faces[chosen]
            kept, estimates, weights = self._classify(frame, picked)
            t3 = time.perf_counter()
            book.add(picked[kept], estimates, frame.index, weights)
            book.skip(picked[~kept], frame.index)
        else:
            t3 = time.perf_counter()
        ended = book.forget(self.tracker.ended_track_ids) + book.prune(frame.index)
        records = [track_record(tid, est, self.fps_hint or 30.0, self.labels) for tid, est in ended]
        for record in records:
            self.totals.add(record)
        labelled = self.labels.annotate(book.annotate(faces))
        timer.add("fuse", time.perf_counter() - t3)
        timer.frames += 1
        return labelled, records

    def process_still(self, frame: Frame) -> Faces:
        """One still image: every eligible face classified once, its label shown at once.

        Stills have no time axis, so there is no tracker and no fusion: faces get ids 1..n in score order and
        each label rests on its one observation.
        """
        start = time.perf_counter()
        faces = self.detector.detect(frame.image)
        self.timer.add("detect", time.perf_counter() - start)
        n = len(faces)
        faces = Faces(faces.xyxy, faces.score, faces.landmarks, np.arange(1, n + 1, dtype=np.int64), faces.data)
        probs = np.full((n, len(AGE_GROUPS)), np.nan, np.float32)
        ages = np.full(n, np.nan, np.float32)
        p_female = np.full(n, np.nan, np.float32)
        chosen = self.scheduler.eligible(faces)
        if chosen.any():
            # A still has one look at each face: every eligible face is classified, whatever its quality.
            _, estimates, _ = self._classify(frame, faces[chosen], gate=False)
            for key, values in ((AGE_GROUP_PROBS, probs), (AGE_YEARS, ages), (P_FEMALE, p_female)):
                if key in estimates:
                    values[chosen] = estimates[key]
        self.timer.frames += 1
        ready = chosen & np.isfinite(probs).all(axis=1)
        return self.labels.annotate(faces.with_data(**{AGE_GROUP_PROBS: probs, AGE_YEARS: ages, P_FEMALE: p_female,
                                                       N_OBS: ready.astype(np.int32), LABEL_READY: ready}),
                                    remember=False)

    def still_records(self, frame: Frame, faces: Faces) -> list[dict[str, Any]]:
        """One summary per face of a still image (counted into the totals): a still's faces are its people."""
        records = []
        for face_id, label in zip(faces.track_id.tolist(), face_labels(faces)):
            record = {"track_id": int(face_id), "first_frame": frame.index, "last_frame": frame.index,
                      "duration_s": None, **label.as_record()}
            if frame.name:
                record["image"] = frame.name
            self.totals.add(record)
            records.append(record)
        return records

    def finish(self) -> list[dict[str, Any]]:
        """Summaries of every track still open at the end of the stream (counted into the totals)."""
        open_tracks = self.book.forget(list(self.book.tracks))
        records = [track_record(tid, est, self.fps_hint or 30.0, self.labels) for tid, est in open_tracks]
        for record in records:
            self.totals.add(record)
        return records


@dataclass
class RunResult:
    frames: int
    seconds: float
    stage_ms: dict[str, float]
    totals: dict[str, Any]
    interrupted_by_user: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run(
    pipeline: Pipeline,
    frames: Iterable[Frame],
    sinks: list[Any],
    *,
    still_images: bool = False,
    max_frames: int | None = None,
    on_ended: Callable[[list[dict[str, Any]]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Drive ``pipeline`` over ``frames`` and hand every annotated frame to each sink.

    Args:
        pipeline: The stages and their state.
        frames: A source (any iterable of :class:`Frame`).
        sinks: :class:`~stream.sinks.Sink` objects: ``write(frame, faces)`` gets every frame (``frame.image``
            annotated), ``end_tracks(records)`` the summaries of the tracks that ended (for stills, one per face).
        still_images: Treat frames as independent stills (image mode).
        max_frames: Stop after this many frames.
        on_ended: Also called with the summaries of tracks that ended.
        should_stop: Polled after each frame (e.g. a window's quit key).
    """
    timer = pipeline.timer
    started = time.perf_counter()
    processed = 0
    recent: list[float] = []
    interrupted = False
    iterator = iter(frames)
    # Drawing costs time on every frame; an events-only (analytics) run has nobody to show it to.
    draw = any(getattr(sink, "shows_image", True) for sink in sinks)
    while max_frames is None or processed < max_frames:
        t0 = time.perf_counter()
        frame = next(iterator, None)
        if frame is None:
            break
        timer.add("decode", time.perf_counter() - t0)
        ended: list[dict[str, Any]] = []
        if still_images:
            faces = pipeline.process_still(frame)
            ended = pipeline.still_records(frame, faces)
        else:
            faces, ended = pipeline.process(frame)
        now = time.perf_counter()
        recent = [t for t in recent if now - t < 2.0] + [now]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else None
        annotated = frame
        t_draw = now
        if draw:
            drawn = pipeline.annotator.draw(frame.image, faces, fps, in_place=True)
            annotated = Frame(frame.index, frame.timestamp, drawn, frame.source, frame.name)
            t_draw = time.perf_counter()
            timer.add("draw", t_draw - now)
        for sink in sinks:
            sink.write(annotated, faces)
        _end_tracks(sinks, ended, on_ended)
        timer.add("encode", time.perf_counter() - t_draw)
        processed += 1
        if should_stop is not None and should_stop():
            interrupted = True
            break
    if not still_images:
        _end_tracks(sinks, pipeline.finish(), on_ended)
    seconds = time.perf_counter() - started
    return RunResult(processed, seconds, timer.ms_per_frame(), pipeline.totals.as_dict(), interrupted)


def _end_tracks(sinks: list[Any], records: list[dict[str, Any]],
                on_ended: Callable[[list[dict[str, Any]]], None] | None) -> None:
    if not records:
        return
    for sink in sinks:
        sink.end_tracks(records)
    if on_ended is not None:
        on_ended(records)


def describe_models(pipeline: Pipeline) -> list[str]:
    """One log line per active model: name, task, licence, and a warning for non-commercial ones."""
    lines = []
    for name in pipeline.active_models():
        spec = get_spec(name)
        lines.append(f"model {name} ({spec.task}): {spec.licence_note}; {spec.provenance}")
    return lines
