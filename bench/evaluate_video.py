"""Labelled-video evaluation: generate videos with known faces, run the real pipeline, score it.

``python -m bench.evaluate_video [--out DIR] [--videos N] [--frames N] [--json OUT]``

**Generated videos** (:func:`generate_video`): real UTKFace faces (any folder of UTKFace-named images) pasted
with :mod:`bench.synth` over a real face-free background cut from the shared clips. Each face is a
track that enters from or leaves through a frame edge (or is there from the start / to the end), moves
on a straight path with a wobble, grows or shrinks up to 2x, and is pasted in a fixed depth order, so
paths cross and nearer faces occlude farther ones. Faces are composited on a background padded by a
margin and the frame is cut from its middle, so faces slide in and out partly visible. Everything is
drawn from ``np.random.default_rng(seed)``. Each video is an H.264 ``.mp4`` (through
:class:`stream.sinks.VideoSink`, as the product writes) plus a ``.json`` ground truth: per-track age,
gender and source file, and for every frame each present face's box (clipped to the frame) and
visibility (fraction of its box inside the frame and not covered by nearer faces' boxes).

**Metrics** (:func:`evaluate`): the pipeline runs on the decoded video exactly as ``python -m stream``.

* MOT (``motmetrics``): IDF1, ID switches, MOTA at IoU >= 0.5. GT faces less than
  :data:`MIN_VISIBILITY` visible are "ignore" regions (MOTChallenge practice): they and the predictions
  on them count neither way.
* Label accuracy, what the user sees: on frames where a prediction matched to a GT face shows a label,
  the shown age group / gender against the truth (frame-weighted). Compared with the same model before
  fusion: (a) every raw classification the pipeline made, on the same matched faces, and (b) each GT
  face's source image classified once through the product's still-image path (detector, alignment,
  classifiers), weighted by that face's labelled frames.
* Flicker: changes of the shown age group (and gender) per track after its first label, per minute of
  labelled track time (pooled over tracks), and time from a face's first visible frame to its first label.

**Real clips** (:func:`evaluate_real_clip`): single-person clips have no labels, but the person's age
and gender do not change, so the shown age's spread (std, min-max) and the flicker measure stability.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.tracking import iou_xyxy, linear_sum_assignment
from stream.types import (
    AGE_GROUP_PROBS,
    AGE_GROUPS,
    AGE_YEARS,
    P_FEMALE,
    Faces,
    Frame,
    age_group_index,
)

IOU_THRESHOLD = 0.5
#: GT faces less visible than this are ignore regions for the MOT metrics and never need a label.
MIN_VISIBILITY = 0.5
REAL_CLIPS = ("talking_man_512.mp4", "talking_woman_512.mp4", "expressive_woman_480.mp4",
              "man_glasses_720x1280.mp4", "woman_1280x720.mp4")
#: The one person's gender in each real clip (0 male, 1 female; what its name says and a look confirms): the
#: only ground truth the real clips have, so the shown gender's accuracy is scored on them.
REAL_CLIP_GENDER = {"talking_man_512.mp4": 0, "talking_woman_512.mp4": 1, "expressive_woman_480.mp4": 1,
                    "man_glasses_720x1280.mp4": 0, "woman_1280x720.mp4": 1}
GT_VERSION = 1
# Targets of issue 6 (reported, never asserted).
TARGET_IDF1 = 0.8
TARGET_FLICKER_PER_MIN = 1.0


def default_out_dir() -> Path:
    """``$XDG_CACHE_HOME/face-stream/labelled-videos`` (``~/.cache/...``): never inside the repo."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "face-stream" / "labelled-videos"


# ------------------------------------------------------------------------------------------ generator


@dataclass
class LabelledVideo:
    """A generated video and its ground truth.

    Attributes:
        video: The ``.mp4`` path.
        gt: Path of the ground-truth JSON.
        fps: Frame rate.
        size: ``(width, height)``.
        tracks: Per GT track: ``{"track_id", "age", "gender" (0 male, 1 female), "race", "file",
            "first_frame", "last_frame"}``.
        frames: Per frame a list of ``{"track_id", "xyxy" [x1, y1, x2, y2], "visibility"}``.
    """

    video: Path
    gt: Path
    fps: float
    size: tuple[int, int]
    tracks: list[dict[str, Any]]
    frames: list[list[dict[str, Any]]]

    @classmethod
    def load(cls, gt_path: str | Path) -> LabelledVideo:
        """Read a ground-truth JSON written by :func:`generate_video` (the video sits next to it)."""
        gt_path = Path(gt_path)
        data = json.loads(gt_path.read_text(encoding="utf-8"))
        return cls(gt_path.with_name(data["video"]), gt_path, float(data["fps"]), tuple(data["size"]),
                   data["tracks"], data["frames"])


def _visibility(boxes: np.ndarray, width: int, height: int, grid: int = 16) -> np.ndarray:
    """Visible fraction of each box, boxes given back to front (later boxes cover earlier ones).

    Args:
        boxes: ``(k, 4)`` xyxy in frame pixels, in paste order.

    Returns:
        ``(k,)`` float32: share of a ``grid`` x ``grid`` sample of the box inside the frame and outside
        every later box.
    """
    out = np.zeros(len(boxes), np.float32)
    u = (np.arange(grid) + 0.5) / grid
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        xs, ys = np.meshgrid(x1 + u * (x2 - x1), y1 + u * (y2 - y1))
        seen = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
        for a1, b1, a2, b2 in boxes[i + 1:]:
            seen &= ~((xs >= a1) & (xs < a2) & (ys >= b1) & (ys < b2))
        out[i] = seen.mean()
    return out


def _edge_point(rng: np.random.Generator, width: int, height: int, margin: float) -> np.ndarray:
    """A point ``margin`` outside a random frame edge."""
    side = int(rng.integers(4))
    if side == 0:
        return np.array([-margin, rng.uniform(0, height)])
    if side == 1:
        return np.array([width + margin, rng.uniform(0, height)])
    if side == 2:
        return np.array([rng.uniform(0, width), -margin])
    return np.array([rng.uniform(0, width), height + margin])


