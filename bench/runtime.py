"""``python -m bench.runtime``: onnxruntime session settings measured on this machine.

Runs the full pipeline (decode thread, detection, classification, H.264 encode thread) on a
clip under each combination of ``runtime.intra_op_threads`` and ``runtime.allow_spinning``,
interleaving the variants round by round so that machine noise hits all of them alike, and
prints the median fps of each. This is the measurement behind the defaults in config.yaml.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

from stream.config import load_config, replace


def _one_run(config, clip: str, max_frames: int, out_dir: Path) -> float:
    from stream.pipeline import Pipeline, run
    from stream.sinks import open_sinks
    from stream.sources import open_source

    with open_source(clip, options=config.source) as source:
        sinks = open_sinks(str(out_dir / "bench.mp4"), None, False, source_kind=source.kind, fps=source.fps,
                           options=config.output)
        pipeline = Pipeline(config)
        pipeline.set_frame_rate(source.fps)
        with sinks[0]:
            result = run(pipeline, source, sinks, max_frames=max_frames)
    return result.fps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__)
    parser.add_argument("--source", default=str(Path(__file__).resolve().parents[2] / "shared/videos/crowd_1080p.mp4"))
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="intra_op_threads values to try (0 = number of cores)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    base = load_config()
    variants = list(itertools.product([int(t) for t in args.threads.split(",")], [False, True]))
    fps: dict[tuple[int, bool], list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for threads, spinning in variants:
                config = replace(base, "runtime", intra_op_threads=threads, allow_spinning=spinning)
                fps[(threads, spinning)].append(_one_run(config, args.source, args.max_frames, Path(tmp)))
    rows = [{"intra_op_threads": t, "allow_spinning": s, "median_fps": round(statistics.median(v), 2),
             "runs": [round(x, 2) for x in v]} for (t, s), v in fps.items()]
    sys.stdout.write(f"full pipeline on {Path(args.source).name}, {args.max_frames} frames, {args.rounds} rounds\n")
    sys.stdout.write(f"{'intra_op_threads':>17} {'allow_spinning':>15} {'median fps':>11}  runs\n")
    for row in rows:
        sys.stdout.write(f"{row['intra_op_threads']:>17} {row['allow_spinning']!s:>15} {row['median_fps']:>11}  "
                         f"{row['runs']}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
