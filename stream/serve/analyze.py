"""Uploaded photos and clips through the CLI's pipeline objects, on a pool of model sessions.

A photo goes through :meth:`Pipeline.process_still` and the pipeline's annotator, as ``python -m stream
--source photo.jpg`` does; a clip is opened as a :class:`~stream.sources.files.VideoFileSource` (from
memory) and driven by :func:`stream.pipeline.run`, as a video file is. Each worker owns a
:class:`~stream.pipeline.Pipeline` with its own detector and classifier sessions, so several uploads run at
once without sharing a session, and a live camera's pipeline is never touched by an upload.
"""

from __future__ import annotations

import base64
import io
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np

from models.registry import get_spec
from stream.config import Config
from stream.labels import ShownLabel, face_labels, label_text
from stream.pipeline import Pipeline, run
from stream.serve.uploads import Upload, UploadError
from stream.sinks.base import Sink
from stream.sources import SourceError, VideoFileSource

# The CLI's rule for large stills (source.max_image_height), so a photo gives the same faces either way.
from stream.sources.files import decode_image, fit_height
from stream.types import AGE_GROUPS, LABEL_READY, Faces, Frame


def model_info(name: str) -> dict[str, Any]:
    """What the page and the API say about a model: its task, licence and where it comes from."""
    spec = get_spec(name)
    return {"name": name, "task": spec.task, "licence": spec.licence_note, "commercial_use": spec.commercial_use,
            "provenance": spec.provenance}


def face_records(faces: Faces, classified: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One JSON object per face: box, detector score, the shown label's fields and its overlay text."""
    records = []
    for i, label in enumerate(face_labels(faces)):
        track_id = int(faces.track_id[i])
        records.append({
            "id": track_id,
            "box": [round(float(v), 1) for v in faces.xyxy[i]],
            "score": round(float(faces.score[i]), 4),
            "classified": bool(label.ready if classified is None else classified[i]),
            "text": label_text(label, track_id),
            "confidence": None if label.confidence is None else round(label.confidence, 4),
            **label.as_record(),
        })
    return records


def track_text(record: dict[str, Any]) -> str:
    """The overlay's text for an ended track's record (:func:`stream.analytics.track_record`)."""
    return label_text(ShownLabel.from_record(record), record["track_id"])


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()


class _BestFrame(Sink):
    """Keeps the annotated frame showing the most labelled faces (the clip's picture on the page)."""

    def __init__(self) -> None:
        super().__init__()
        self.image: np.ndarray | None = None
        self._best = -1

    def write(self, frame: Frame, faces: Faces) -> None:
        ready = faces.data.get(LABEL_READY)
        score = (int(np.sum(ready)) if ready is not None else 0) * 1000 + len(faces)
        if score > self._best:
            self._best, self.image = score, frame.image.copy()

    def _close(self) -> None:
        pass


class Analyzer:
    """A pool of ``workers`` pipelines for uploads; :meth:`analyze` is blocking (call it from a thread).

    Args:
        config: The run's configuration (detector, classifiers, annotate.privacy, source.max_image_height).
        workers: Pipelines (and model sessions) in the pool: uploads analysed at once.
        max_clip_s: Longest clip accepted, in seconds of video.
        jpeg_quality: Quality of the annotated image returned.
    """

    def __init__(self, config: Config, *, workers: int, max_clip_s: float, jpeg_quality: int) -> None:
        self.config = config
        self.max_clip_s = max_clip_s
        self.jpeg_quality = jpeg_quality
        self._pool: queue.Queue[Pipeline] = queue.Queue()
        first = Pipeline(config)
        self._pool.put(first)
        for _ in range(workers - 1):
            self._pool.put(Pipeline(config))
        self.models = {"detector": model_info(first.detector.name),
                       "classifiers": [model_info(c.name) for c in first.classifiers]}

    @contextmanager
    def _pipeline(self) -> Iterator[Pipeline]:
        pipeline = self._pool.get()
        try:
            yield pipeline
        finally:
            self._pool.put(pipeline)

    def analyze(self, upload: Upload, *, annotated: bool = False) -> dict[str, Any]:
        """The JSON answer for one upload (see the OpenAPI schema of ``POST /api/analyze``).

        Raises:
            UploadError: 400 undecodable, 413 clip too long.
        """
        if upload.kind == "video":
            return self._clip(upload, annotated)
        return self._photo(upload, annotated)

    def _photo(self, upload: Upload, annotated: bool) -> dict[str, Any]:
        try:
            image = decode_image(upload.data)
        except ValueError as error:
            raise UploadError(400, f"cannot decode the {upload.format} image: {error}") from None
        original = image.shape[1], image.shape[0]
        image = fit_height(image, self.config.source.max_image_height)
        frame = Frame(0, 0.0, image, source="upload", name="upload")
        with self._pipeline() as pipeline:
            faces = pipeline.process_still(frame)
            eligible = pipeline.scheduler.eligible(faces)
            drawn = pipeline.annotator.draw(image, faces) if annotated else None
        answer: dict[str, Any] = {
            "kind": "image",
            "format": upload.format,
            "width": image.shape[1],
            "height": image.shape[0],
            "original_size": list(original),
            "age_groups": list(AGE_GROUPS),
            "faces": face_records(faces, eligible),
            "models": self.models,
        }
        if drawn is not None:
            answer["annotated_jpeg"] = base64.b64encode(encode_jpeg(drawn, self.jpeg_quality)).decode("ascii")
        return answer

    def _clip(self, upload: Upload, annotated: bool) -> dict[str, Any]:
        try:
            source = VideoFileSource(io.BytesIO(upload.data), self.config.source, name="upload")
        except SourceError:
            raise UploadError(400, f"cannot decode the {upload.format} clip (damaged or unsupported codec); "
                                   "re-encode it as H.264 MP4") from None
        with source:
            fps = source.fps or 25.0
            if source.frame_count is not None and source.frame_count / fps > self.max_clip_s:
                raise UploadError(413, f"clip of {source.frame_count / fps:.1f} s is longer than serve.max_clip_s="
                                       f"{self.max_clip_s:g} s; cut it shorter")
            best = _BestFrame()
            tracks: list[dict[str, Any]] = []
            with self._pipeline() as shared:
                # Fresh tracker and track book for this clip; the worker's model sessions.
                pipeline = Pipeline(self.config, detector=shared.detector, classifiers=shared.classifiers)
                pipeline.set_frame_rate(source.fps)
                result = run(pipeline, source, [best] if annotated else [], on_ended=tracks.extend,
                             max_frames=int(self.max_clip_s * fps) + 1)
        answer: dict[str, Any] = {
            "kind": "video",
            "format": upload.format,
            "frames": result.frames,
            "fps": round(fps, 3),
            "duration_s": round(result.frames / fps, 3),
            "age_groups": list(AGE_GROUPS),
            "tracks": [{**record, "text": track_text(record)}
                       for record in sorted(tracks, key=lambda record: record["track_id"])],
            "totals": result.totals,
            "models": self.models,
        }
        if best.image is not None:
            answer["annotated_jpeg"] = base64.b64encode(encode_jpeg(best.image, self.jpeg_quality)).decode("ascii")
        return answer