def generate_video(
    out_dir: str | Path,
    name: str,
    *,
    seed: int = 0,
    n_tracks: int = 6,
    n_frames: int = 250,
    size: tuple[int, int] = (960, 540),
    fps: float = 25.0,
    face_px: tuple[float, float] = (56.0, 150.0),
    utkface: str | Path | None = None,
) -> LabelledVideo:
    """Write ``<out_dir>/<name>.mp4`` and ``<name>.json`` (see the module doc).

    Args:
        out_dir: Folder (created).
        name: File stem.
        seed: Seeds faces, background, paths, sizes and depth order.
        n_tracks: Faces (tracks) in the video.
        n_frames: Frames.
        size: ``(width, height)``.
        fps: Frame rate of the file.
        face_px: ``(min, max)`` shorter side of the face boxes, pixels.
        utkface: A folder of UTKFace-named images (default: the shared UTKFace).

    Returns:
        The written :class:`LabelledVideo`.

    Raises:
        ValueError: A count, size or range argument is out of range.
    """
    from bench import synth
    from stream.sinks import SinkOptions, VideoSink

    if n_tracks < 1:
        raise ValueError(f"n_tracks must be >= 1, got {n_tracks}")
    if n_frames < 2:
        raise ValueError(f"n_frames must be >= 2, got {n_frames}")
    if not 16 <= face_px[0] <= face_px[1]:
        raise ValueError(f"face_px must be (min, max) with 16 <= min <= max, got {face_px!r}")
    width, height = size
    if face_px[1] * 1.5 > min(width, height):
        raise ValueError(f"size {size!r} is too small for faces up to {face_px[1]} px")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    faces = synth.sample_faces(n_tracks, seed=seed, root=utkface)
    background = synth.make_backgrounds(1, (width, height), seed=seed)[0]
    # Faces slide in and out partly visible: paste on a padded canvas (box + crop overhang fit in it).
    pad = int(face_px[1] * 2.2) + 8
    canvas = cv2.copyMakeBorder(background, pad, pad, pad, pad, cv2.BORDER_REFLECT)

    plans = []
    for face in faces:
        first = 0 if rng.random() < 0.4 else int(rng.integers(0, n_frames // 2))
        last = n_frames - 1 if rng.random() < 0.4 else int(rng.integers(min(first + n_frames // 3, n_frames - 1),
                                                                         n_frames))
        s0, s1 = np.exp(rng.uniform(np.log(face_px[0]), np.log(face_px[1]), size=2))
        if s1 > 2 * s0:
            s1 = 2 * s0
        if s0 > 2 * s1:
            s0 = 2 * s1
        box_h0 = s0 * 1.3
        inside = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.15, 0.85) * height])
        start = _edge_point(rng, width, height, 0.3 * box_h0) if first > 0 else inside
        end_inside = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.15, 0.85) * height])
        end = _edge_point(rng, width, height, 0.3 * s1 * 1.3) if last < n_frames - 1 else end_inside
        plans.append({"face": face, "first": first, "last": last, "s0": s0, "s1": s1, "start": start,
                      "end": end, "wobble": rng.uniform(3, 12), "phase": rng.uniform(0, 2 * np.pi),
                      "period": rng.uniform(30, 90)})
    depth = rng.permutation(n_tracks)  # paste order: later = nearer

    video_path = out_dir / f"{name}.mp4"
    gt_path = out_dir / f"{name}.json"
    frames_gt: list[list[dict[str, Any]]] = []
    with VideoSink(video_path, fps, SinkOptions()) as sink:
        for t in range(n_frames):
            items, ids = [], []
            for k in depth:
                plan = plans[k]
                if not plan["first"] <= t <= plan["last"]:
                    continue
                a = (t - plan["first"]) / max(plan["last"] - plan["first"], 1)
                side = float(plan["s0"] * (plan["s1"] / plan["s0"]) ** a)
                centre = plan["start"] + a * (plan["end"] - plan["start"])
                direction = plan["end"] - plan["start"]
                normal = np.array([-direction[1], direction[0]]) / max(np.linalg.norm(direction), 1e-6)
                centre = centre + normal * plan["wobble"] * np.sin(plan["phase"] + 2 * np.pi * t / plan["period"])
                face = plan["face"]
                x1, y1, x2, y2 = face.face_xyxy * (side / face.face_size)
                w, h = x2 - x1, y2 - y1
                x, y = centre[0] - w / 2 + pad, centre[1] - h / 2 + pad
                if x < 0 or y < 0 or x + w > width + 2 * pad or y + h > height + 2 * pad:
                    continue
                items.append((face, side, (float(x), float(y))))
                ids.append(int(k) + 1)
            image, gt_xyxy, _ = synth.composite(canvas, items)
            gt_xyxy = gt_xyxy - pad
            vis = _visibility(gt_xyxy, width, height)
            rows = []
            for track_id, box, v in zip(ids, gt_xyxy, vis, strict=True):
                if v <= 0:
                    continue
                clipped = np.clip(box, 0, [width, height, width, height])
                rows.append({"track_id": track_id, "xyxy": [round(float(c), 2) for c in clipped],
                             "visibility": round(float(v), 3)})
            frames_gt.append(rows)
            frame_image = np.ascontiguousarray(image[pad:pad + height, pad:pad + width])
            sink.write(Frame(t, t / fps, frame_image), Faces.empty())
    present: dict[Any, list[int]] = defaultdict(list)
    for t, rows in enumerate(frames_gt):
        for row in rows:
            present[row["track_id"]].append(t)
    tracks = []
    for k, plan in enumerate(plans):
        face = plan["face"]
        seen = present.get(k + 1, [])
        tracks.append({"track_id": k + 1, "age": face.age, "gender": face.gender, "race": face.race,
                       "file": face.file, "first_frame": min(seen) if seen else -1,
                       "last_frame": max(seen) if seen else -1})
    payload = {"version": GT_VERSION, "video": video_path.name, "fps": fps, "size": [width, height],
               "n_frames": n_frames, "seed": seed, "tracks": tracks, "frames": frames_gt}
    gt_path.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    return LabelledVideo(video_path, gt_path, fps, (width, height), tracks, frames_gt)


