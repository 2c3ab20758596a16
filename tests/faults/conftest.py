"""Fixtures of the fault-injection suite: the CLI as a child process, misbehaving servers, readable outputs.

Bounds on time are generous multiples of the timeouts each test configures (the CI machine is a busy 2-core
box); they are there to catch a hang, not to measure speed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_file
from tests.support.cli_util import child_env, cli_command, error_line
from tests.support.faulty_servers import FaultyHttpServer, StallingListener

# A long clip (33 s, 1008 frames at 30 fps): runs last long enough to inject a fault mid-way.
LONG_CLIP = "expressive_woman_480.mp4"
# A clip with its index first (faststart), so it streams over HTTP without seeking: 282 frames.
HTTP_CLIP = "woman_1280x720.mp4"
# Process start, imports and model loading on a busy 2-core machine.
STARTUP_S = 40.0


class Run:
    """``python -m stream ARGS`` running in the background."""

    def __init__(self, *args: str, log_level: str = "WARNING") -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(cli_command(*args, log_level=log_level), cwd=REPO, env=child_env(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr = ""

    def wait_for_lines(self, events: Path, lines: int, timeout_s: float = STARTUP_S) -> None:
        """Wait until ``events`` holds ``lines`` lines (the run is mid-way), failing if the run ends first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if events.exists() and events.read_bytes().count(b"\n") >= lines:
                return
            if self.process.poll() is not None:
                self.finish(1)
                pytest.fail(f"the run ended (rc {self.process.returncode}) before {lines} events:\n{self.stderr}")
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"fewer than {lines} events after {timeout_s} s")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout_s: float) -> tuple[int, float]:
        """Wait for the exit: ``(exit code, seconds waited)``; kills and fails on a hang."""
        started = time.monotonic()
        try:
            _, self.stderr = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not end within {timeout_s} s:\n{self.stderr}")
        return self.process.returncode, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            _, self.stderr = self.process.communicate()

    def error(self) -> str:
        return error_line(self.stderr)


@pytest.fixture
def run_cli_bg() -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(*args: str, log_level: str = "WARNING") -> Run:
        run = Run(*args, log_level=log_level)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


@pytest.fixture
def stalling_listener() -> Iterator[StallingListener]:
    listener = StallingListener()
    yield listener
    listener.close()


@pytest.fixture
def http_server() -> Iterator[FaultyHttpServer]:
    server = FaultyHttpServer(shared_file("videos", HTTP_CLIP), user="cam", password="p@ss:w/rd#?%")
    yield server
    server.close()


def decodable_frames(path: Path) -> int:
    """Frames that decode from the start of a video file, stopping at the first damaged packet (the tail of a
    killed or full-disk run); fails when the file cannot be opened at all."""
    import av
    import av.error

    frames = 0
    with av.open(str(path)) as container:
        try:
            for packet in container.demux(container.streams.video[0]):
                frames += len(packet.decode())
        except av.error.FFmpegError:
            pass
    return frames
