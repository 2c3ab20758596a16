"""Live-source tests against a real RTSP server on loopback (tests/support/rtsp_server.py, GStreamer).

The server runs under the system Python, which sees Debian's python3-gi; the tests skip with the
packages to install when it is missing. Outages are made for real: the server is SIGKILLed and
restarted on the same port, or frozen with SIGSTOP and thawed with SIGCONT.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream.sources import LiveSource, SourceError, open_source

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "support" / "rtsp_server.py"
CLIP = "talking_woman_512.mp4"  # 512x512 H.264, 30 fps
APT_HINT = (
    "apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
# Short timeouts keep the outage tests fast; a stall is noticed within 2 x read_timeout_s (FFmpeg may
# hand over one buffered packet when its first read times out).
FAST = {
    "open_timeout_s": 2.0,
    "read_timeout_s": 0.8,
    "reconnect_initial_s": 0.1,
    "reconnect_max_s": 0.4,
    "give_up_after_s": 15.0,
}
LOGGER = "stream.sources"


def _clip_path() -> Path:
    shared = os.environ.get("STREAM_SHARED_DIR")
    base = Path(shared) if shared else Path(__file__).resolve().parents[2].parent / "shared"
    return base / "videos" / CLIP


@pytest.fixture(scope="module")
def rtsp_ready() -> Path:
    """The clip to serve; skips when the clip or GStreamer's RTSP server is unavailable."""
    clip = _clip_path()
    if not clip.is_file():
        pytest.skip(f"test clip {clip} not found (set STREAM_SHARED_DIR to the shared/ folder)")
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.skip(f"{SYSTEM_PYTHON} not found (the RTSP test server runs on the system Python)")
    probe = (
        "import gi\n"
        "gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
        "from gi.repository import Gst, GstRtspServer\n"
        "Gst.init(None)\n"
        "missing = [e for e in ('appsrc', 'qtdemux', 'h264parse', 'rtph264pay') if not Gst.ElementFactory.find(e)]\n"
        "print(' '.join(missing))\n"
    )
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot run {SYSTEM_PYTHON}: {exc}")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"GStreamer RTSP server not usable from {SYSTEM_PYTHON} ({last}); {APT_HINT}")
    if result.stdout.strip():
        pytest.skip(f"GStreamer elements missing: {result.stdout.strip()}; {APT_HINT}")
    return clip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RtspServer:
    """tests/support/rtsp_server.py as a child process that can be killed, restarted, frozen and thawed."""

    def __init__(self, clip: Path, log_path: Path, user: str | None = None, password: str | None = None) -> None:
        self.clip = clip
        self.port = _free_port()
        self.log_path = log_path
        self.credentials = (user, password)
        self.process: subprocess.Popen[str] | None = None

    def url(self, userinfo: str = "") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/stream"

    def start(self, timeout_s: float = 15.0) -> None:
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--clip", str(self.clip)]
        user, password = self.credentials
        if user is not None:
            command += ["--user", user, "--password", password or ""]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            self.kill()
            raise RuntimeError(f"RTSP test server did not start: {self.log_path.read_text()[-500:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies only once continued
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def start_server(rtsp_ready: Path, tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """Start RTSP servers on free ports; all are killed at teardown."""
    servers: list[RtspServer] = []

    def start(user: str | None = None, password: str | None = None) -> RtspServer:
        server = RtspServer(rtsp_ready, tmp_path / f"server{len(servers)}.log", user, password)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


def _next_frame_after(source: LiveSource, opened_at: float, since: float, limit_s: float) -> float:
    """Seconds from ``since`` until ``source`` delivers a frame grabbed at or after ``since``.

    Frame timestamps count from the grabber's start, which is no earlier than ``opened_at``, so
    ``opened_at + timestamp >= since`` proves the frame was grabbed after ``since``.
    """
    while time.monotonic() - since < limit_s:
        frame = source.read(timeout_s=0.5)
        if frame is not None and opened_at + frame.timestamp >= since:
            return time.monotonic() - since
    raise AssertionError(f"no new frame within {limit_s} s")


def _outage_logs(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    recoveries = [r.getMessage() for r in caplog.records if r.name == LOGGER and "back after" in r.getMessage()]
    return warnings, recoveries


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_reads_frames_from_rtsp(start_server: Callable[..., RtspServer], transport: str) -> None:
    server = start_server()
    with open_source(server.url(), rtsp_transport=transport, **FAST) as source:
        assert (source.kind, source.is_live, source.name, source.frame_count) == ("stream", True, server.url(), None)
        assert source.fps == pytest.approx(30.0)
        frames = [next(source) for _ in range(10)]
    assert all(f.image.shape == (512, 512, 3) for f in frames)
    assert all(b.index > a.index for a, b in zip(frames, frames[1:], strict=False))
    assert all(b.timestamp >= a.timestamp for a, b in zip(frames, frames[1:], strict=False))
    assert {f.source for f in frames} == {server.url()}


def test_server_killed_and_restarted_reconnects(
    start_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    caplog.set_level(logging.INFO, logger=LOGGER)
    opened_at = time.monotonic()
    with open_source(server.url(), **FAST) as source:
        before = [next(source) for _ in range(5)]
        server.kill()
        time.sleep(1.5)  # longer than the stall timeout: the source notices and starts reconnecting
        server.start()
        back_at = time.monotonic()
        delay = _next_frame_after(source, opened_at, back_at, limit_s=8.0)
        after = next(source)
        assert source.outages == 1
    assert delay < 5.0, f"frames resumed {delay:.1f} s after the server came back"
    assert after.index > before[-1].index
    warnings, recoveries = _outage_logs(caplog)
    assert len(warnings) == 1 and "lost" in warnings[0]
    assert len(recoveries) == 1 and "outage" in recoveries[0]


def test_server_frozen_then_thawed_reconnects(
    start_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    caplog.set_level(logging.INFO, logger=LOGGER)
    opened_at = time.monotonic()
    with open_source(server.url(), **FAST) as source:
        [next(source) for _ in range(5)]
        server.pause()
        time.sleep(2.5)  # > 2 x read_timeout_s: the stall is detected while frozen
        server.resume()
        back_at = time.monotonic()
        delay = _next_frame_after(source, opened_at, back_at, limit_s=8.0)
    assert delay < 5.0, f"frames resumed {delay:.1f} s after the server was thawed"
    warnings, recoveries = _outage_logs(caplog)
    assert len(warnings) == 1 and "lost" in warnings[0]
    assert len(recoveries) == 1


def test_next_is_bounded_while_the_server_hangs(start_server: Callable[..., RtspServer]) -> None:
    server = start_server()
    options = {**FAST, "read_timeout_s": 0.5, "open_timeout_s": 1.0, "give_up_after_s": 1.5}
    with open_source(server.url(), **options) as source:
        next(source)
        server.pause()
        # Frames already buffered (FFmpeg keeps the packets read while probing) still come for a moment;
        # then read() with a timeout returns None, each call within its timeout.
        frozen_at = time.monotonic()
        while True:
            started = time.monotonic()
            frame = source.read(timeout_s=0.3)
            assert time.monotonic() - started < 0.6
            if frame is None:
                break
            assert time.monotonic() - frozen_at < 3.0, "frames keep coming from a frozen server"
        # Stall detection (<= 2 x read) + give-up delay + one open attempt in flight + slack.
        bound = 2 * 0.5 + 1.5 + 1.0 + 1.5
        started = time.monotonic()
        with pytest.raises(SourceError, match="giving up"):
            while time.monotonic() - started < 3 * bound:
                next(source)
        assert time.monotonic() - started < bound


def test_wrong_credentials_are_reported_without_the_password(
    start_server: Callable[..., RtspServer], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    server = start_server(user="alice", password="Right-Pw-71")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"authentication failed.*credentials") as info:
        open_source(server.url("alice:Wr0ng-Pw-42"), **FAST)
    assert time.monotonic() - started < FAST["open_timeout_s"] + 1
    with pytest.raises(SourceError, match="requires authentication"):
        open_source(server.url(), **FAST)
    with open_source(server.url("alice:Right-Pw-71"), **FAST) as source:
        frame = next(source)
    assert source.name == frame.source == server.url("***")
    captured = capfd.readouterr()
    for text in (str(info.value), caplog.text, captured.out, captured.err):
        assert "Wr0ng-Pw-42" not in text and "Right-Pw-71" not in text
