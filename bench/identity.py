"""Identity on real faces: does a track ever cross people, and is a person who comes back found again?

``python -m bench.identity [--short] [--set SECTION.KEY=VALUE ...] [--json OUT]``

A labelled stream is made from the real single-person clips in the shared ``videos`` folder (talking_man_512,
talking_woman_512, expressive_woman_480, man_glasses_720x1280, woman_1280x720): each clip is scaled and shifted so
that its face has the same height and centre in a common 960x540 frame (so faces of different people overlap
across every hard cut, the case where an IoU tracker hands one person's track to the next), and the clips are
played one after another as a script of segments, :data:`SCRIPT`:

* hard cuts from one person to another (the faces' boxes overlap);
* a face covered for 2-4 s by a flat patch in the same shot (an occlusion: no cut), then uncovered;
* a cut to black for 1.5 s and back to the same person;
* people who come back after others were shown.

Clips shorter than their segments play forwards and backwards. Ground truth is which clip (person) each frame
comes from, or nobody. The real pipeline (``stream.pipeline.Pipeline``, the repo's config plus ``--set``) runs on
every frame at 25 fps; reported:

* **tracks spanning two people** (goal 0): track ids whose faces come from more than one person's frames, and
  likewise person ids (a false re-identification merges two people);
* **re-identification rate**: of the returns of a person (after an occlusion, a cut to black, or other people),
  those whose person id after the return is the one before it (each segment's majority person id);
* **people counted** (the run's totals, ``people``) against the true 5;
* **faces where nobody is** (false positives), the refused matches, cuts seen (true: the script's cuts);
* **cost per frame**: the pipeline's ``identify`` stage (cut detection on every frame + embeddings of the faces
  classified), ms per frame; the embedding model alone, ms per face (batches of 4); cut detection alone on a
  1080p frame.

``--short`` runs a 0.4x script (1 s occlusions), as the test in ``tests/bench/test_identity.py`` does.

``--false-positives [--montage DIR]`` instead counts the tracks that get a label without being a face, on the real
clips as they are (every frame, the clip's own rate):

* single-person clips: labelled tracks whose box stays off the clip's face (IoU < 0.3 with the frame's most
  confident detection on most of their frames);
* ``crowd_1080p.mp4`` (no ground truth): labelled tracks whose box sits on top of another face, or whose landmarks
  are out of a face's order, on most of their frames (the checks of :mod:`stream.plausible`, measured on every
  track whatever ``scheduler.check_faces`` says); ``--montage`` writes each track's first, middle and last box to
  ``DIR/<clip>.png`` so the count can be checked by eye.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.types import PERSON_ID, Frame

CLIPS = ("talking_man_512.mp4", "talking_woman_512.mp4", "expressive_woman_480.mp4", "man_glasses_720x1280.mp4",
         "woman_1280x720.mp4")
FRAME_SIZE = (960, 540)
#: Where every clip's face is put: its box's height and centre in the common frame.
FACE_HEIGHT = 200
FACE_CENTRE = (480, 250)
FPS = 25.0
#: Segments: (clip index, seconds, how the face is shown). "face": the clip; "cover": the clip with the face
#: hidden under a flat patch (same shot); "black": a black frame (clip index -1).
SCRIPT: tuple[tuple[int, float, str], ...] = (
    (0, 3.0, "face"),
    (1, 3.0, "face"),  # cut: the woman's face where the man's was
    (1, 2.0, "cover"),  # occluded 2 s, no cut
    (1, 2.0, "face"),  # back: same person
    (2, 3.0, "face"),
    (-1, 1.5, "black"),  # cut to black...
    (2, 2.0, "face"),  # ...and back to the same person
    (3, 3.0, "face"),
    (0, 3.0, "face"),  # the first man comes back after three other people
    (4, 3.0, "face"),
    (4, 4.0, "cover"),  # occluded 4 s, no cut
    (4, 2.0, "face"),
    (3, 2.0, "face"),  # back after another person
)
#: Frames at the start of a segment not used for its majority person id (a new track may still be re-identified).
SETTLE_FRAMES = 10


@dataclass
class Segment:
    person: int  # clip index, -1: nobody
    kind: str
    start: int  # first frame index
    frames: int


def _read_clip(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    if not frames:
        raise ValueError(f"cannot read any frame of {path}")
    return frames


def _placement(image: np.ndarray, detector: Any) -> np.ndarray:
    """2x3 affine moving this clip's face (its first frame's best detection) to FACE_CENTRE at FACE_HEIGHT."""
    faces = detector.detect(image)
    if not len(faces):
        raise ValueError("no face in the clip's first frame")
    x1, y1, x2, y2 = faces.xyxy[int(np.argmax(faces.score))]
    scale = FACE_HEIGHT / max(float(y2 - y1), 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[scale, 0, FACE_CENTRE[0] - scale * cx], [0, scale, FACE_CENTRE[1] - scale * cy]], np.float64)


def _ping_pong(count: int, position: int) -> int:
    period = max(2 * count - 2, 1)
    k = position % period
    return k if k < count else period - k


def build_stream(folder: Path, detector: Any, scale: float = 1.0) -> tuple[list[Segment], Iterator[np.ndarray], int]:
    """The script's segments, a generator of its frames (960x540 BGR), and the frame count.

    Args:
        folder: The shared ``videos`` folder.
        detector: Finds each clip's face on its first frame (placement only).
        scale: Multiplies every segment's duration (``--short``: 0.4; covers and black last >= 1 s).
    """
    clips = [_read_clip(folder / name) for name in CLIPS]
    placements = [_placement(frames[0], detector) for frames in clips]
    segments: list[Segment] = []
    start = 0
    for person, seconds, kind in SCRIPT:
        duration = seconds * scale if kind == "face" else max(1.0, seconds * scale)
        n = max(1, round(duration * FPS))
        segments.append(Segment(person if kind != "black" else -1, kind, start, n))
        start += n
    width, height = FRAME_SIZE
    cover = (int(FACE_CENTRE[0] - 0.8 * FACE_HEIGHT), int(FACE_CENTRE[1] - 0.9 * FACE_HEIGHT),
             int(FACE_CENTRE[0] + 0.8 * FACE_HEIGHT), int(FACE_CENTRE[1] + 0.9 * FACE_HEIGHT))

    def frames() -> Iterator[np.ndarray]:
        played = [0] * len(clips)  # each clip continues where it stopped
        for segment in segments:
            for _ in range(segment.frames):
                if segment.kind == "black":
                    yield np.zeros((height, width, 3), np.uint8)
                    continue
                clip = clips[segment.person]
                image = cv2.warpAffine(clip[_ping_pong(len(clip), played[segment.person])], placements[segment.person],
                                       (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                played[segment.person] += 1
                if segment.kind == "cover":
                    x1, y1, x2, y2 = cover
                    image[max(y1, 0):y2, max(x1, 0):x2] = image[max(y1, 0):y2, max(x1, 0):x2].mean(axis=(0, 1))
                yield image

    return segments, frames(), start


def _majority(values: list[int]) -> int | None:
    return Counter(values).most_common(1)[0][0] if values else None


def evaluate(config: Any, *, scale: float = 1.0, folder: Path | None = None) -> dict[str, Any]:
    """Run the pipeline on the scripted stream and score identity (see the module docstring)."""
    from bench import synth
    from stream.pipeline import Pipeline
    from stream.tracking.cuts import CutDetector

    pipeline = Pipeline(config)
    pipeline.set_frame_rate(FPS)
    folder = folder or synth.shared_dir() / "videos"
    segments, images, total = build_stream(folder, pipeline.detector, scale)
    truth = np.full(total, -1, np.int64)
    for segment in segments:
        truth[segment.start:segment.start + segment.frames] = segment.person
    track_people: dict[int, set[int]] = defaultdict(set)
    person_people: dict[int, set[int]] = defaultdict(set)
    persons_per_frame: list[list[int]] = []
    false_faces = 0
    started = time.perf_counter()
    for index, image in enumerate(images):
        faces, _ = pipeline.process(Frame(index, index / FPS, image, "bench.identity"))
        person_ids = faces.data.get(PERSON_ID, np.full(len(faces), -1, np.int64)).tolist()
        persons_per_frame.append(person_ids)
        who = int(truth[index])
        if who < 0:
            false_faces += len(faces)
            continue
        for track_id, person_id in zip(faces.track_id.tolist(), person_ids):
            track_people[int(track_id)].add(who)
            person_people[int(person_id)].add(who)
    seconds = time.perf_counter() - started
    pipeline.finish()
    totals = pipeline.totals.as_dict()

    # Returns: a person's segment after a segment that is not theirs, when they were shown before.
    returns = []
    seen_before: dict[int, int | None] = {}
    previous = None
    for segment in segments:
        frames = persons_per_frame[segment.start + SETTLE_FRAMES:segment.start + segment.frames]
        majority = _majority([p for ids in frames for p in ids[:1]])
        if segment.kind == "face":
            if segment.person in seen_before and previous is not None and (
                    previous.person != segment.person or previous.kind != "face"):
                why = {"cover": "occlusion", "black": "cut to black"}.get(previous.kind, "other people")
                returns.append({"person": CLIPS[segment.person], "after": why,
                                "same_person_id": majority is not None and majority == seen_before[segment.person]})
            seen_before[segment.person] = majority
        previous = segment
    timing = pipeline.timer.ms_per_frame()

    cuts_true = sum(1 for a, b in zip(segments, segments[1:]) if a.person != b.person or "black" in (a.kind, b.kind))
    return {
        "frames": total,
        "true_people": len(CLIPS),
        "people_counted": totals["people"],
        "labelled_people": totals["labelled_people"],
        "tracks": totals["tracks"],
        "merged_tracks": totals["merged_tracks"],
        "tracks_spanning_two_people": sum(len(p) > 1 for p in track_people.values()),
        "person_ids_spanning_two_people": sum(len(p) > 1 for p in person_people.values()),
        "returns": returns,
        "reidentification_rate": (sum(bool(r["same_person_id"]) for r in returns) / len(returns)) if returns else None,
        "faces_where_nobody_is": false_faces,
        "cuts_seen": pipeline.identities.stats.cuts,
        "cuts_true": cuts_true,
        "refused_matches": pipeline.identities.stats.refused,
        "identify_ms_per_frame": timing.get("identify", 0.0),
        "classified_faces": pipeline.timer.classified_faces,
        "embedding_ms_per_face": _embedding_cost(pipeline.identities.embedder),
        "pipeline_ms_per_frame": round(seconds * 1000 / max(total, 1), 2),
        "cut_detection_ms_1080p": _cut_cost(CutDetector(config.identity.cut_histogram_threshold,
                                                        config.identity.cut_difference_threshold)),
        "embedding_model": config.identity.embedding_model,
    }


def _cut_cost(detector: Any, repeats: int = 50) -> float:
    """ms per call of cut detection on 1080p frames (two alternating real-looking frames)."""
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (54, 96, 3), dtype=np.uint8), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    frames = [base, np.ascontiguousarray(base[:, ::-1])]
    detector.is_cut(frames[0])
    best = np.inf
    for _ in range(5):  # the best of 5 batches: other processes' load only ever adds time
        start = time.perf_counter()
        for i in range(repeats):
            detector.is_cut(frames[i % 2])
        best = min(best, (time.perf_counter() - start) * 1000 / repeats)
    return round(float(best), 4)


def _embedding_cost(embedder: Any, batch: int = 4) -> float | None:
    """ms per face of the embedding model on a batch of ``batch`` chips (best of 5 runs), None without one."""
    if embedder is None:
        return None
    chips = np.random.default_rng(0).integers(0, 256, (batch, embedder.chip_size, embedder.chip_size, 3), np.uint8)
    embedder.embed(chips)
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        embedder.embed(chips)
        best = min(best, (time.perf_counter() - start) * 1000 / batch)
    return round(float(best), 3)


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"frames {report['frames']}  embedding {report['embedding_model']}",
        f"tracks spanning two people: {report['tracks_spanning_two_people']} (goal 0); person ids spanning two "
        f"people: {report['person_ids_spanning_two_people']}",
        f"people counted: {report['people_counted']} (labelled {report['labelled_people']}) vs true "
        f"{report['true_people']}; tracks {report['tracks']}, merged into people {report['merged_tracks']}",
    ]
    rate = report["reidentification_rate"]
    lines.append(f"re-identification: {'-' if rate is None else f'{rate:.0%}'} of {len(report['returns'])} returns")
    for item in report["returns"]:
        verdict = "same id" if item["same_person_id"] else "NEW id"
        lines.append(f"  {item['person']:<26} after {item['after']:<13} {verdict}")
    lines += [
        f"faces where nobody is: {report['faces_where_nobody_is']}; cuts seen {report['cuts_seen']} (script: "
        f"{report['cuts_true']}); refused matches {report['refused_matches']}",
        f"cost: identify {report['identify_ms_per_frame']:.2f} ms/frame (cut detection on every frame, embeddings "
        f"of the classified faces: {report['classified_faces']}); embedding {report['embedding_ms_per_face']} ms a "
        "face; cut detection "
        f"{report['cut_detection_ms_1080p']:.3f} ms per 1080p frame; whole pipeline {report['pipeline_ms_per_frame']}"
        " ms/frame",
    ]
    return "\n".join(lines)


FP_CLIPS = (*CLIPS, "crowd_1080p.mp4")


def false_positive_tracks(config: Any, *, folder: Path | None = None, montage: Path | None = None) -> dict[str, Any]:
    """Per clip: tracks, labelled tracks, and labelled tracks that are not a face (see the module docstring)."""
    from bench import synth
    from stream.pipeline import Pipeline
    from stream.plausible import landmarks_in_face_order, stacked_on_a_face
    from stream.sources import open_source
    from stream.tracking import iou_xyxy
    from stream.types import SHOWN_GROUP

    folder = folder or synth.shared_dir() / "videos"
    report: dict[str, Any] = {}
    detector = None
    for name in FP_CLIPS:
        pipeline = Pipeline(config, detector=detector)
        detector = pipeline.detector
        single = name != "crowd_1080p.mp4"
        life: dict[int, dict[str, Any]] = defaultdict(lambda: {"frames": 0, "off": 0, "boxes": []})
        labelled: set[int] = set()
        images: list[np.ndarray] = []
        with open_source(str(folder / name)) as source:
            pipeline.set_frame_rate(source.fps)
            for frame in source:
                faces, _ = pipeline.process(frame)
                if montage is not None:
                    images.append(frame.image.copy())
                if not len(faces):
                    continue
                if single:
                    best = faces.xyxy[int(np.argmax(faces.score))][None]
                    off = iou_xyxy(faces.xyxy, best)[:, 0] < 0.3
                else:
                    # The checks on this frame's tracked faces (the top of a head and its face are both tracked).
                    off = stacked_on_a_face(faces) | ~landmarks_in_face_order(faces)
                for i, track_id in enumerate(faces.track_id.tolist()):
                    entry = life[int(track_id)]
                    entry["frames"] += 1
                    entry["off"] += bool(off[i])
                    entry["boxes"].append((frame.index, faces.xyxy[i].copy()))
                    if faces.data[SHOWN_GROUP][i] >= 0:
                        labelled.add(int(track_id))
        not_faces = sorted(t for t in labelled if life[t]["off"] * 2 > life[t]["frames"])
        report[name] = {"tracks": len(life), "labelled_tracks": len(labelled),
                        "labelled_not_faces": len(not_faces), "labelled_not_face_ids": not_faces}
        if montage is not None:
            montage.mkdir(parents=True, exist_ok=True)
            _write_montage(montage / f"{Path(name).stem}.png", images, life, labelled)
    return report


def _write_montage(path: Path, images: list[np.ndarray], life: dict[int, dict[str, Any]], labelled: set[int]) -> None:
    """Each track's first, middle and last box (96 px tiles), id and whether it was labelled, one row per track."""
    rows = []
    for track_id in sorted(life):
        boxes = life[track_id]["boxes"]
        tiles = []
        for index, (x1, y1, x2, y2) in (boxes[0], boxes[len(boxes) // 2], boxes[-1]):
            w, h = x2 - x1, y2 - y1
            image = images[index]
            crop = image[max(int(y1 - h / 3), 0):int(y2 + h / 3), max(int(x1 - w / 3), 0):int(x2 + w / 3)]
            tile = cv2.resize(crop, (96, 96)) if crop.size else np.zeros((96, 96, 3), np.uint8)
            text = f"{track_id}{'L' if track_id in labelled else ''}:{index}"
            cv2.putText(tile, text, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 0), 1)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    if rows:
        cv2.imwrite(str(path), np.vstack(rows))


def main(argv: Sequence[str] | None = None) -> int:
    from stream.config import ConfigError, load_cli_config

    parser = argparse.ArgumentParser(prog="python -m bench.identity", description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a 0.4x script (1 s occlusions), as the test runs")
    parser.add_argument("--config", help="config YAML (default: the repo's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--false-positives", action="store_true",
                        help="count labelled tracks that are not faces on the real clips instead")
    parser.add_argument("--montage", type=Path, metavar="DIR", help="with --false-positives: write track montages")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    args = parser.parse_args(argv)
    try:
        config = load_cli_config(args.config, args.overrides)
        if args.false_positives:
            report = false_positive_tracks(config, montage=args.montage)
        else:
            report = evaluate(config, scale=0.4 if args.short else 1.0)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["command"] = "python -m bench.identity " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.false_positives:
        for name, row in report.items():
            if name != "command":
                print(f"{name:<26} tracks {row['tracks']:>3}  labelled {row['labelled_tracks']:>3}  labelled but not a "
                      f"face {row['labelled_not_faces']} {row['labelled_not_face_ids'] or ''}")
    else:
        print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
