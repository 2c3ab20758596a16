"""Ctrl-C and SIGTERM mid-run through the real CLI: exit 130/143 and finalized, consistent outputs.

The CLI stops after the frame in flight has reached every sink (see ``STOP_GRACE_S`` in
``stream/__main__.py``), so the video holds exactly the frames the events file lists.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream.signals import STOP_GRACE_S
from tests.conftest import REPO, shared_file
from tests.stream import test_sources_rtsp as rtsp
from tests.support.cli_util import child_env, cli_command, probe_video, read_events

# The real RTSP test server (GStreamer) and its fixtures, shared with the live-source tests.
rtsp_ready = rtsp.rtsp_ready
start_server = rtsp.start_server

CLIP = "expressive_woman_480.mp4"  # 1008 frames: far from its end when the signal comes


def _size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.width, context.height


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _signalled_mid_run(command: list[str], events: Path, signals: list[tuple[int, float]]) -> tuple[int, str]:
    """Run the CLI until ``events`` holds 20 lines, then send each signal after its pause (s) while the run lasts:
    ``(exit status, stderr)``."""
    process = subprocess.Popen(
        command, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while _lines(events) < 20:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the run produced no 20 events within 60 s"
            time.sleep(0.01)
        for signum, pause_s in signals:
            time.sleep(pause_s)
            if process.poll() is None:
                process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [
        (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
        (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    ],
)
def test_signal_mid_run_finalizes_outputs(tmp_path: Path, signum: int, code: int, message: str) -> None:
    clip = shared_file("videos", CLIP)
    out, events, summary = tmp_path / "x.mp4", tmp_path / "e.jsonl", tmp_path / "s.json"
    command = cli_command(
        "--source", str(clip), "--output", str(out), "--events", str(events), "--summary", str(summary)
    )
    returncode, stderr = _signalled_mid_run(command, events, [(signum, 0.0)])
    assert returncode == code, stderr
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    assert message in stderr
    records = read_events(events)  # every line is complete JSON
    assert 20 <= len(records) < 1008
    assert [r["frame"] for r in records] == list(range(len(records)))
    frames, width, height = probe_video(out)  # playable: index written, every packet decodes
    assert frames == len(records)
    assert (width, height) == _size(clip)
    # A stop between frames also writes the summary of the frames processed.
    assert json.loads(summary.read_text())["frames"] == len(records)


@pytest.mark.parametrize("gap_s", [0.0, 0.05, 0.2])
def test_a_second_signal_still_leaves_playable_outputs(tmp_path: Path, gap_s: float) -> None:
    # The impatient double Ctrl-C: the second one lands in the frame loop or while the outputs are finalized
    # (the video writer draining its queue). It may cut the run shorter, never leave a broken file or a trace.
    clip = shared_file("videos", CLIP)
    out, events = tmp_path / "x.mp4", tmp_path / "e.jsonl"
    command = cli_command("--source", str(clip), "--output", str(out), "--events", str(events),
                          "--set", "output.video_queue_size=64")
    returncode, stderr = _signalled_mid_run(command, events, [(signal.SIGINT, 0.0), (signal.SIGINT, gap_s)])
    # A second signal that comes once the run has finished, while the interpreter shuts down (its handlers are
    # the defaults again), ends the process by SIGINT: what a shell reports as 130 too.
    assert returncode in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    records = read_events(events)  # every line is complete JSON
    assert [r["frame"] for r in records] == list(range(len(records)))
    frames, width, height = probe_video(out)  # playable: every packet decodes
    # A second signal interrupts at once: the frame in flight may have reached the video and not the events file,
    # and frames still queued for the encoder are dropped.
    assert 0 < frames <= len(records) + 1
    assert (width, height) == _size(clip)


def test_signal_while_blocked_on_a_silent_camera_stops_within_the_grace_period(
    start_server: Callable[..., rtsp.RtspServer], tmp_path: Path
) -> None:
    # The camera freezes: the run waits inside the source for a frame that does not come, so it cannot
    # reach the end of a frame; the signal must still end it, after STOP_GRACE_S, with finalized outputs.
    server = start_server()
    out, events = tmp_path / "x.mp4", tmp_path / "e.jsonl"
    command = cli_command(
        "--source", server.url(), "--output", str(out), "--events", str(events), "--set", "source.read_timeout_s=30"
    )
    process = subprocess.Popen(
        command, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while _lines(events) < 10:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the run produced no 10 events within 60 s"
            time.sleep(0.01)
        server.pause()
        time.sleep(1.0)  # the frames already in flight are processed; then the run waits for the camera
        sent_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    # Normally took ~= STOP_GRACE_S (the alarm ends the wait); less when a late frame was still being processed.
    assert took < STOP_GRACE_S + 3.0
    records = read_events(events)
    frames, width, height = probe_video(out)
    assert frames == len(records) >= 10
    assert (width, height) == (512, 512)


def test_signals_set_only_sets_the_event_and_puts_the_handlers_back():
    # The aggregator's stop: SIGTERM and Ctrl-C inside the block set the event (no exception); after it, the
    # handlers in place before are back.
    import os
    import threading

    from stream.signals import signals_set

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    with signals_set(threading.Event()) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5.0)
        stop.clear()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5.0)
    assert {signum: signal.getsignal(signum) for signum in before} == before


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX interval timers")
@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, "Terminated")])
def test_a_forced_stop_that_lands_in_a_weakref_callback_is_raised_again(
    signum: int, raised: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Python ignores an exception raised in a weakref callback or __del__ (it prints "Exception ignored in"); a
    # second Ctrl-C that arrived there was lost, and a traceback printed. It must still stop the run.
    import os
    import weakref

    from stream.signals import StopSignals, Terminated

    class Thing:
        pass

    def callback(ref: object) -> None:
        os.kill(os.getpid(), signum)
        for _ in range(10_000):  # the handler runs here, inside the callback
            pass

    exception = Terminated if raised == "Terminated" else raised
    hook = sys.unraisablehook
    stop = StopSignals()
    previous = stop.install()
    try:
        with pytest.raises(exception):
            thing = Thing()
            ref = weakref.ref(thing, callback)
            del thing  # the callback runs now; the signal's exception is raised in it and ignored by Python
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                time.sleep(0.01)
        assert ref() is None
    finally:
        stop.restore(previous)
    assert sys.unraisablehook is hook  # put back with the handlers
    assert "Exception ignored" not in capsys.readouterr().err
