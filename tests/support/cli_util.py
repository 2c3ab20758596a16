"""Helpers for tests that run the real CLI (``python -m stream``) as a child process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO

# Variables that would make a child find a display, or other models than the test means it to.
_SCRUBBED = ("DISPLAY", "WAYLAND_DISPLAY", "STREAM_LOCAL_MODELS", "OPENCV_LOG_LEVEL")


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment for a child: no display, the repo importable, ``extra`` applied."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def cli_command(*args: str, log_level: str = "WARNING") -> list[str]:
    """``python -m stream ARGS --log-level LEVEL`` with the test's interpreter (the project's venv)."""
    return [sys.executable, "-m", "stream", *args, "--log-level", log_level]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, log_level: str = "WARNING"
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion from the repo root and capture its output."""
    return subprocess.run(
        cli_command(*args, log_level=log_level),
        cwd=REPO,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_line(stderr: str) -> str:
    """The single ``error: ...`` line of a failed run; fails on a traceback or on 0 or 2+ error lines."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected exactly one 'error:' line, got {len(errors)}:\n{stderr}"
    assert stderr.rstrip("\n").splitlines()[-1] == errors[0], f"the error line must come last:\n{stderr}"
    return errors[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL events file, parsed; fails if the file does not end with a complete line."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), f"{path} ends with a partial line: {text[-80:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def probe_video(path: Path) -> tuple[int, int, int]:
    """``(frames decoded, width, height)`` of a video file; fails if any packet does not decode."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = 0
        for packet in container.demux(stream):
            frames += len(packet.decode())  # raises on a damaged packet
        return frames, stream.codec_context.width, stream.codec_context.height