def generate_set(out_dir: str | Path, *, videos: int = 4, seed: int = 0, reuse: bool = True,
                 **kwargs: Any) -> list[LabelledVideo]:
    """``videos`` generated videos ``synth_<seed+i>``; an existing pair with the same settings is reused.

    Args:
        out_dir: Folder for the ``.mp4`` and ``.json`` files.
        videos: How many.
        seed: First seed (video ``i`` uses ``seed + i``).
        reuse: Keep existing files whose recorded settings match.
        **kwargs: Passed to :func:`generate_video`.
    """
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    out = []
    settings = json.dumps(kwargs, sort_keys=True, default=str)
    for i in range(videos):
        name = f"synth_{seed + i}"
        gt_path = Path(out_dir) / f"{name}.json"
        stamp = gt_path.with_suffix(".settings")
        if reuse and gt_path.exists() and gt_path.with_suffix(".mp4").exists() and stamp.exists() \
                and stamp.read_text(encoding="utf-8") == settings:
            out.append(LabelledVideo.load(gt_path))
            continue
        out.append(generate_video(out_dir, name, seed=seed + i, **kwargs))
        stamp.write_text(settings, encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------- running it


@dataclass
class PipelineTrace:
    """What the pipeline showed on every frame, and every raw classification it made.

    Attributes:
        frames: Per frame a dict of ``(n,)``/``(n, 4)`` arrays, what :func:`stream.labels.face_labels` shows:
            ``track_id`` int64, ``xyxy`` float32, ``ready`` bool (the track has a label), ``shown_group`` int32
            (the one age group shown; -1: none, also when a range or ``age?`` is shown), ``shown_gender`` int8
            (0 male, 1 female, -1 none or undecided), ``age_code`` / ``gender_code`` int32 (what is shown, for
            flicker: the age span ``first * 8 + last`` or 64 for ``age?``; the gender or 2 for ``?``; -1 before
            the label), ``age`` float32 (shown years; NaN: none), ``incoherent`` bool (years outside the shown
            span: the bug of issue 14, 0 by construction now).
        raw: ``(frame, track_id, age_group, gender, age)`` for every classification before fusion.
        fps: Frame rate of the source.
        seconds: Wall time of the run.
    """

    frames: list[dict[str, np.ndarray]] = field(default_factory=list)
    raw: list[tuple[int, int, int, int, float]] = field(default_factory=list)
    fps: float = 25.0
    seconds: float = 0.0


def run_pipeline(source: str | Path, config: Any, *, detector: Any = None, classifiers: Any = None,
                 max_frames: int | None = None) -> PipelineTrace:
    """Run the product pipeline on a video and record what it shows and what it classified.

    Args:
        source: Video file.
        config: Validated configuration.
        detector: Share this detector instead of building one.
        classifiers: Share these classifiers instead of building them.
        max_frames: Stop after this many frames.
    """
    from stream.pipeline import Pipeline
    from stream.sources import open_source
    from stream.trackbook import TrackBook

    trace = PipelineTrace()

    class RecordingBook(TrackBook):
        """The track book, noting every raw observation on its way in (the pipeline is unchanged)."""

        def add(self, faces: Any, estimates: dict[str, np.ndarray], frame_index: int,
                weights: np.ndarray | None = None) -> None:
            probs = estimates.get(AGE_GROUP_PROBS)
            ages = estimates.get(AGE_YEARS)
            females = estimates.get(P_FEMALE)
            for i, track_id in enumerate(faces.track_id.tolist()):
                group = int(np.argmax(probs[i])) if probs is not None else -1
                gender = int(females[i] >= 0.5) if females is not None and np.isfinite(females[i]) else -1
                age = float(ages[i]) if ages is not None else float("nan")
                trace.raw.append((frame_index, int(track_id), group, gender, age))
            super().add(faces, estimates, frame_index, weights)

    pipeline = Pipeline(config, detector=detector, classifiers=classifiers)
    pipeline.book = RecordingBook(config.trackbook)
    start = time.perf_counter()
    with open_source(source) as frames:
        trace.fps = float(frames.fps or 25.0)
        pipeline.set_frame_rate(frames.fps)
        for frame in frames:
            if max_frames is not None and len(trace.frames) >= max_frames:
                break
            faces, _ = pipeline.process(frame)
            trace.frames.append({"track_id": faces.track_id.copy(), "xyxy": faces.xyxy.copy(), **shown_arrays(faces)})
    pipeline.finish()
    trace.seconds = time.perf_counter() - start
    return trace


def shown_arrays(faces: Faces) -> dict[str, np.ndarray]:
    """What the product shows for each face (:func:`stream.labels.face_labels`), as the trace's arrays."""
    from stream.labels import SHOWN_SPAN, face_labels, span_years

    labels = face_labels(faces)
    n = len(labels)
    out = {"ready": np.zeros(n, bool), "shown_group": np.full(n, -1, np.int32),
           "shown_gender": np.full(n, -1, np.int8), "age_code": np.full(n, -1, np.int32),
           "gender_code": np.full(n, -1, np.int32), "age": np.full(n, np.nan, np.float32),
           "incoherent": np.zeros(n, bool)}
    spans = faces.data.get(SHOWN_SPAN)
    for i, label in enumerate(labels):
        if not label.ready:
            continue
        out["ready"][i] = True
        if label.age_group is not None:
            out["shown_group"][i] = AGE_GROUPS.index(label.age_group)
        if label.gender is not None:
            out["shown_gender"][i] = int(label.gender == "female")
        out["gender_code"][i] = out["shown_gender"][i] if label.gender is not None else 2
        if label.age is not None:
            out["age"][i] = label.age
        if label.age_group_probs is None:
            continue
        if spans is not None and spans[i][0] >= 0:
            first, last = int(spans[i][0]), int(spans[i][1])
            out["age_code"][i] = first * len(AGE_GROUPS) + last
            low, high = span_years(first, last)
            out["incoherent"][i] = label.age is not None and not low <= round(label.age) <= high
        else:
            out["age_code"][i] = len(AGE_GROUPS) ** 2
    return out


# ------------------------------------------------------------------------------------------ metrics


def match_frame(gt_xyxy: np.ndarray, pred_xyxy: np.ndarray, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """One-to-one GT ↔ prediction pairs with IoU >= ``threshold``, maximizing total IoU.

    Returns:
        ``(gt_index, pred_index)`` pairs.
    """
    if len(gt_xyxy) == 0 or len(pred_xyxy) == 0:
        return []
    iou = iou_xyxy(gt_xyxy, pred_xyxy)
    cost = np.where(iou >= threshold, 1.0 - iou, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


def split_ignored(gt_rows: list[dict[str, Any]], pred_xyxy: np.ndarray,
                  min_visibility: float = MIN_VISIBILITY) -> tuple[list[int], np.ndarray]:
    """Which GT rows count, and which predictions are not on an ignored (barely visible) GT face.

    Returns:
        Indices of the counted GT rows, and a ``(m,)`` bool mask of the counted predictions.
    """
    counted = [i for i, row in enumerate(gt_rows) if row["visibility"] >= min_visibility]
    ignored = [i for i, row in enumerate(gt_rows) if row["visibility"] < min_visibility]
    keep = np.ones(len(pred_xyxy), bool)
    if ignored and len(pred_xyxy):
        boxes = np.asarray([gt_rows[i]["xyxy"] for i in ignored], np.float32)
        # Predictions are first matched to the counted faces; the rest on an ignored face are dropped.
        counted_boxes = np.asarray([gt_rows[i]["xyxy"] for i in counted], np.float32).reshape(-1, 4)
        taken = {p for _, p in match_frame(counted_boxes, pred_xyxy)}
        iou = iou_xyxy(boxes, pred_xyxy)
        for p in range(len(pred_xyxy)):
            if p not in taken and (iou[:, p] >= IOU_THRESHOLD).any():
                keep[p] = False
    return counted, keep


def mot_metrics(gt_frames: Sequence[list[dict[str, Any]]], pred_frames: Sequence[dict[str, np.ndarray]],
                min_visibility: float = MIN_VISIBILITY) -> dict[str, float]:
    """IDF1, ID switches, MOTA (motmetrics, IoU >= 0.5), barely visible GT faces ignored.

    Args:
        gt_frames: Per frame a list of ``{"track_id", "xyxy", "visibility"}``.
        pred_frames: Per frame ``{"track_id" (n,), "xyxy" (n, 4)}``; as many frames as ``gt_frames``.
        min_visibility: GT faces below this visibility are ignore regions.

    Returns:
        ``{"idf1", "mota", "id_switches", "num_gt", "false_positives", "misses", "gt_tracks", "pred_tracks"}``.

    Raises:
        ValueError: Frame counts differ.
    """
    import motmetrics as mm

    if len(gt_frames) != len(pred_frames):
        raise ValueError(f"pred_frames has {len(pred_frames)} frames, gt_frames has {len(gt_frames)}")
    acc = mm.MOTAccumulator(auto_id=True)
    for rows, pred in zip(gt_frames, pred_frames, strict=True):
        pred_xyxy = np.asarray(pred["xyxy"], np.float32).reshape(-1, 4)
        counted, keep = split_ignored(rows, pred_xyxy, min_visibility)
        gt_ids = [rows[i]["track_id"] for i in counted]
        gt_xyxy = np.asarray([rows[i]["xyxy"] for i in counted], np.float32).reshape(-1, 4)
        hyp_ids = np.asarray(pred["track_id"])[keep].tolist()
        iou = iou_xyxy(gt_xyxy, pred_xyxy[keep])
        acc.update(gt_ids, hyp_ids, np.where(iou >= IOU_THRESHOLD, 1.0 - iou, np.nan))
    summary = mm.metrics.create().compute(
        acc, metrics=["idf1", "mota", "num_switches", "num_objects", "num_false_positives", "num_misses",
                      "num_unique_objects", "num_predictions"], name="all")
    row = summary.loc["all"]
    hyp_tracks = {int(t) for pred in pred_frames for t in np.asarray(pred["track_id"]).tolist()}
    return {"idf1": float(row["idf1"]), "mota": float(row["mota"]), "id_switches": int(row["num_switches"]),
            "num_gt": int(row["num_objects"]), "false_positives": int(row["num_false_positives"]),
            "misses": int(row["num_misses"]), "gt_tracks": int(row["num_unique_objects"]),
            "pred_tracks": len(hyp_tracks)}


def flicker(pred_frames: Sequence[dict[str, np.ndarray]], fps: float, key: str = "shown_group") -> dict[str, float]:
    """Changes of a shown label per track after its first label, per minute of labelled track time.

    A track's labelled time runs from its first to its last labelled frame; frames where it is not seen
    or shows no label do not count as changes.

    Args:
        pred_frames: Per frame ``{"track_id" (n,), key (n,)}`` with ``-1`` for "no label".
        fps: Frame rate (frames per second).
        key: ``"shown_group"`` or ``"shown_gender"``, or the display codes ``"age_code"`` / ``"gender_code"``
            (see :class:`PipelineTrace`), for which contradictions are also counted: a change of the shown age
            to a span that shares no group with the last span shown (``31-40`` → ``41-55``, not ``31-40`` →
            ``21-40`` or ``age?``), or of the shown gender to the other one (``F`` → ``M``, also across ``?``).

    Returns:
        ``{"changes", "minutes", "per_track_per_min", "tracks", "worst_track_per_min"}``, plus
        ``"contradictions"`` and ``"contradictions_per_min"`` for the display codes.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    shown: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for t, pred in enumerate(pred_frames):
        for track_id, label in zip(np.asarray(pred["track_id"]).tolist(), np.asarray(pred[key]).tolist(),
                                   strict=True):
            if label >= 0:
                shown[int(track_id)].append((t, int(label)))
    changes = contradictions = 0
    minutes = 0.0
    worst = 0.0
    groups = len(AGE_GROUPS)
    for seq in shown.values():
        n_changes = sum(1 for (_, a), (_, b) in zip(seq, seq[1:], strict=False) if a != b)
        span = (seq[-1][0] - seq[0][0] + 1) / fps / 60.0
        changes += n_changes
        minutes += span
        worst = max(worst, n_changes / span)
        last = None  # the last decided value: a span (first, last) or a gender
        for _, code in seq:
            if key == "age_code" and code < groups * groups:
                value: Any = (code // groups, code % groups)
                contradictions += last is not None and (value[0] > last[1] or value[1] < last[0])
                last = value
            elif key == "gender_code" and code in (0, 1):
                contradictions += last is not None and code != last
                last = code
    out: dict[str, Any] = {"changes": changes, "minutes": round(minutes, 4),
                           "per_track_per_min": changes / minutes if minutes > 0 else 0.0, "tracks": len(shown),
                           "worst_track_per_min": worst}
    if key in ("age_code", "gender_code"):
        out["contradictions"] = int(contradictions)
        out["contradictions_per_min"] = contradictions / minutes if minutes > 0 else 0.0
    return out


def label_metrics(video: LabelledVideo, trace: PipelineTrace,
                  source_predictions: dict[int, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Accuracy of the shown labels, of the raw classifications, and of the source images; time to label.

    Args:
        video: Ground truth.
        trace: The pipeline's record on the video.
        source_predictions: GT track id → ``(age_group, gender)`` predicted on its source image (optional).

    Returns:
        Counts and accuracies (see the module doc); accuracies are None where nothing was counted.
    """
    truth = {t["track_id"]: (int(age_group_index(t["age"])), int(t["gender"])) for t in video.tracks}
    shown_group = shown_gender = correct_group = correct_gender = 0
    ready_frames = range_frames = range_correct = 0
    labelled_frames: dict[int, int] = defaultdict(int)
    first_visible: dict[int, int] = {}
    first_label: dict[int, int] = {}
    pair_of: dict[tuple[int, int], int] = {}  # (frame, pred track id) -> GT track id
    for t, (rows, pred) in enumerate(zip(video.frames, trace.frames, strict=False)):
        counted = [r for r in rows if r["visibility"] >= MIN_VISIBILITY]
        for row in counted:
            first_visible.setdefault(row["track_id"], t)
        gt_xyxy = np.asarray([r["xyxy"] for r in counted], np.float32).reshape(-1, 4)
        ready = pred.get("ready", (np.asarray(pred["shown_group"]) >= 0) | (np.asarray(pred["shown_gender"]) >= 0))
        for g, p in match_frame(gt_xyxy, pred["xyxy"]):
            gt_id = counted[g]["track_id"]
            pair_of[(t, int(pred["track_id"][p]))] = gt_id
            group, gender = int(pred["shown_group"][p]), int(pred["shown_gender"][p])
            if ready[p]:
                ready_frames += 1
                code = int(pred["age_code"][p]) if "age_code" in pred else -1
                if group < 0 and 0 <= code < len(AGE_GROUPS) ** 2:
                    range_frames += 1
                    range_correct += code // len(AGE_GROUPS) <= truth[gt_id][0] <= code % len(AGE_GROUPS)
            if group >= 0:
                shown_group += 1
                correct_group += group == truth[gt_id][0]
                labelled_frames[gt_id] += 1
                first_label.setdefault(gt_id, t)
            if gender >= 0:
                shown_gender += 1
                correct_gender += gender == truth[gt_id][1]
    # The no-fusion baseline a user would otherwise see: on every labelled frame, the latest single
    # classification of that track (carried forward), scored on exactly the frames the fused label is.
    latest: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for frame_index, track_id, group, gender, _ in trace.raw:
        latest[track_id].append((frame_index, group, gender))
    last_n = last_group = last_gender = 0
    for (t, pred_id), gt_id in pair_of.items():
        history = latest.get(pred_id, [])
        position = bisect.bisect_right(history, (t, 1 << 30, 1 << 30)) - 1
        if position < 0:
            continue
        last_n += 1
        last_group += history[position][1] == truth[gt_id][0]
        last_gender += history[position][2] == truth[gt_id][1]
    raw_group = raw_gender = raw_n = 0
    for frame_index, track_id, group, gender, _ in trace.raw:
        gt_id = pair_of.get((frame_index, track_id))
        if gt_id is None:
            continue
        raw_n += 1
        raw_group += group == truth[gt_id][0]
        raw_gender += gender == truth[gt_id][1]
    delays = [(first_label[k] - first_visible[k]) / video.fps for k in first_label if k in first_visible]
    result: dict[str, Any] = {
        # Coverage: of the frames where a matched face shows a label, the share with one age group / a gender
        # shown (the rest show a range or age?, or ?); the accuracies below are over the decided frames.
        "ready_frames": ready_frames,
        "age_decided_share": shown_group / ready_frames if ready_frames else None,
        "age_range_share": range_frames / ready_frames if ready_frames else None,
        "age_range_contains_truth": range_correct / range_frames if range_frames else None,
        "gender_decided_share": shown_gender / ready_frames if ready_frames else None,
        # Wrong decisions per labelled frame: what a user sees wrongly (an undecided label is not wrong).
        "age_group_wrong_per_ready": (shown_group - correct_group) / ready_frames if ready_frames else None,
        "gender_wrong_per_ready": (shown_gender - correct_gender) / ready_frames if ready_frames else None,
        "labelled_frames": shown_group,
        "age_group_acc_shown": correct_group / shown_group if shown_group else None,
        "gender_acc_shown": correct_gender / shown_gender if shown_gender else None,
        "raw_classifications": raw_n,
        "age_group_acc_raw": raw_group / raw_n if raw_n else None,
        "gender_acc_raw": raw_gender / raw_n if raw_n else None,
        "last_raw_frames": last_n,
        "age_group_acc_last_raw": last_group / last_n if last_n else None,
        "gender_acc_last_raw": last_gender / last_n if last_n else None,
        "gt_tracks_visible": len(first_visible),
        "gt_tracks_labelled": len(first_label),
        "time_to_first_label_s": delays,
    }
    if source_predictions:
        weights = [labelled_frames[k] for k in source_predictions]
        total = sum(weights)
        if total:
            result["age_group_acc_source_image"] = sum(
                w * (source_predictions[k][0] == truth[k][0]) for k, w in zip(source_predictions, weights,
                                                                             strict=True)) / total
            result["gender_acc_source_image"] = sum(
                w * (source_predictions[k][1] == truth[k][1]) for k, w in zip(source_predictions, weights,
                                                                             strict=True)) / total
    return result


def classify_sources(video: LabelledVideo, config: Any, detector: Any, classifiers: Any,
                     utkface: str | Path | None = None) -> dict[int, tuple[int, int]]:
    """Each GT face's source image, classified once through the product's still-image path.

    The crop is masked over grey as it is pasted (:func:`bench.synth.reference_canvas`); the detection
    overlapping the known face box best is taken.

    Returns:
        GT track id → ``(age_group, gender)``; faces the detector misses are left out.
    """
    from bench import synth
    from stream.pipeline import Pipeline

    root = Path(utkface) if utkface is not None else synth.shared_dir() / "data" / "utkface" / "UTKFace"
    pipeline = Pipeline(config, detector=detector, classifiers=classifiers)
    out = {}
    for track in video.tracks:
        face = synth.load_face(root / track["file"])
        canvas, offset = synth.reference_canvas(face.image)
        faces = pipeline.process_still(Frame(0, 0.0, canvas))
        ready = shown_arrays(faces)["ready"]
        if not ready.any():
            continue
        iou = iou_xyxy(face.face_xyxy[None] + offset, faces.xyxy)[0]
        iou[~ready] = -1
        best = int(np.argmax(iou))
        if iou[best] < IOU_THRESHOLD:
            continue
        # On purpose the classifier's own answer (most likely group, P(female) >= 0.5), like trace.raw: the
        # reference for "classifier alone on the source photo", not a label shown (stream.labels may show a range).
        group = int(np.argmax(faces.data[AGE_GROUP_PROBS][best]))
        out[track["track_id"]] = (group, int(faces.data[P_FEMALE][best] >= 0.5))
    return out


def evaluate(videos: Sequence[LabelledVideo], config: Any, *, utkface: str | Path | None = None,
             source_images: bool = True) -> dict[str, Any]:
    """Run the pipeline on each generated video and score it; pooled figures under ``"all"``.

    Returns:
        ``{"videos": [{name, frames, mot..., labels..., flicker...}], "all": {...}}``.
    """
    from stream.classify import build_classifiers
    from stream.detectors import build_detector

    detector = build_detector(config.detector, config.models, config.runtime)
    classifiers = build_classifiers(config.classifier, config.models, config.runtime)
    per_video = []
    gt_all: list[list[dict[str, Any]]] = []
    pred_all: list[dict[str, np.ndarray]] = []
    totals: dict[str, float] = defaultdict(float)
    delays: list[float] = []
    offset = 0
    fps = videos[0].fps if videos else 25.0
    for video in videos:
        trace = run_pipeline(video.video, config, detector=detector, classifiers=classifiers)
        if len(trace.frames) != len(video.frames):
            raise ValueError(f"video {video.video} decoded to {len(trace.frames)} frames, GT has {len(video.frames)}")
        sources = classify_sources(video, config, detector, classifiers, utkface) if source_images else None
        labels = label_metrics(video, trace, sources)
        row = {"video": video.video.name, "frames": len(video.frames), "pipeline_fps": len(trace.frames)
               / max(trace.seconds, 1e-9), **mot_metrics(video.frames, trace.frames),
               **{k: v for k, v in labels.items() if k != "time_to_first_label_s"},
               "time_to_first_label_median_s": _median(labels["time_to_first_label_s"]),
               "flicker_group": flicker(trace.frames, trace.fps, "age_code"),
               "flicker_gender": flicker(trace.frames, trace.fps, "gender_code")}
        per_video.append(row)
        delays += labels["time_to_first_label_s"]
        # Pool: offset ids so tracks of different videos never meet.
        for rows, pred in zip(video.frames, trace.frames, strict=True):
            gt_all.append([{**r, "track_id": r["track_id"] + offset} for r in rows])
            pred_all.append({**pred, "track_id": pred["track_id"] + offset})
        offset += 100000
        n = labels["labelled_frames"]
        ready = labels["ready_frames"]
        gender_n = round((labels["gender_decided_share"] or 0) * ready)
        range_n = round((labels["age_range_share"] or 0) * ready)
        for key, weight in (("age_decided_share", ready), ("age_range_share", ready),
                            ("gender_decided_share", ready), ("age_group_wrong_per_ready", ready),
                            ("gender_wrong_per_ready", ready), ("age_range_contains_truth", range_n),
                            ("age_group_acc_shown", n), ("gender_acc_shown", gender_n),
                            ("age_group_acc_raw", labels["raw_classifications"]),
                            ("gender_acc_raw", labels["raw_classifications"]),
                            ("age_group_acc_last_raw", labels["last_raw_frames"]),
                            ("gender_acc_last_raw", labels["last_raw_frames"]),
                            ("age_group_acc_source_image", n), ("gender_acc_source_image", n)):
            if labels.get(key) is not None:
                totals[key] += labels[key] * weight
                totals[key + "_w"] += weight
    pooled: dict[str, Any] = {**mot_metrics(gt_all, pred_all),
              **{k: totals[k] / totals[k + "_w"] for k in list(totals) if not k.endswith("_w") and totals[k + "_w"]},
              "time_to_first_label_median_s": _median(delays),
              "time_to_first_label_max_s": max(delays) if delays else None,
              "flicker_group": flicker(pred_all, fps, "age_code"),
              "flicker_gender": flicker(pred_all, fps, "gender_code")}
    pooled["targets"] = {
        "idf1>=0.8": pooled["idf1"] >= TARGET_IDF1,
        "flicker_group<=1/min": pooled["flicker_group"]["per_track_per_min"] <= TARGET_FLICKER_PER_MIN,
        "flicker_gender<=1/min": pooled["flicker_gender"]["per_track_per_min"] <= TARGET_FLICKER_PER_MIN,
        "track_age_acc>per_image": _gt(pooled.get("age_group_acc_shown"), pooled.get("age_group_acc_raw")),
        "track_age_acc>last_label": _gt(pooled.get("age_group_acc_shown"), pooled.get("age_group_acc_last_raw")),
        "track_age_acc>source_image": _gt(pooled.get("age_group_acc_shown"),
                                          pooled.get("age_group_acc_source_image")),
    }
    return {"videos": per_video, "all": pooled}


def _gt(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a > b


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def evaluate_real_clip(path: str | Path, config: Any, *, detector: Any = None, classifiers: Any = None,
                       max_frames: int | None = None) -> dict[str, Any]:
    """Stability on a single-person clip: flicker, and the spread of the shown age of its main track.

    Returns:
        ``{"clip", "frames", "tracks", "main_track_frames", "labelled_frames", "age_mean", "age_std",
        "age_min", "age_max", "age_range", "groups_shown", "flicker_group", "flicker_gender",
        "time_to_first_label_s"}``.
    """
    trace = run_pipeline(path, config, detector=detector, classifiers=classifiers, max_frames=max_frames)
    counts: dict[int, int] = defaultdict(int)
    for pred in trace.frames:
        for track_id in pred["track_id"].tolist():
            counts[int(track_id)] += 1
    main = max(counts, key=lambda k: counts[k]) if counts else None
    ages: list[float] = []
    groups: list[int] = []
    genders: list[int] = []
    ready_frames = incoherent = 0
    first_seen = first_label = None
    for t, pred in enumerate(trace.frames):
        for i, track_id in enumerate(pred["track_id"].tolist()):
            if track_id != main:
                continue
            first_seen = t if first_seen is None else first_seen
            if not pred["ready"][i]:
                continue
            ready_frames += 1
            incoherent += int(pred["incoherent"][i])
            first_label = t if first_label is None else first_label
            genders.append(int(pred["shown_gender"][i]))
            if pred["shown_group"][i] >= 0:
                ages.append(float(pred["age"][i]))
                groups.append(int(pred["shown_group"][i]))
    ages_arr = np.asarray(ages, np.float64)
    finite = ages_arr[np.isfinite(ages_arr)]
    truth = REAL_CLIP_GENDER.get(Path(path).name)
    decided = [g for g in genders if g >= 0]
    return {
        "ready_frames": ready_frames,
        "age_decided_share": len(ages) / ready_frames if ready_frames else None,
        "gender_decided_share": len(decided) / ready_frames if ready_frames else None,
        "gender_truth": truth,
        "gender_acc_shown": (sum(g == truth for g in decided) / len(decided)) if truth is not None and decided
        else None,
        "gender_wrong_per_ready": (sum(g != truth for g in decided) / ready_frames) if truth is not None
        and ready_frames else None,
        "incoherent_frames": incoherent,
        "clip": Path(path).name, "frames": len(trace.frames), "tracks": len(counts),
        "main_track_frames": counts.get(main, 0) if main is not None else 0, "labelled_frames": len(ages),
        "age_mean": float(finite.mean()) if len(finite) else None,
        "age_std": float(finite.std()) if len(finite) else None,
        "age_min": float(finite.min()) if len(finite) else None,
        "age_max": float(finite.max()) if len(finite) else None,
        "age_range": float(finite.max() - finite.min()) if len(finite) else None,
        "groups_shown": sorted({AGE_GROUPS[g] for g in groups}),
        "flicker_group": flicker(trace.frames, trace.fps, "age_code"),
        "flicker_gender": flicker(trace.frames, trace.fps, "gender_code"),
        "time_to_first_label_s": (
            (first_label - first_seen) / trace.fps if first_label is not None and first_seen is not None else None
        ),
        "pipeline_fps": len(trace.frames) / max(trace.seconds, 1e-9),
    }


# ---------------------------------------------------------------------------------------------- CLI


def _f(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "met" if value else "MISSED"
    return format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    """Plain-text tables of :func:`main`'s report."""
    lines = []
    if report.get("generated"):
        gen = report["generated"]
        lines += [f"generated videos ({len(gen['videos'])} in {report['out_dir']}):",
                  f"  {'video':<14}{'frames':>7}{'IDF1':>7}{'MOTA':>7}{'IDsw':>6}{'FP':>5}{'FN':>5}"
                  f"{'gt/pred trk':>12}{'age shown':>10}{'age last':>9}{'age raw':>9}{'age img':>9}"
                  f"{'gen shown':>10}{'gen last':>9}{'gen raw':>9}{'flick/min':>10}{'t1st s':>8}"]
        for row in gen["videos"] + [{"video": "ALL", "frames": sum(r["frames"] for r in gen["videos"]),
                                     **gen["all"]}]:
            lines.append(
                f"  {row['video'][:14]:<14}{row['frames']:>7}{_f(row['idf1']):>7}{_f(row['mota']):>7}"
                f"{row['id_switches']:>6}{row['false_positives']:>5}{row['misses']:>5}"
                f"{str(row['gt_tracks']) + '/' + str(row['pred_tracks']):>12}"
                f"{_f(row.get('age_group_acc_shown')):>10}{_f(row.get('age_group_acc_last_raw')):>9}"
                f"{_f(row.get('age_group_acc_raw')):>9}"
                f"{_f(row.get('age_group_acc_source_image')):>9}{_f(row.get('gender_acc_shown')):>10}"
                f"{_f(row.get('gender_acc_last_raw')):>9}{_f(row.get('gender_acc_raw')):>9}"
                f"{_f(row['flicker_group']['per_track_per_min'], '.2f'):>10}"
                f"{_f(row.get('time_to_first_label_median_s'), '.2f'):>8}")
        pooled = gen["all"]
        lines.append(f"  label changes/min that contradict the last shown (age, gender): "
                     f"{_f(pooled['flicker_group'].get('contradictions_per_min'), '.2f')}, "
                     f"{_f(pooled['flicker_gender'].get('contradictions_per_min'), '.2f')}; all changes incl. "
                     f"group <-> range <-> age? refinements in flick/min")
        lines.append(f"  gender flicker/min (all): {pooled['flicker_gender']['per_track_per_min']:.2f}; "
                     f"age-group changes {pooled['flicker_group']['changes']} over "
                     f"{pooled['flicker_group']['minutes']:.2f} track-minutes")
        lines.append("  targets: " + ", ".join(f"{k} {_f(v)}" for k, v in pooled["targets"].items()))
        lines += ["  what is shown on labelled frames (decided share; wrong decisions per labelled frame):",
                  f"  {'video':<14}{'labelled':>9}{'age 1grp':>9}{'range':>7}{'rng ok':>7}{'age wrong':>10}"
                  f"{'gen dec':>8}{'gen wrong':>10}"]
        for row in gen["videos"] + [{"video": "ALL", **gen["all"],
                                     "ready_frames": sum(r["ready_frames"] for r in gen["videos"])}]:
            lines.append(
                f"  {row['video'][:14]:<14}{row['ready_frames']:>9}{_f(row.get('age_decided_share')):>9}"
                f"{_f(row.get('age_range_share')):>7}{_f(row.get('age_range_contains_truth')):>7}"
                f"{_f(row.get('age_group_wrong_per_ready')):>10}{_f(row.get('gender_decided_share')):>8}"
                f"{_f(row.get('gender_wrong_per_ready')):>10}")
    if report.get("real"):
        lines += ["", "real single-person clips (main track):",
                  f"  {'clip':<26}{'frames':>7}{'tracks':>7}{'labelled':>9}{'age mean':>9}{'std':>6}{'min':>6}"
                  f"{'max':>6}{'groups shown':>22}{'grp flk/min':>12}{'gen flk/min':>12}{'t1st s':>7}"]
        for row in report["real"]:
            lines.append(
                f"  {row['clip'][:26]:<26}{row['frames']:>7}{row['tracks']:>7}{row['labelled_frames']:>9}"
                f"{_f(row['age_mean'], '.1f'):>9}{_f(row['age_std'], '.2f'):>6}{_f(row['age_min'], '.1f'):>6}"
                f"{_f(row['age_max'], '.1f'):>6}{','.join(row['groups_shown']):>22}"
                f"{row['flicker_group']['per_track_per_min']:>12.2f}{row['flicker_gender']['per_track_per_min']:>12.2f}"
                f"{_f(row['time_to_first_label_s'], '.2f'):>7}")
        lines += [f"  {'clip':<26}{'labelled':>9}{'age 1grp':>9}{'gen dec':>8}{'gen acc':>8}{'gen wrong':>10}"
                  f"{'years outside group':>20}"]
        for row in report["real"]:
            lines.append(f"  {row['clip'][:26]:<26}{row['ready_frames']:>9}{_f(row['age_decided_share']):>9}"
                         f"{_f(row['gender_decided_share']):>8}{_f(row['gender_acc_shown']):>8}"
                         f"{_f(row['gender_wrong_per_ready']):>10}{row['incoherent_frames']:>20}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate_video",
                                     description="Generate labelled videos, run the pipeline on them, report "
                                                 "IDF1/MOTA, label accuracy, flicker; stability on real clips.")
    parser.add_argument("--out", help=f"folder for generated videos (default {default_out_dir()})")
    parser.add_argument("--utkface", help="UTKFace-format folder of faces (default: the shared UTKFace)")
    parser.add_argument("--videos", type=int, default=4, help="generated videos (default 4)")
    parser.add_argument("--frames", type=int, default=250, help="frames per generated video (default 250)")
    parser.add_argument("--tracks", type=int, default=6, help="faces per generated video (default 6)")
    parser.add_argument("--size", default="960x540", help="WxH of generated videos (default 960x540)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--regenerate", action="store_true", help="rewrite videos even when cached ones match")
    parser.add_argument("--no-source-images", action="store_true", help="skip classifying each face's source image")
    parser.add_argument("--real", default=",".join(REAL_CLIPS),
                        help="real clips in the shared videos folder ('' skips)")
    parser.add_argument("--real-max-frames", type=int, help="frames per real clip (default: all)")
    parser.add_argument("--no-generated", action="store_true", help="only the real clips")
    parser.add_argument("--config", help="config YAML (default: the repo's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--detector", help="detector model name, or auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry; prints the tables, returns 0 (2 on bad arguments)."""
    from bench import synth
    from stream.config import ConfigError, load_cli_config

    args = parse_args(argv)
    try:
        config = load_cli_config(args.config, args.overrides, detector=args.detector, device=args.device)
        width, height = (int(v) for v in args.size.lower().split("x"))
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else default_out_dir()
    report: dict[str, Any] = {"out_dir": str(out_dir), "command": "python -m bench.evaluate_video "
                              + " ".join(sys.argv[1:] if argv is None else argv)}
    started = time.perf_counter()
    try:
        if not args.no_generated:
            videos = generate_set(out_dir, videos=args.videos, seed=args.seed, reuse=not args.regenerate,
                                  n_tracks=args.tracks, n_frames=args.frames, size=(width, height),
                                  utkface=args.utkface)
            report["generated"] = evaluate(videos, config, utkface=args.utkface,
                                           source_images=not args.no_source_images)
        clips = [c.strip() for c in args.real.split(",") if c.strip()]
        if clips:
            from stream.classify import build_classifiers
            from stream.detectors import build_detector

            detector = build_detector(config.detector, config.models, config.runtime)
            classifiers = build_classifiers(config.classifier, config.models, config.runtime)
            folder = synth.shared_dir() / "videos"
            report["real"] = [evaluate_real_clip(folder / c, config, detector=detector, classifiers=classifiers,
                                                 max_frames=args.real_max_frames) for c in clips
                              if (folder / c).exists()]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(format_report(report))
    print(f"({report['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=_json_default) + "\n", encoding="utf-8")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
