"""Many live cameras in one process: how many 1080p25 streams stay real time, and their latency.

``python -m bench.streams [--streams 1,2,4,8] [--seconds 20] [--json OUT]`` (also ``python -m bench streams``)

How it measures:

* **The cameras**: N independent copies of ``crowd_1080p.mp4`` (1920x1080 H.264, 25 fps, 27 faces), each a
  live source: :class:`PacedFileCapture` decodes the clip with PyAV in the source's own grabber thread (as
  the product's RTSP capture does) and hands frame ``k`` over no earlier than ``start + k / fps``, looping
  the clip. Each copy starts at a different offset so the cameras do not decode and detect in lockstep.
  The product's :class:`~stream.sources.LiveSource` reads it: newest frame only, frames the consumer was too
  slow for are dropped and counted, exactly as for a camera.
* **The product**: :func:`stream.cameras.run_cameras` with one detector and one set of classifiers shared by
  every camera, the repo's config (``detector.interval: auto`` = detection on every other frame at 25 fps),
  analytics only (no drawing, no encoding: the per-frame results go to a callback).
* **Figures**, after ``--warmup-s`` and over ``--seconds``: per stream the frames processed per second and
  the share of the camera's frames dropped, and the latency from the frame's due time (when a camera would
  have delivered it) to the end of its processing (p50, p99), which includes decoding and waiting for
  the loop. A stream is **real time** when it processes >= 95 % of its camera's frames and its p99 latency
  stays under ``--max-p99-ms`` (default 500 ms: it does not fall behind). The machine's load average
  before and after each run is printed: on a shared machine other processes take cores too, so the CPU
  time per processed frame (all threads) is printed as well: ``cores / (ms per frame x 25 fps)`` estimates
  how many streams an idle machine would fit. Where that time goes is read per thread from ``/proc`` (Linux)
  over the measured window: the cores taken by decoding (the cameras' grabber threads), by the scheduler
  loop's thread, by its camera workers (conversion, detection, tracking and fusion of several cameras at once,
  :mod:`stream.cameras`) and by the rest (onnxruntime's own pool threads), and the loop thread's CPU time per
  frame: the serial part, which bounds the frames per second one process can serve whatever the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench.speed import DEFAULT_SOURCE as DEFAULT_CLIP
from stream.cameras import Camera, run_cameras
from stream.classify import build_classifiers
from stream.config import CameraSpec, Config, ConfigError, load_cli_config
from stream.detectors import build_detector
from stream.pipeline import Pipeline
from stream.sources import LiveSource
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

REAL_TIME_SHARE = 0.95


class PacedFileCapture:
    """A video file played as a live camera: frame ``k`` is handed over at ``start + k / fps``, looping.

    Behind the ``cv2.VideoCapture`` interface the live sources read through, plus ``read_frame()`` (the
    decoded ``av.VideoFrame``, converted to BGR only when the consumer takes it, as for RTSP streams).

    Args:
        path: The clip.
        offset_frames: Start this many frames into the clip (so copies are not in lockstep).
    """

    def __init__(self, path: str | Path, offset_frames: int = 0) -> None:
        self.path = str(path)
        self._container = av.open(self.path)
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        self._frames = self._decode()
        for _ in range(offset_frames):
            next(self._frames)
        self.due: list[float] = []  # monotonic due time of every frame handed over, by index
        self._start: float | None = None

    def _decode(self) -> Any:
        while True:
            yield from self._container.decode(self._stream)
            self._container.seek(0)

    def read_frame(self) -> Any:
        frame = next(self._frames)
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + len(self.due) / self.fps
        if due > now:
            time.sleep(due - now)
        self.due.append(due)
        return frame

    def read(self) -> tuple[bool, np.ndarray | None]:
        return True, self.read_frame().to_ndarray(format="bgr24")

    def isOpened(self) -> bool:  # noqa: N802 - cv2's spelling
        return self._container is not None

    def get(self, prop_id: int) -> float:
        return self.fps if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None  # type: ignore[assignment]


def _no_sinks(_source: Any) -> list[Any]:
    return []  # analytics only: the results go to on_result


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


#: Thread roles of the per-thread CPU figures, by thread-name prefix (threads without a Python name, such as
#: onnxruntime's pool threads, are "other").
THREAD_ROLES = {"grabber:": "decode", "MainThread": "loop", "camera-worker": "workers"}


def _thread_cpu_s() -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) of every live thread of this process by (native id, Python name or "");
    empty off Linux."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    seconds: dict[tuple[int, str], float] = {}
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return seconds
    for task in tasks:
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        tid = int(task.name)
        seconds[tid, names.get(tid, "")] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
    return seconds


def _role(name: str) -> str:
    return next((role for prefix, role in THREAD_ROLES.items() if name.startswith(prefix)), "other")


def _cores_by_role(before: dict[tuple[int, str], float], after: dict[tuple[int, str], float],
                   seconds: float) -> dict[str, float]:
    """Cores taken by each thread role between two :func:`_thread_cpu_s` snapshots ``seconds`` apart."""
    cores = dict.fromkeys([*THREAD_ROLES.values(), "other"], 0.0)
    for (tid, name), cpu in after.items():
        cores[_role(name)] += (cpu - before.get((tid, name), 0.0)) / seconds
    return {role: round(value, 3) for role, value in cores.items()}


def run_streams(config: Config, clip: Path, n_streams: int, seconds: float, warmup_s: float, max_p99_ms: float,
                detector: Any, classifiers: Any) -> dict[str, Any]:
    """``n_streams`` paced copies of ``clip`` through :func:`run_cameras` for ``warmup_s + seconds``."""
    captures: dict[str, PacedFileCapture] = {}
    latencies: dict[str, list[float]] = {}
    processed: dict[str, int] = {}
    lock = threading.Lock()
    window: dict[str, float] = {}

    def opener(k: int) -> LiveSource:
        def factory(_spec: Any) -> PacedFileCapture:
            capture = PacedFileCapture(clip, offset_frames=(k * 13) % 100)
            captures[f"cam{k}"] = capture
            return capture

        # Eight decoders starting at once on a busy machine can take a while for their first frame.
        options = dataclasses.replace(config.source, open_timeout_s=max(config.source.open_timeout_s, 60.0))
        return LiveSource(str(clip), f"cam{k}", "stream", factory, options)

    def on_result(camera: Camera, frame: Frame, faces: Faces, _done: float) -> None:
        now = time.monotonic()
        if not window or now < window["start"] or now > window["end"]:
            return
        capture = captures[camera.name]
        with lock:
            processed[camera.name] = processed.get(camera.name, 0) + 1
            if frame.index < len(capture.due):
                latencies.setdefault(camera.name, []).append((now - capture.due[frame.index]) * 1000)

    cameras = []
    for k in range(n_streams):
        pipeline = Pipeline(config, detector=detector, classifiers=classifiers, camera=f"cam{k}")
        camera = Camera(CameraSpec(f"cam{k}", str(clip)), pipeline, functools.partial(opener, k), _no_sinks, live=True)
        camera.start()
        cameras.append(camera)
    load_before = _loadavg()
    cpu_before = os.times()
    started = time.monotonic()
    window.update(start=started + warmup_s, end=started + warmup_s + seconds)
    dropped_before: dict[str, int] = {}
    threads_cpu: dict[str, dict[tuple[int, str], float]] = {}

    def should_stop() -> bool:
        now = time.monotonic()
        if not dropped_before and now >= window["start"]:
            dropped_before.update({c.name: c.source.frames_dropped for c in cameras if c.source is not None})
            threads_cpu["start"] = _thread_cpu_s()
        if now > window["end"] and "end" not in threads_cpu:
            threads_cpu["end"] = _thread_cpu_s()  # before the threads end
        return now > window["end"]

    try:
        result = run_cameras(cameras, [], should_stop=should_stop, on_result=on_result)
    finally:
        dropped_after = {c.name: c.source.frames_dropped for c in cameras if c.source is not None}
        for camera in cameras:
            camera.close()
    cpu_after = os.times()
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    rows: list[dict[str, Any]] = []
    for camera in cameras:
        name = camera.name
        lat = latencies.get(name, [])
        fps = processed.get(name, 0) / seconds
        offered = captures[name].fps if name in captures else 25.0
        p99 = _percentile(lat, 99)
        real_time = fps >= REAL_TIME_SHARE * offered and p99 is not None and p99 <= max_p99_ms
        rows.append({"camera": name, "status": result.status[name], "fps": round(fps, 2),
                     "dropped": dropped_after.get(name, 0) - dropped_before.get(name, 0),
                     "latency_p50_ms": _percentile(lat, 50), "latency_p99_ms": p99, "real_time": real_time})
    cores = _cores_by_role(threads_cpu.get("start", {}), threads_cpu.get("end", {}), seconds)
    frames_in_window = sum(processed.values())
    stage_ms: dict[str, float] = {}
    for camera_result in result.cameras.values():
        for stage, ms in camera_result.stage_ms.items():
            stage_ms[stage] = stage_ms.get(stage, 0.0) + ms / n_streams
    return {
        "streams": n_streams,
        "seconds": seconds,
        "real_time_streams": sum(row["real_time"] for row in rows),
        "all_real_time": all(row["real_time"] for row in rows),
        "fps_per_stream_min": min(float(row["fps"]) for row in rows),
        "latency_p50_ms": _percentile([v for lat in latencies.values() for v in lat], 50),
        "latency_p99_ms": _percentile([v for lat in latencies.values() for v in lat], 99),
        "cpu_cores_busy": round(cpu_s / (time.monotonic() - started), 2),
        # CPU time (all threads: decoding, inference, the loop) per frame processed, warm-up included: what a
        # frame costs whatever else the machine runs; cores / (cost x fps) estimates the streams that would fit.
        "cpu_ms_per_frame": round(cpu_s * 1000 / max(result.frames, 1), 2),
        # Over the measured window, per thread role: the cores each took, and the loop thread's CPU time per frame
        # processed (the serial part: 1000 / it bounds the frames per second of all streams together).
        "cores_by_thread": cores,
        "loop_cpu_ms_per_frame": round(cores["loop"] * seconds * 1000 / max(frames_in_window, 1), 2),
        "frames_decoded": sum(len(c.due) for c in captures.values()),
        "frames_processed": result.frames,
        "classifier_batches": result.batches,
        "faces_per_batch": round(result.batched_faces / max(result.batches, 1), 2),
        "stage_ms_per_frame": {k: round(v, 2) for k, v in stage_ms.items() if v},
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "per_stream": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{report['command']}", f"clip {report['clip']}, {report['cores']} cores, "
             f"{report['seconds']:g} s measured after {report['warmup_s']:g} s warm-up; real time = "
             f">= {REAL_TIME_SHARE:.0%} of frames processed and p99 <= {report['max_p99_ms']:g} ms", "",
             "streams  real-time  min fps/stream  latency p50  p99 (ms)  cores busy  cpu ms/frame  faces/batch"
             "  loadavg before"]
    for run in report["runs"]:
        lines.append(f"{run['streams']:>7}  {run['real_time_streams']:>5}/{run['streams']:<3}  "
                     f"{run['fps_per_stream_min']:>14.1f}  {run['latency_p50_ms'] or math.nan:>11.0f}  "
                     f"{run['latency_p99_ms'] or math.nan:>8.0f}  {run['cpu_cores_busy']:>10.2f}  "
                     f"{run['cpu_ms_per_frame']:>12.1f}  {run['faces_per_batch']:>11.1f}  {run['loadavg_before']}")
    best = max((run["streams"] for run in report["runs"] if run["all_real_time"]), default=0)
    lines += ["", f"sustained real time: {best} stream(s) of 1080p25 in one process"]
    costs = [run["cpu_ms_per_frame"] for run in report["runs"] if run["frames_processed"]]
    if costs:
        cost = min(costs)
        lines.append(f"CPU cost: {cost:.1f} ms per frame (all threads) at best; {report['cores']} idle cores would "
                     f"fit about {report['cores'] * 1000 / (cost * 25):.1f} streams at 25 fps (an estimate, not a run)")
    for run in report["runs"]:
        lines.append(f"  {run['streams']} streams, ms per frame and stream: {run['stage_ms_per_frame']}")
    for run in report["runs"]:
        lines.append(f"  {run['streams']} streams, cores by thread: {run['cores_by_thread']}; loop thread "
                     f"{run['loop_cpu_ms_per_frame']:.1f} ms CPU per frame")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,2,4,8", help="stream counts to run, comma-separated (default 1,2,4,8)")
    parser.add_argument("--source", default=str(DEFAULT_CLIP), help="clip each camera plays (default crowd_1080p.mp4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default 20)")
    parser.add_argument("--warmup-s", type=float, default=4.0, help="seconds before measuring (default 4)")
    parser.add_argument("--max-p99-ms", type=float, default=500.0, help="p99 latency bound of real time (ms)")
    parser.add_argument("--config", help="config YAML (default: the repo's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="onnxruntime device for every session")
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_cli_config(args.config, args.overrides, device=args.device)
        counts = [int(v) for v in args.streams.split(",") if v.strip()]
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    clip = Path(args.source)
    if not clip.is_file() or not counts or min(counts) < 1 or args.seconds <= 0 or args.warmup_s < 0:
        print(f"error: need an existing --source clip ({clip}), --streams >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    detector = build_detector(config.detector, config.models, config.runtime)
    classifiers = build_classifiers(config.classifier, config.models, config.runtime)
    report: dict[str, Any] = {"command": "python -m bench.streams " + " ".join(argv), "clip": str(clip),
                              "cores": os.cpu_count(), "seconds": args.seconds, "warmup_s": args.warmup_s,
                              "max_p99_ms": args.max_p99_ms, "runs": []}
    for n in counts:
        run = run_streams(config, clip, n, args.seconds, args.warmup_s, args.max_p99_ms, detector, classifiers)
        report["runs"].append(run)
        print(f"{n} streams: {run['real_time_streams']}/{n} real time, p50 {run['latency_p50_ms']} ms, "
              f"p99 {run['latency_p99_ms']} ms, min {run['fps_per_stream_min']} fps", file=sys.stderr, flush=True)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
