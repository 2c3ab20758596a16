"""The per-frame pipeline: detect → track → schedule → align → classify → fuse → annotate.

:class:`Pipeline` holds the stages and their state for one stream; :func:`run` drives
it from a source to sinks and times every stage, so the same code path serves the
CLI, the tests and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
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
from stream.quality import KEPT, WEIGHT, QualityRule
from stream.scheduler import Scheduler
from stream.trackbook import TrackBook
from stream.tracking import ByteTracker
from stream.tracking.identity import Embedder, Identities
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, LABEL_READY, N_OBS, P_FEMALE, Faces, Frame

logger = logging.getLogger(__name__)

STAGES = ("decode", "detect", "track", "align", "classify", "identify", "fuse", "draw", "encode")
#: ``Pipeline(embedder=...)`` not given: build the embedding model the config names.
_FROM_CONFIG: Any = object()


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


@dataclass
class PendingFrame:
    """A frame between :meth:`Pipeline.prepare` and :meth:`Pipeline.complete`.

    Attributes:
        frame: The frame.
        faces: Its tracked (or, for stills, numbered) faces.
        picked: The faces to classify now (``faces[chosen]``; empty on frames between detections).
        coasted: A frame between detections: nothing to classify or fuse.
        chosen: The ``(n,)`` bool mask of the picked faces.
        quality: The rule that weighs the picked faces' observations (None: a still, every face counts).
    """

    frame: Frame
    faces: Faces
    picked: Faces
    coasted: bool = False
    chosen: np.ndarray | None = None
    quality: QualityRule | None = None


def classify_batch(classifiers: list[OnnxClassifier], items: list[tuple[np.ndarray, Faces]],
                   rules: Sequence[QualityRule | None] | None = None) -> tuple[list[dict[str, np.ndarray]], float]:
    """Weigh and classify the faces of several images (frames of one or many streams) in one call per model.

    Args:
        classifiers: The classifiers (their chips are aligned for each one's template and size).
        items: ``(image, faces)`` pairs: ``(H, W, 3)`` uint8 BGR images and the faces to classify on each.
        rules: Per item, the quality rule that weighs its observations and skips those too poor to classify
            (:mod:`stream.quality`); None (or no ``rules``): every face is classified, with weight 1 (stills).

    Returns:
        One dict per item, keyed by ``stream.types`` names, with that item's rows: the estimates (NaN on the rows
        the rule skipped), :data:`~stream.quality.WEIGHT` and :data:`~stream.quality.KEPT`; and the seconds spent
        aligning and weighing chips (the rest of the call is inference).
    """
    start = time.perf_counter()
    inputs = [(c.template, c.chip_size) for c in classifiers]
    per_item: list[list[np.ndarray] | None] = []
    weights: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for (image, faces), rule in zip(items, rules if rules is not None else [None] * len(items)):
        chips = align_for(image, faces.landmarks, inputs) if len(faces) else None
        per_item.append(chips)
        if rule is None:
            weights.append(np.ones(len(faces), np.float32))
            kept.append(np.ones(len(faces), bool))
        else:
            # Sharpness is read on the first classifier's chip: the one the evidence comes from.
            weights.append(rule.weights(faces, chips[0] if chips else None))
            kept.append(rule.keep(weights[-1]))
    stacked = []
    for k, classifier in enumerate(classifiers):
        side = classifier.chip_size
        parts = [chips[k][keep] for chips, keep in zip(per_item, kept) if chips is not None]
        stacked.append(np.concatenate(parts) if parts else np.zeros((0, side, side, 3), np.uint8))
    align_s = time.perf_counter() - start
    merged: dict[str, np.ndarray] = {}
    for classifier, batch in zip(classifiers, stacked):
        merged.update(classifier.predict(batch))
    bounds = np.cumsum([0, *(int(keep.sum()) for keep in kept)])
    results = []
    for i, keep in enumerate(kept):
        result: dict[str, np.ndarray] = {WEIGHT: weights[i], KEPT: keep}
        for key, values in merged.items():
            rows = np.full((len(keep), *values.shape[1:]), np.nan, np.float32)
            rows[keep] = values[bounds[i]:bounds[i + 1]]
            result[key] = rows
        results.append(result)
    return results, align_s


class Pipeline:
    """All per-stream state: tracker ids, the track book, stage timings.

    Args:
        config: Validated configuration.
        detector: Use this detector instead of building one from the config (several streams share one).
        classifiers: Use these classifiers instead of building them from the config (several streams share them).
        camera: The camera's name, carried by every track summary (empty: none).
        embedder: Use this face-embedding model (None: no appearance) instead of building ``identity.embedding_model``.
    """

    def __init__(
        self,
        config: Config,
        *,
        detector: Detector | None = None,
        classifiers: list[OnnxClassifier] | None = None,
        camera: str = "",
        embedder: Embedder | None = _FROM_CONFIG,
    ) -> None:
        self.config = config
        self.camera = camera
        self.detector = detector or build_detector(config.detector, config.models, config.runtime)
        self.classifiers = (
            classifiers if classifiers is not None
            else build_classifiers(config.classifier, config.models, config.runtime)
        )
        self.tracker = ByteTracker(config.tracker)
        self.identities = Identities(config.identity,
                                     embedder=_build_embedder(config) if embedder is _FROM_CONFIG else embedder)
        self.scheduler = Scheduler(config.scheduler)
        self.book = TrackBook(config.trackbook)
        self.quality = QualityRule(config.quality)
        self.labels = LabelRule(config.labels)
        self.annotator = Annotator(config.annotate)
        self.timer = StageTimer()
        self.totals = Totals()
        self.fps_hint = 0.0
        self._last_faces = Faces.empty()
        # The detector's own output on the latest detection frame, tracked or not: privacy mode obscures these
        # too, so a face is hidden from its first frame, before the tracker confirms it.
        self.last_detections = Faces.empty()
        self.detection_interval = detection_interval(config.detector.interval, None)
        self._since_detection = self.detection_interval  # so the first frame is a detection frame

    def set_frame_rate(self, fps: float | None) -> None:
        """Tell the tracker the source's frame rate (its lost-track buffer is in 30 fps frames)."""
        if fps and fps > 0:
            self.fps_hint = fps
            self.tracker = ByteTracker(self.config.tracker, frame_rate=float(fps))
            self.detection_interval = detection_interval(self.config.detector.interval, float(fps))
            self._since_detection = self.detection_interval

    @property
    def next_frame_coasts(self) -> bool:
        """Whether the next :meth:`prepare` is a frame between detections (it reads no pixels)."""
        return self._since_detection < self.detection_interval

    def active_models(self) -> list[str]:
        embedder = self.identities.embedder
        named: list[str] = [embedder.name] if isinstance(embedder, OnnxClassifier) else []
        return [self.detector.name, *(c.name for c in self.classifiers), *named]

    def _classify(self, frame: Frame, faces: Faces, quality: QualityRule | None) -> dict[str, np.ndarray]:
        """Weigh and classify ``faces`` of ``frame`` (:func:`classify_batch` with one item)."""
        start = time.perf_counter()
        (estimates,), align_s = classify_batch(self.classifiers, [(frame.image, faces)], [quality])
        self.timer.add("align", align_s)
        self.timer.add("classify", time.perf_counter() - start - align_s)
        self.timer.classified_faces += int(estimates[KEPT].sum())
        return estimates

    def process(self, frame: Frame) -> tuple[Faces, list[dict[str, Any]]]:
        """Run one video frame through detection, tracking, classification and fusion.

        Returns:
            The tracked faces with fused labels, and summaries of the tracks that ended on this frame.
        """
        pending = self.prepare(frame)
        estimates = self._classify(frame, pending.picked, pending.quality) if len(pending.picked) else {}
        return self.complete(pending, estimates)

    def prepare(self, frame: Frame) -> PendingFrame:
        """The first half of :meth:`process`: detect, track and choose the faces to classify.

        Split from :meth:`complete` so that a caller serving several streams (:mod:`stream.cameras`) can
        classify the chosen faces of all of them in one batch between the two halves.
        """
        timer = self.timer
        book = self.book
        start = time.perf_counter()
        # A live frame that nobody sees between detections may come without pixels (stream.cameras); cuts are then
        # judged on the next frame that has them.
        if frame.image.size and self.identities.is_cut(frame.image):
            # A new shot: every track ends (none may run on into it by position), and this frame is detected even
            # if it was due to be skipped.
            self.tracker.cut()
            self._since_detection = self.detection_interval
        timer.add("identify", time.perf_counter() - start)
        if self._since_detection < self.detection_interval:
            # A frame between detections (detector.interval): faces move with the tracker's motion
            # model and keep their labels; chips from predicted landmarks are not worth classifying.
            start = time.perf_counter()
            faces = self._last_faces = self.identities.label(self.tracker.coast(self._last_faces), frame.timestamp)
            self._since_detection += 1
            book.observe_presence(faces, frame.index)
            timer.add("track", time.perf_counter() - start)
            return PendingFrame(frame, faces, Faces.empty(), coasted=True)
        self._since_detection = 0
        start = time.perf_counter()
        detections = self.last_detections = self.scheduler.mark(self.detector.detect(frame.image))
        t1 = time.perf_counter()
        faces = self._last_faces = self.identities.label(self.tracker.update(detections), frame.timestamp)
        t2 = time.perf_counter()
        timer.add("detect", t1 - start)
        timer.add("track", t2 - t1)
        book.observe_presence(faces, frame.index)
        chosen = self.scheduler.select(faces, book, frame.index, book.min_observations)
        return PendingFrame(frame, faces, faces[chosen], chosen=chosen, quality=self.quality)

    def complete(self, pending: PendingFrame, estimates: dict[str, np.ndarray]) -> tuple[Faces, list[dict[str, Any]]]:
        """The second half of :meth:`process`: fuse ``estimates`` (for ``pending.picked``) into the track book;
        the picked faces' appearance (when there is an embedder) may restart a track or re-identify a person.

        Returns:
            As :meth:`process`.
        """
        start = time.perf_counter()
        book = self.book
        frame = pending.frame
        self.timer.frames += 1
        if pending.coasted:
            labelled = self.labels.annotate(book.annotate(pending.faces))
            self.timer.add("track", time.perf_counter() - start)
            return labelled, self._end_tracks(frame, [])
        faces, chosen = pending.faces, pending.chosen
        swallowed: list[tuple[int, Any]] = []
        if chosen is not None and chosen.any():
            t_id = time.perf_counter()
            embeddings, embed = self._embed(frame, faces, chosen)
            if embeddings is not None:
                # Appearance may restart a track (another person on its box) or re-identify a person: the
                # classifications then go to the new track id.
                faces, swallowed = self.identities.observe(faces, np.flatnonzero(chosen)[embed], embeddings,
                                                           frame.timestamp, self.tracker, book)
                self._last_faces = faces
                book.observe_presence(faces, frame.index)
            # Appearance work is its own stage; the fusion time below starts after it (no stage counted twice).
            self.timer.add("identify", time.perf_counter() - t_id)
            start += time.perf_counter() - t_id
            picked = faces[chosen]
            kept = estimates.get(KEPT, np.ones(len(picked), bool))
            weights = estimates.get(WEIGHT, np.ones(len(picked), np.float32))
            observed = {key: values[kept] for key, values in estimates.items() if key not in (KEPT, WEIGHT)}
            book.add(picked[kept], observed, frame.index, weights[kept])
            book.skip(picked[~kept], frame.index)
        records = self._end_tracks(frame, swallowed)
        labelled = self.labels.annotate(book.annotate(faces))
        self.timer.add("fuse", time.perf_counter() - start)
        return labelled, records

    def _embed(self, frame: Frame, faces: Faces, chosen: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Embeddings of the chosen faces that are worth one (whole, unoccluded, big enough), and which those are
        (a ``(k,)`` bool mask over the chosen rows); None when there is no embedder or no such face."""
        embed = self.identities.wants_embedding(faces, frame.image.shape)[chosen]
        if self.identities.embedder is None or not embed.any():
            return None, embed
        chip_input = self.identities.chip_input
        assert chip_input is not None  # an embedder comes with its chip size
        chips = align_for(frame.image, faces[chosen].landmarks[embed], [chip_input])[0]
        return self.identities.embedder.embed(chips), embed

    def _end_tracks(self, frame: Frame, swallowed: list[tuple[int, Any]]) -> list[dict[str, Any]]:
        """Summaries of the tracks that ended on this frame (tracker, book, or merged into a re-identified person),
        counted into the totals; their evidence stays with their person for a later re-identification."""
        records = [self._record(tid, est, self.identities.person_of(tid)) for tid, est in swallowed]
        ended = self.book.forget(self.tracker.ended_track_ids) + self.book.prune(frame.index)
        self.scheduler.forget([*self.tracker.ended_track_ids.tolist(), *(tid for tid, _ in ended)])
        persons = self.identities.end_tracks(
            [*ended, *((int(t), None) for t in self.tracker.ended_track_ids)], frame.timestamp)
        records += [self._record(tid, est, persons.get(tid)) for tid, est in ended]
        for record in records:
            self.totals.add(record)
        return records

    def _record(self, track_id: int, estimate: Any, person_id: int | None = None) -> dict[str, Any]:
        record = track_record(track_id, estimate, self.fps_hint or 30.0, person_id, self.labels)
        if self.camera:
            record["camera"] = self.camera
        return record

    def prepare_still(self, frame: Frame) -> PendingFrame:
        """The first half of :meth:`process_still`: detect, number the faces, choose the eligible ones (a still has
        one look at each face: every eligible face is classified, whatever its quality)."""
        start = time.perf_counter()
        faces = self.scheduler.mark(self.detector.detect(frame.image))
        self.timer.add("detect", time.perf_counter() - start)
        n = len(faces)
        faces = Faces(faces.xyxy, faces.score, faces.landmarks, np.arange(1, n + 1, dtype=np.int64), faces.data)
        chosen = self.scheduler.eligible(faces)
        return PendingFrame(frame, faces, faces[chosen], chosen=chosen)

    def complete_still(self, pending: PendingFrame, estimates: dict[str, np.ndarray]) -> Faces:
        """The second half of :meth:`process_still`: the estimates of ``pending.picked`` shown at once (a still's ids
        restart on every image, so its labels keep no memory)."""
        faces, chosen = pending.faces, pending.chosen
        n = len(faces)
        probs = np.full((n, len(AGE_GROUPS)), np.nan, np.float32)
        ages = np.full(n, np.nan, np.float32)
        p_female = np.full(n, np.nan, np.float32)
        if chosen is not None and chosen.any():
            for key, values in ((AGE_GROUP_PROBS, probs), (AGE_YEARS, ages), (P_FEMALE, p_female)):
                if key in estimates:
                    values[chosen] = estimates[key]
        self.timer.frames += 1
        ready = (chosen if chosen is not None else np.zeros(n, bool)) & np.isfinite(probs).all(axis=1)
        return self.labels.annotate(faces.with_data(**{AGE_GROUP_PROBS: probs, AGE_YEARS: ages, P_FEMALE: p_female,
                                                       N_OBS: ready.astype(np.int32), LABEL_READY: ready}),
                                    remember=False)

    def process_still(self, frame: Frame) -> Faces:
        """One still image: every eligible face classified once, its label shown at once.

        Stills have no time axis, so there is no tracker and no fusion: faces get ids 1..n in score order and
        each label rests on its one observation.
        """
        pending = self.prepare_still(frame)
        estimates = self._classify(frame, pending.picked, pending.quality) if len(pending.picked) else {}
        return self.complete_still(pending, estimates)

    def still_records(self, frame: Frame, faces: Faces) -> list[dict[str, Any]]:
        """One summary per face of a still image (counted into the totals): a still's faces are its people."""
        records = []
        for face_id, label in zip(faces.track_id.tolist(), face_labels(faces)):
            record = {"track_id": int(face_id), "first_frame": frame.index, "last_frame": frame.index,
                      "duration_s": None, **label.as_record()}
            if self.camera:
                record["camera"] = self.camera
            if frame.name:
                record["image"] = frame.name
            self.totals.add(record)
            records.append(record)
        return records

    def finish(self) -> list[dict[str, Any]]:
        """Summaries of every track still open at the end of the stream (counted into the totals)."""
        open_tracks = self.book.forget(list(self.book.tracks))
        records = [self._record(tid, est, self.identities.person_of(tid)) for tid, est in open_tracks]
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
        on_ended: Called with the summaries of tracks that ended; sinks with an ``end_tracks`` hook get them
            too, before the frame they ended on (after the last frame for tracks still open at the end).
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
    completed = False
    try:
        while max_frames is None or processed < max_frames:
            t0 = time.perf_counter()
            frame = next(iterator, None)
            if frame is None:
                break
            timer.add("decode", time.perf_counter() - t0)
            if pipeline.camera and not frame.camera:
                frame = dataclasses.replace(frame, camera=pipeline.camera)
            ended: list[dict[str, Any]] = []
            if still_images:
                faces = pipeline.process_still(frame)
                ended = pipeline.still_records(frame, faces)
            else:
                faces, ended = pipeline.process(frame)
            if ended:
                _end_tracks(sinks, ended, on_ended)
            now = time.perf_counter()
            recent = [t for t in recent if now - t < 2.0] + [now]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else None
            annotated = frame
            t_draw = now
            if draw:
                drawn = pipeline.annotator.draw(frame.image, faces, fps, in_place=True,
                                                obscure=None if still_images else pipeline.last_detections.xyxy)
                annotated = dataclasses.replace(frame, image=drawn)
                t_draw = time.perf_counter()
                timer.add("draw", t_draw - now)
            for sink in sinks:
                sink.write(annotated, faces)
            timer.add("encode", time.perf_counter() - t_draw)
            processed += 1
            if should_stop is not None and should_stop():
                interrupted = True
                break
        completed = True
    finally:
        # Also when the run stops on an error (a sink that cannot write, a camera that gave up) or a forced
        # interrupt: the open tracks end with their fused labels, so the summary lists the people seen so far.
        if not still_images:
            _finish_tracks(pipeline, sinks, on_ended, raising=completed)
        skipped = getattr(frames, "inputs_skipped", 0)  # a source's count; any iterable of frames may be run
        for sink in sinks:
            hook = getattr(sink, "end_source", None)  # as end_tracks: optional for the objects run() is given
            if hook is not None:
                hook(pipeline.camera, skipped)
    seconds = time.perf_counter() - started
    return RunResult(processed, seconds, timer.ms_per_frame(), pipeline.totals.as_dict(), interrupted)


def _finish_tracks(pipeline: Pipeline, sinks: list[Any], on_ended: Callable[[list[dict[str, Any]]], None] | None,
                   *, raising: bool) -> None:
    """End every open track and hand the summaries on; after an error (``raising`` False) a failure here is only
    logged, so it never hides the error that stopped the run."""
    try:
        remaining = pipeline.finish()
        if remaining:
            _end_tracks(sinks, remaining, on_ended)
    except Exception:
        if raising:
            raise
        logger.debug("ending the open tracks after an error failed", exc_info=True)


def _end_tracks(sinks: list[Any], records: list[dict[str, Any]],
                on_ended: Callable[[list[dict[str, Any]]], None] | None) -> None:
    """Hand the summaries of ended tracks to ``on_ended`` and to every sink with an ``end_tracks`` hook."""
    if on_ended:
        on_ended(records)
    for sink in sinks:
        hook = getattr(sink, "end_tracks", None)
        if hook is not None:
            hook(records)


def _build_embedder(config: Config) -> Embedder | None:
    """The face-embedding model ``identity.embedding_model`` names, or None (with a warning) when its file has not
    been made: cut detection and person ids still run, re-identification and refusal by appearance do not."""
    from models.fetch import ModelError
    from stream.tracking.appearance import build_embedder

    try:
        return build_embedder(config.identity.embedding_model, config.models, config.runtime)
    except ModelError as error:
        logger.warning("identity: appearance is off (%s); set identity.embedding_model: none to run without it", error)
        return None


def check_model_names(config: Config) -> None:
    """Check that every model the config names is registered and of the right kind, before anything loads (the
    command lines' one-line errors come from here).

    Raises:
        ValueError: The message names the setting, the model and the valid choices.
    """
    from stream.classify import check_classifier_models
    from stream.detectors import detector_names
    from stream.tracking.appearance import check_embedding_model

    if config.detector.name not in detector_names():
        raise ValueError(f"unknown detector {config.detector.name!r}; valid detectors: {', '.join(detector_names())}")
    try:
        check_classifier_models(config.classifier)
    except ValueError as error:
        raise ValueError(f"classifier: {error}") from None
    try:
        check_embedding_model(config.identity.embedding_model)
    except ValueError as error:
        raise ValueError(f"identity.embedding_model: {error}") from None


def describe_models(pipeline: Pipeline) -> list[str]:
    """One log line per active model: name, task, licence, and a warning for non-commercial ones."""
    lines = []
    for name in pipeline.active_models():
        spec = get_spec(name)
        lines.append(f"model {name} ({spec.task}): {spec.licence_note}; {spec.provenance}")
    return lines
