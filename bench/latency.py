"""Capture-to-output latency of the live pipeline on a 720p30 RTSP camera, and its reconnection times.

``python -m bench.latency [--minutes 5] [--json OUT] [--set section.key=value ...]``

How it measures:

* **The camera** is :mod:`bench.stamped_rtsp_server` (GStreamer, run with the system Python): a 720p30
  clip with a real face (``woman_1280x720.mp4``) re-encoded live with x264 ``tune=zerolatency``, each
  frame stamped in its bottom-right corner with the instant it was pushed into the encoder
  (``CLOCK_MONOTONIC`` ms, shared by every process on the machine).
* **The product** reads ``rtsp://127.0.0.1:PORT/stream`` through :func:`stream.sources.open_source` (the
  live grabber that keeps only the newest frame) and runs the full :class:`stream.pipeline.Pipeline`
  (detect, track, classify, fuse, annotate) with the repo's config and any ``--set`` overrides.
* **The output** is a sink that decodes the stamp from the *annotated* frame handed to the sinks, so
  latency = (sink time - stamp): encode + RTSP + demux/decode + waiting for the grabber + processing.
  The grab instant (the grabber's frame timestamp) splits it into camera->grab and grab->sink.
* **Drift**: p50/p99 over the first and the last window of the run (60 s windows; 30 s halves for
  ``--minutes 1``), after a warm-up (``--warmup-s``) whose start-up burst is reported apart, plus the
  slope of a line fitted to every sample. "grows" when the last window's p50 exceeds the first's by more
  than max(10 ms, 20 %).
* **Reconnection** (``--outages``, default ``kill:3,freeze:3,freeze:12``, each ``--repeats`` times): the
  camera is SIGKILLed and restarted on the same port after N s, or frozen with SIGSTOP for N s then thawed
  with SIGCONT; each time, the delay from the camera being back (``READY`` printed / SIGCONT sent) to the
  first frame stamped after that instant reaching the sink. A short freeze resumes on the same connection;
  one longer than the stall detection (up to 2 x ``source.read_timeout_s``) makes the grabber reconnect.
  These follow the ``source.*`` timeouts and backoff of the config (``--set`` to try others).

Needs the Debian packages of :mod:`bench.stamped_rtsp_server` (see ``.ci/run``). Prints a table;
``--json OUT`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.sinks.base import Sink
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_CLIP = "woman_1280x720.mp4"
APT_HINT = (
    "apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav"
)
# The stamp layout of bench/stamped_rtsp_server.py: 2 rows of 20 16x16 blocks, 16 px from the corner.
BLOCK, COLUMNS, ROWS, MARGIN = 16, 20, 2, 16
_MASK = 0xFFFFFFFF


def read_stamp(image: np.ndarray) -> int | None:
    """The stamp of an ``(H, W, 3)`` uint8 BGR frame: the camera's push time in ms (32 bits), or None.

    None when the check byte does not match (the stamp is covered by a label, or the frame is damaged).
    """
    height, width = image.shape[:2]
    x0 = width - MARGIN - COLUMNS * BLOCK
    y0 = height - MARGIN - ROWS * BLOCK
    if x0 < 0 or y0 < 0:
        return None
    # Mean of each block's inner 8x8 (edges blur under compression), as luma.
    region = image[y0 : y0 + ROWS * BLOCK, x0 : x0 + COLUMNS * BLOCK]
    gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY).astype(np.float32)
    blocks = gray.reshape(ROWS, BLOCK, COLUMNS, BLOCK)[:, 4:12, :, 4:12].mean(axis=(1, 3))
    word = 0
    for bit in (blocks.reshape(-1) > 128).tolist():
        word = (word << 1) | int(bit)
    value, check = word >> 8, word & 0xFF
    if (sum(value.to_bytes(4, "big")) & 0xFF) ^ 0x5A != check:
        return None
    return value


def _ms_since(stamp: int, now_s: float) -> float:
    """Milliseconds from the 32-bit stamp to ``now_s`` (monotonic seconds), unwrapping the 49-day wrap."""
    now_ms = now_s * 1000.0
    return ((int(now_ms) - stamp) & _MASK) + (now_ms - int(now_ms))


class StampSink(Sink):
    """Reads the stamp of every annotated frame; records latency and wakes waiters for fresh frames.

    Args:
        opened_at: Monotonic time just before the source was opened (origin of its frame timestamps).
    """

    def __init__(self, opened_at: float) -> None:
        super().__init__()
        self.opened_at = opened_at
        # (sink time s, capture->sink ms, capture->grab ms)
        self.samples: list[tuple[float, float, float]] = []
        self.unreadable = 0
        self._cond = threading.Condition()
        self._last_capture_s = 0.0  # camera push time of the newest frame seen, monotonic s
        self.resolution = "?"

    def write(self, frame: Frame, faces: Faces) -> None:
        now = time.monotonic()
        self.resolution = f"{frame.width}x{frame.height}"
        stamp = read_stamp(frame.image)
        if stamp is None:
            self.unreadable += 1
            return
        total_ms = _ms_since(stamp, now)
        grab_ms = total_ms - (now - (self.opened_at + frame.timestamp)) * 1000.0
        with self._cond:
            self.samples.append((now, total_ms, grab_ms))
            self._last_capture_s = now - total_ms / 1000.0
            self._cond.notify_all()

    def wait_for_capture_after(self, instant: float, timeout_s: float) -> float | None:
        """Monotonic time at which a frame captured at or after ``instant`` reached the sink, or None."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._last_capture_s < instant:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self.samples[-1][0]

    def _close(self) -> None:
        with self._cond:
            self._cond.notify_all()


