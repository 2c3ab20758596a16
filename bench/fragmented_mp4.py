"""What writing .mp4 fragmented costs: encode+mux time per frame and file size, plain vs fragmented.

``python -m bench.fragmented_mp4 [--clip CLIP] [--frames 240] [--repeats 3]``

Runs :class:`stream.sinks.VideoSink` (no writer thread, so the time is the encode + mux itself) over the same
decoded frames with the container options of a plain mp4 (index at the end) and of the fragmented one the
product writes (``stream.sinks.video._FRAGMENTED``), alternating, and prints the best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av

from bench.latency import _shared_clip
from stream.config import SinkOptions
from stream.sinks import video
from stream.types import Faces, Frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fragmented_mp4", description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=None, help="default ../shared/videos/woman_1280x720.mp4")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    clip = args.clip or _shared_clip("woman_1280x720.mp4")
    with av.open(str(clip)) as container:
        images = [f.to_ndarray(format="bgr24") for _, f in zip(range(args.frames), container.decode(video=0))]
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for label, options in (("plain", {}), ("fragmented", video._FRAGMENTED)):
                video._CONTAINER_OPTIONS[".mp4"] = options
                path = Path(folder) / f"{label}.mp4"
                started = time.perf_counter()
                with video.VideoSink(path, 30, SinkOptions(video_writer_thread=False)) as sink:
                    for i, image in enumerate(images):
                        sink.write(Frame(i, i / 30, image.copy(), "bench"), Faces.empty())
                ms = (time.perf_counter() - started) * 1000 / len(images)
                if label not in best or ms < best[label][0]:
                    best[label] = (ms, os.path.getsize(path))
    video._CONTAINER_OPTIONS[".mp4"] = video._FRAGMENTED
    height, width = images[0].shape[:2]
    print(f"{len(images)} frames {width}x{height}, best of {args.repeats}:")
    for label, (ms, size) in best.items():
        print(f"  {label:10s} {ms:6.2f} ms/frame  {size / 1e6:7.3f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
