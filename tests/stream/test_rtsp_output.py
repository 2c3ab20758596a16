"""``--output rtsp://...`` through the real CLI, read back by an independent receiver (the ffmpeg CLI).

The receiver is ``ffmpeg -rtsp_flags listen``: FFmpeg's RTSP demuxer acting as a server that accepts
one publisher (ANNOUNCE/RECORD), so no media server is needed. It copies what it receives into an mp4
and exits after ``-frames:v N``, which is also how "the receiver goes away" is made for real.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_file
from tests.stream import test_sources_rtsp as rtsp
from tests.support.cli_util import child_env, cli_command, free_port, probe_video, read_events

# The real RTSP test server (GStreamer), used here as a real-time live source.
rtsp_ready = rtsp.rtsp_ready
start_server = rtsp.start_server


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    binary = shutil.which("ffmpeg")
    if binary is None:
        pytest.skip("the ffmpeg CLI is not installed (apt-get install ffmpeg)")
    return binary


def _receiver(ffmpeg: str, url: str, frames: int, out: Path) -> subprocess.Popen[str]:
    """An ffmpeg process waiting for a publisher on ``url``; it exits after ``frames`` frames."""
    command = [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-rtsp_flags",
        "listen",
        "-listen_timeout",
        "30",
        "-i",
        url,
        "-frames:v",
        str(frames),
        "-c",
        "copy",
        "-y",
        str(out),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # let it bind; a publisher arriving earlier is refused and simply retried by the sink
    return process


def _finish(process: subprocess.Popen[str], timeout: float) -> str:
    try:
        return process.communicate(timeout=timeout)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_rtsp_output_is_read_back_with_the_source_resolution(ffmpeg: str, tmp_path: Path) -> None:
    clip = shared_file("videos", "expressive_woman_480.mp4")
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    received = tmp_path / "received.mp4"
    receiver = _receiver(ffmpeg, url, 10, received)
    try:
        run = subprocess.run(
            cli_command("--source", str(clip), "--output", url, "--max-frames", "90"),
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        receiver_log = _finish(receiver, timeout=20)
    finally:
        _finish(receiver, timeout=1)
    assert run.returncode == 0, run.stderr
    assert receiver.returncode == 0, receiver_log
    frames, width, height = probe_video(received)
    assert frames == 10
    assert (width, height) == (480, 480)


def test_receiver_going_away_is_reconnected_and_never_stops_the_analysis(
    ffmpeg: str, start_server: Callable[..., rtsp.RtspServer], tmp_path: Path
) -> None:
    # A live source (30 fps, real time) keeps the run going long enough for two receivers on any machine.
    server = start_server()
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    events = tmp_path / "e.jsonl"
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    receiver = _receiver(ffmpeg, url, 8, first)
    command = cli_command(
        "--source",
        server.url(),
        "--output",
        url,
        "--events",
        str(events),
        "--max-frames",
        "150",
        "--set",
        "output.rtsp_reconnect_max_s=0.3",
    )
    run = subprocess.Popen(
        command, cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert receiver.wait(timeout=30) == 0, _finish(receiver, 1)  # got its frames, then hung up
        receiver = _receiver(ffmpeg, url, 8, second)  # the same address comes back
        assert receiver.wait(timeout=30) == 0, _finish(receiver, 1)
        _, stderr = run.communicate(timeout=60)
    finally:
        for process in (run, receiver):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert run.returncode == 0, stderr
    assert "Traceback" not in stderr and "error:" not in stderr
    assert "lost the connection" in stderr, stderr
    assert len(read_events(events)) == 150
    for received in (first, second):
        frames, width, height = probe_video(received)
        assert frames == 8 and (width, height) == (512, 512)