class CameraServer:
    """:mod:`bench.stamped_rtsp_server` as a child process that can be killed, restarted, frozen, thawed."""

    def __init__(self, clip: Path, port: int, log_path: Path) -> None:
        self.clip, self.port, self.log_path = clip, port, log_path
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def start(self, timeout_s: float = 60.0) -> None:
        command = [
            SYSTEM_PYTHON,
            "-m",
            "bench.stamped_rtsp_server",
            "--port",
            str(self.port),
            "--clip",
            str(self.clip),
        ]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            self.kill()
            tail = self.log_path.read_text(errors="replace")[-400:].strip()
            raise RuntimeError(f"the stamped RTSP camera did not start ({tail or 'no output'}); {APT_HINT}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies only once continued
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def signal(self, signum: int) -> None:
        if self.process is not None:
            self.process.send_signal(signum)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, p50, p99 and max of ``values`` in ms (None when empty)."""
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": int(array.size),
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
        "max_ms": round(float(array.max()), 1),
    }


def _window(samples: list[tuple[float, float, float]], start: float, end: float) -> dict[str, Any]:
    inside = [s for s in samples if start <= s[0] < end]
    stats = percentiles([s[1] for s in inside])
    stats["grab_p50_ms"] = percentiles([s[2] for s in inside])["p50_ms"]
    stats["process_p50_ms"] = percentiles([s[1] - s[2] for s in inside])["p50_ms"]
    return stats


def summarize_latency(
    samples: list[tuple[float, float, float]], started: float, ended: float, warmup_s: float
) -> dict[str, Any]:
    """First/last window statistics, the fitted drift and the verdict."""
    steady_from = started + warmup_s
    window_s = 60.0 if ended - steady_from >= 120.0 else max((ended - steady_from) / 2.0, 1.0)
    first = _window(samples, steady_from, steady_from + window_s)
    last = _window(samples, ended - window_s, ended + 1.0)
    steady = [s for s in samples if s[0] >= steady_from]
    slope = None
    if len(steady) >= 10:
        times = np.array([s[0] - steady_from for s in steady]) / 60.0
        slope = round(float(np.polyfit(times, [s[1] for s in steady], 1)[0]), 2)
    grows = None
    if first["p50_ms"] is not None and last["p50_ms"] is not None:
        grows = last["p50_ms"] - first["p50_ms"] > max(10.0, 0.2 * first["p50_ms"])
    return {
        "window_s": round(window_s, 1),
        "warmup": _window(samples, started, steady_from),
        "first_window": {"from_s": round(warmup_s, 1), **first},
        "last_window": {"from_s": round(ended - window_s - started, 1), **last},
        "drift_ms_per_min": slope,
        "grows": grows,
    }


def _measure_outages(
    server: CameraServer, sink: StampSink, outages: list[tuple[str, float]], repeats: int
) -> dict[str, list[float | None]]:
    """Kill/restart and freeze/thaw the camera; seconds from it being back to a fresh frame at the sink.

    Args:
        server: The camera.
        sink: The sink that sees the annotated frames.
        outages: ``("kill", seconds down)`` or ``("freeze", seconds frozen)`` items.
        repeats: Outages of each item.

    Returns:
        ``{"kill 3 s": [delay s or None, ...], "freeze 12 s": [...]}``.
    """
    results: dict[str, list[float | None]] = {}
    for kind, seconds in outages:
        label = f"{kind} {seconds:g} s"
        delays = results.setdefault(label, [])
        for attempt in range(repeats):
            # Steady streaming first, so each outage starts from the same state.
            if sink.wait_for_capture_after(time.monotonic() + 1.0, timeout_s=60.0) is None:
                logger.warning("no frames before %s #%d; skipping it", label, attempt + 1)
                delays.append(None)
                continue
            if kind == "kill":
                server.kill()
                time.sleep(seconds)
                server.start()
            else:
                server.signal(signal.SIGSTOP)
                time.sleep(seconds)
                server.signal(signal.SIGCONT)
            back_at = time.monotonic()
            arrived = sink.wait_for_capture_after(back_at, timeout_s=120.0)
            delays.append(None if arrived is None else round(arrived - back_at, 2))
            logger.info("%s #%d: first fresh frame %s s after the camera was back", label, attempt + 1, delays[-1])
    return results


def parse_outages(text: str) -> list[tuple[str, float]]:
    """``"kill:3,freeze:12"`` -> ``[("kill", 3.0), ("freeze", 12.0)]``; ``"none"`` -> ``[]``.

    Raises:
        ValueError: An item is not ``kill:SECONDS`` or ``freeze:SECONDS`` with SECONDS > 0.
    """
    plan: list[tuple[str, float]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item == "none":
            continue
        kind, _, seconds = item.partition(":")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if kind not in ("kill", "freeze") or not value > 0:
            raise ValueError(f"--outages item {item!r} must be kill:SECONDS or freeze:SECONDS with SECONDS > 0")
        plan.append((kind, value))
    return plan


def _shared_clip(name: str) -> Path:
    shared = os.environ.get("STREAM_SHARED_DIR")
    return (Path(shared) if shared else REPO.parent / "shared") / "videos" / name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the latency run (1 = quick)")
    parser.add_argument(
        "--clip",
        type=Path,
        default=None,
        help=f"clip the camera loops (default ../shared/videos/{DEFAULT_CLIP}; W %% 32 == 0)",
    )
    parser.add_argument("--warmup-s", type=float, default=5.0, help="start-up seconds left out of the windows")
    parser.add_argument("--repeats", type=int, default=3, help="outages of each kind")
    parser.add_argument(
        "--outages",
        default="kill:3,freeze:3,freeze:12",
        help="comma-separated KIND:SECONDS, KIND kill (SIGKILL, restart after SECONDS) or freeze "
        "(SIGSTOP for SECONDS, then SIGCONT); 'none' to skip. A freeze shorter than the stall "
        "detection (up to 2 x source.read_timeout_s) resumes on the same connection",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override, as for python -m stream (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def print_report(report: dict[str, Any]) -> None:
    """The figures as a table on stdout."""
    latency = report["latency"]
    print(
        f"\nlatency of {report['url']} ({report['resolution']}, camera {report['camera_fps']} fps) -> annotated "
        f"frame at the sink; {report['frames']} frames processed at {report['fps']} fps, "
        f"{report['frames_dropped']} dropped by the grabber, {report['unreadable_stamps']} stamps unreadable; "
        f"load avg {report['load_before']} -> {report['load_after']}"
    )
    print(
        f"{'window':<22}{'frames':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cam->grab p50':>15}{'grab->sink p50':>16}"
    )
    for label, key in (("warm-up", "warmup"), ("first", "first_window"), ("last", "last_window")):
        row = latency[key]
        span = f"{label} {row.get('from_s', 0):g}s+" if key != "warmup" else f"warm-up (first {report['warmup_s']:g} s)"
        print(
            f"{span:<22}{row['n']:>8}{_fmt(row['p50_ms']):>9}{_fmt(row['p99_ms']):>9}{_fmt(row['max_ms']):>9}"
            f"{_fmt(row['grab_p50_ms']):>15}{_fmt(row['process_p50_ms']):>16}"
        )
    verdict = {True: "GROWS", False: "does not grow", None: "unknown"}[latency["grows"]]
    print(
        f"windows of {latency['window_s']:g} s; drift {_fmt(latency['drift_ms_per_min'], ' ms/min')}; latency {verdict}"
    )
    if report["outages"]:
        print(f"\n{'outage':<16}{'camera back -> first fresh frame at the sink (s)'}")
        for label, delays in report["outages"].items():
            print(f"{label:<16}{', '.join(_fmt(d) for d in delays)}")
        print(f"source config: {report['source_config']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    from stream.config import ConfigError, as_kwargs, load_config
    from stream.pipeline import Pipeline, run
    from stream.sources import SourceError, open_source

    try:
        outage_plan = parse_outages(args.outages)
    except ValueError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    if args.minutes <= 0 or args.repeats < 0:
        sys.stderr.write("error: --minutes must be > 0 and --repeats >= 0\n")
        return 2
    clip = args.clip or _shared_clip(DEFAULT_CLIP)
    if not clip.is_file():
        sys.stderr.write(f"error: clip {clip} not found (set STREAM_SHARED_DIR or give --clip)\n")
        return 2
    if not Path(SYSTEM_PYTHON).is_file():
        sys.stderr.write(f"error: {SYSTEM_PYTHON} not found; the camera runs on the system Python with {APT_HINT}\n")
        return 2
    try:
        config = load_config(None, args.overrides)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2

    log_path = Path(tempfile.gettempdir()) / f"stamped_rtsp_server.{os.getpid()}.log"
    server = CameraServer(clip, _free_port(), log_path)
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        server.start()
        pipeline = Pipeline(config)
        opened_at = time.monotonic()
        source = open_source(server.url, options=config.source)
        pipeline.set_frame_rate(source.fps)
        sink = StampSink(opened_at)
        with source, sink:
            started = time.monotonic()
            end = started + args.minutes * 60.0
            print(f"measuring latency for {args.minutes:g} min on {server.url} ...", flush=True)
            result = run(pipeline, source, [sink], should_stop=lambda: time.monotonic() >= end)
            ended = time.monotonic()
            samples = list(sink.samples)
            frames_dropped = source.frames_dropped
            outages: dict[str, list[float | None]] = {}
            if outage_plan and args.repeats:
                print("measuring reconnection after camera kill/freeze ...", flush=True)
                done = threading.Event()
                measured: dict[str, Any] = {}

                def control() -> None:
                    try:
                        measured.update(_measure_outages(server, sink, outage_plan, args.repeats))
                    finally:
                        done.set()

                controller = threading.Thread(target=control, name="outages", daemon=True)
                controller.start()
                run(pipeline, source, [sink], should_stop=done.is_set)
                controller.join()
                outages = measured
    except (SourceError, RuntimeError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        server.kill()
        if log_path.is_file() and log_path.stat().st_size == 0:
            log_path.unlink()

    report = {
        "url": server.url,
        "clip": str(clip),
        "resolution": sink.resolution,
        "camera_fps": source.fps,
        "minutes": args.minutes,
        "warmup_s": args.warmup_s,
        "frames": result.frames,
        "fps": round(result.fps, 1),
        "frames_dropped": frames_dropped,
        "unreadable_stamps": sink.unreadable,
        "stage_ms_per_frame": result.stage_ms,
        "latency": summarize_latency(samples, started, ended, args.warmup_s),
        "outages": outages,
        "source_config": as_kwargs(config.source),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
