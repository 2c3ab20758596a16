"""``--show`` through the real CLI on a private Xvfb display; ``q`` (sent with xdotool) quits cleanly."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_file
from tests.stream import test_sinks
from tests.support.cli_util import child_env, cli_command, probe_video, read_events

# A private Xvfb per module (skips when the xvfb package is missing), shared with the sink tests.
xvfb_display = test_sinks.xvfb_display

CLIP = "expressive_woman_480.mp4"  # 1008 frames: q arrives long before the end


def _env(display: str) -> dict[str, str]:
    return child_env(DISPLAY=display, QT_QPA_PLATFORM="xcb")


def test_show_runs_to_the_end(xvfb_display: str, tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    result = subprocess.run(
        cli_command(
            "--source", str(shared_file("videos", CLIP)), "--show", "--max-frames", "15", "--events", str(events)
        ),
        cwd=REPO,
        env=_env(xvfb_display),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    assert len(read_events(events)) == 15


def test_q_in_the_window_quits_early_with_finalized_outputs(xvfb_display: str, tmp_path: Path) -> None:
    xdotool = shutil.which("xdotool")
    if xdotool is None:
        pytest.skip("xdotool not installed (apt-get install xdotool)")
    out, events = tmp_path / "x.mp4", tmp_path / "e.jsonl"
    command = cli_command(
        "--source",
        str(shared_file("videos", CLIP)),
        "--show",
        "--output",
        str(out),
        "--events",
        str(events),
        "--set",
        "output.window_name=cli-window-test",
    )
    process = subprocess.Popen(
        command, cwd=REPO, env=_env(xvfb_display), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not events.exists() or events.read_bytes().count(b"\n") < 10:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no 10 frames shown within 60 s"
            time.sleep(0.02)
        x = {"env": _env(xvfb_display), "capture_output": True, "text": True, "timeout": 15}
        window = subprocess.run([xdotool, "search", "--sync", "--name", "^cli-window-test$"], check=True, **x)
        wid = window.stdout.split()[0]
        subprocess.run([xdotool, "windowfocus", "--sync", wid], check=True, **x)
        subprocess.run([xdotool, "key", "--window", wid, "q"], check=True, **x)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "error:" not in stderr
    records = read_events(events)
    assert 10 <= len(records) < 1008
    frames, _, _ = probe_video(out)
    assert frames == len(records)
