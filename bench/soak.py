"""Soak test of the live pipeline under faults (not run in CI): memory, file descriptors, latency, lost frames.

``python -m bench.soak [--minutes 30] [--period-s 60] [--json OUT] [--set section.key=value ...]``

Runs the whole product in this process for ``--minutes``: :mod:`bench.stamped_rtsp_server` as the camera
(720p30, every frame stamped with its capture time), the full :class:`stream.pipeline.Pipeline`, and as
outputs an RTSP push (:class:`stream.sinks.RtspSink`) to an ``ffmpeg -rtsp_flags listen`` receiver, a JSONL
events file and a sink that reads each annotated frame's stamp (:class:`bench.latency.StampSink`).
Every ``--period-s`` one fault is injected, in turn:

* ``camera-kill``: the camera is SIGKILLed and restarted on the same port 3 s later;
* ``camera-freeze``: the camera is frozen (SIGSTOP) for 8 s, longer than the stall detection, then thawed;
* ``receiver-kill``: the RTSP receiver is SIGKILLed (a supervisor starts a new one at once);
* ``receiver-stall``: for 12 s the receiver's port is held by a listener that accepts and never answers, so
  the publisher stalls in its handshake until ``output.rtsp_timeout_s`` and is restarted.

Every 10 s it samples this process's resident memory (RSS, /proc), its open file descriptors, its child
processes, and the latency p50 of the frames of that interval. The report gives the growth of RSS and of
fds from the first sample after the warm-up to the end, the latency drift (p50 of the first vs the last
sampled minute), the frames lost (camera frames never processed, from the stamps: dropped by the live
grabber as designed, or lost during outages) and the RTSP output's frames sent/dropped. Linux only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.latency import APT_HINT, SYSTEM_PYTHON, CameraServer, StampSink, _free_port, _shared_clip

DEFAULT_CLIP = "woman_1280x720.mp4"
CAMERA_FPS = 30.0
FAULTS = ("camera-kill", "camera-freeze", "receiver-kill", "receiver-stall")
SAMPLE_S = 10.0


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> int:
    """Processes whose parent is this one (the RTSP publisher, the receiver, the camera)."""
    mine, count = os.getpid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    # The command name (field 2) may hold spaces; the parent pid follows its closing ')'.
                    if int(stat.read().rpartition(")")[2].split()[1]) == mine:
                        count += 1
            except (OSError, ValueError, IndexError):
                continue
    return count


class Receiver:
    """``ffmpeg -rtsp_flags listen`` on a port, restarted whenever it exits (a publisher hung up or it was
    killed); it can be frozen to make a receiver that accepts and never answers."""

    def __init__(self, ffmpeg: str, port: int) -> None:
        self.url = f"rtsp://127.0.0.1:{port}/soak"
        self._command = [ffmpeg, "-hide_banner", "-loglevel", "quiet", "-nostdin", "-rtsp_flags", "listen",
                         "-listen_timeout", "-1", "-i", self.url, "-f", "null", "-"]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="receiver", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self.process is None or self.process.poll() is not None:
                    self.process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)
                    self.starts += 1
            self._stop.wait(0.2)

    def signal(self, signum: int) -> None:
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signum)

    def stall(self, seconds: float) -> None:
        """For ``seconds``, the port is held by a listener that accepts and never answers (a hung receiver),
        then the real receiver comes back."""
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            port = int(self.url.rsplit(":", 1)[1].split("/")[0])
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(16)
            held: list[socket.socket] = []
            listener.settimeout(0.2)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue
            for connection in held:
                connection.close()
            listener.close()
            self.process = None  # the supervisor starts a new receiver

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()


def _inject(fault: str, camera: CameraServer, receiver: Receiver, log: list[dict[str, Any]], t0: float) -> None:
    started = time.monotonic()
    if fault == "camera-kill":
        camera.kill()
        time.sleep(3.0)
        camera.start()
    elif fault == "camera-freeze":
        camera.signal(signal.SIGSTOP)
        time.sleep(8.0)
        camera.signal(signal.SIGCONT)
    elif fault == "receiver-kill":
        receiver.signal(signal.SIGKILL)
    elif fault == "receiver-stall":
        receiver.stall(12.0)
    log.append({"fault": fault, "at_s": round(started - t0, 1), "took_s": round(time.monotonic() - started, 1)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    parser.add_argument("--period-s", type=float, default=60.0, help="one fault every this many seconds")
    parser.add_argument("--warmup-s", type=float, default=20.0, help="growth is measured from after this")
    parser.add_argument("--clip", type=Path, help=f"camera clip (default ../shared/videos/{DEFAULT_CLIP})")
    parser.add_argument("--json", type=Path, help="also write the report (and every sample) here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from stream.config import ConfigError, load_config
    from stream.pipeline import Pipeline, run
    from stream.sinks import EventsSink, RtspSink
    from stream.sources import SourceError, open_source

    ffmpeg = shutil.which("ffmpeg")
    clip = args.clip or _shared_clip(DEFAULT_CLIP)
    problems = [text for bad, text in (
        (args.minutes <= 0 or args.period_s <= 0, "--minutes and --period-s must be > 0"),
        (not clip.is_file(), f"clip {clip} not found (set STREAM_SHARED_DIR or give --clip)"),
        (not Path(SYSTEM_PYTHON).is_file(), f"{SYSTEM_PYTHON} not found; the camera needs {APT_HINT}"),
        (ffmpeg is None, "the ffmpeg CLI (the RTSP receiver) is not installed"),
    ) if bad]
    if problems:
        sys.stderr.write(f"error: {problems[0]}\n")
        return 2
    try:
        config = load_config(None, ["source.wait_for_source=true", "source.give_up_after_s=.inf", *args.overrides])
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    assert ffmpeg is not None
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    camera = CameraServer(clip, _free_port(), work / "camera.log")
    receiver = Receiver(ffmpeg, _free_port())
    faults: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    try:
        camera.start()
        pipeline = Pipeline(config)
        opened_at = time.monotonic()
        source = open_source(camera.url, options=config.source)
        pipeline.set_frame_rate(source.fps)
        stamps = StampSink(opened_at)
        rtsp = RtspSink(receiver.url, config.output)
        events = EventsSink(work / "events.jsonl")
        t0 = time.monotonic()
        end = t0 + args.minutes * 60.0
        stop = threading.Event()

        def controller() -> None:
            next_fault, next_sample, k, seen = t0 + args.period_s, t0 + SAMPLE_S, 0, 0
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_sample:
                    window = [s[1] for s in stamps.samples[seen:]]
                    seen = len(stamps.samples)
                    samples.append({"t_s": round(now - t0, 1), "rss_mb": round(_rss_mb(), 1), "fds": _fds(),
                                    "children": _children(), "frames": len(window),
                                    "latency_p50_ms": round(float(np.median(window)), 1) if window else None})
                    print(f"{samples[-1]}", flush=True)
                    next_sample += SAMPLE_S
                if now >= next_fault and now < end - 15:
                    _inject(FAULTS[k % len(FAULTS)], camera, receiver, faults, t0)
                    print(f"{faults[-1]}", flush=True)
                    k += 1
                    next_fault = max(next_fault + args.period_s, time.monotonic() + 5)
                stop.wait(0.2)

        thread = threading.Thread(target=controller, name="soak-controller", daemon=True)
        print(f"soak: {args.minutes:g} min, a fault every {args.period_s:g} s ({', '.join(FAULTS)}); {work}",
              flush=True)
        with source, stamps, rtsp, events:
            thread.start()
            result = run(pipeline, source, [stamps, rtsp, events], should_stop=lambda: time.monotonic() >= end)
            stop.set()
            thread.join()
            frames_dropped = source.frames_dropped
        rtsp_sent, rtsp_dropped = rtsp.frames_sent, rtsp.frames_dropped
    except (SourceError, RuntimeError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        camera.kill()
        receiver.close()

    after = [s for s in samples if s["t_s"] >= args.warmup_s] or samples
    latency = [s[1] for s in stamps.samples]
    first_min = [s[1] for s in stamps.samples if s[0] - t0 <= max(args.warmup_s, 1) + 60 and s[0] - t0 >= args.warmup_s]
    last_min = [s[1] for s in stamps.samples if s[0] >= stamps.samples[-1][0] - 60] if stamps.samples else []
    elapsed = (stamps.samples[-1][0] - stamps.samples[0][0]) if len(stamps.samples) > 1 else 0.0
    expected = elapsed * CAMERA_FPS
    report = {
        "minutes": args.minutes,
        "faults": faults,
        "frames_processed": result.frames,
        "fps": round(result.fps, 1),
        "camera_frames_expected": round(expected),
        "frames_lost": max(0, round(expected) - len(latency)),
        "frames_lost_pct": round(100.0 * max(0.0, expected - len(latency)) / expected, 1) if expected else None,
        "grabber_frames_dropped": frames_dropped,
        "rtsp_output": {"sent": rtsp_sent, "dropped": rtsp_dropped, "receiver_starts": receiver.starts},
        "rss_mb": {"first": after[0]["rss_mb"], "last": after[-1]["rss_mb"],
                   "growth": round(after[-1]["rss_mb"] - after[0]["rss_mb"], 1),
                   "max": max(s["rss_mb"] for s in samples)},
        "fds": {"first": after[0]["fds"], "last": after[-1]["fds"], "growth": after[-1]["fds"] - after[0]["fds"],
                "max": max(s["fds"] for s in samples)},
        "latency_ms": {"p50_first_minute": round(float(np.median(first_min)), 1) if first_min else None,
                       "p50_last_minute": round(float(np.median(last_min)), 1) if last_min else None,
                       "p99_all": round(float(np.percentile(latency, 99)), 1) if latency else None},
        "samples": samples,
    }
    printable = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(printable, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
