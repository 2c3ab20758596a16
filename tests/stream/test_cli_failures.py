"""Failures in the middle of a run, through the real CLI (``python -m stream`` as a child process): an RTSP camera
that drops out and comes back, one that never comes back, and an output that cannot be written any more (a full
disk, made with RLIMIT_FSIZE). In each case the outputs that can still be written are complete: whole JSONL lines,
a playable video whose timestamps follow the camera's clock across the gap, a summary that agrees with the events.

The camera is tests/support/rtsp_server.py (GStreamer's RTSP server on loopback, run by the system Python), serving
talking_woman_512.mp4 (one face, 30 fps) from its start to each new client.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_file
from tests.stream import test_sources_rtsp as rtsp
from tests.support.cli_util import child_env, cli_command, error_line, read_events

pytestmark = pytest.mark.slow

rtsp_ready = rtsp.rtsp_ready
start_server = rtsp.start_server

# Live-source timings for these tests: a stall is noticed after read_timeout_s (within 2x, see test_sources_rtsp),
# reconnection retries every 0.1-0.4 s.
OPEN_TIMEOUT_S, READ_TIMEOUT_S, RECONNECT_MAX_S = 5.0, 0.8, 0.4
LIVE = ("--set", f"source.open_timeout_s={OPEN_TIMEOUT_S}", "--set", f"source.read_timeout_s={READ_TIMEOUT_S}",
        "--set", "source.reconnect_initial_s=0.1", "--set", f"source.reconnect_max_s={RECONNECT_MAX_S}")
OUTAGE_S = 2.5  # the camera is away this long: > 2 x read_timeout_s, so the CLI sees a stall and reconnects




def _wait_for_lines(path: Path, count: int, process: subprocess.Popen, limit_s: float) -> int:
    """Wait until ``path`` holds ``count`` complete lines (the CLI is still running); returns how many it holds."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        lines = path.read_bytes().count(b"\n") if path.exists() else 0
        if lines >= count:
            return lines
        assert process.poll() is None, f"the CLI ended early: {process.stderr.read() if process.stderr else ''}"
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {count} lines in {limit_s} s")


def _video_times(path: Path) -> list[float]:
    """Presentation time of every decoded frame of a video file, in seconds."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(frame.pts * stream.time_base) for frame in container.decode(stream)]


def _dominant(faces_by_event: list[dict]) -> tuple[int, str | None]:
    """The track id seen most often in these events, and the gender shown for it last."""
    ids = Counter(face["track_id"] for event in faces_by_event for face in event["faces"])
    track_id = ids.most_common(1)[0][0]
    genders = [f["gender"] for e in faces_by_event for f in e["faces"] if f["track_id"] == track_id and f["gender"]]
    return track_id, genders[-1] if genders else None


def test_rtsp_outage_through_the_cli(start_server: Callable[..., rtsp.RtspServer], tmp_path: Path) -> None:
    server = start_server()
    events, video, summary = tmp_path / "events.jsonl", tmp_path / "out.mp4", tmp_path / "summary.json"
    process = subprocess.Popen(
        cli_command("--source", server.url(), "--events", str(events), "--output", str(video),
                    "--summary", str(summary), *LIVE, log_level="INFO"),
        cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        before = _wait_for_lines(events, 40, process, limit_s=90)
        server.kill()
        time.sleep(OUTAGE_S)
        server.start()
        _wait_for_lines(events, before + 40, process, limit_s=60)
        process.send_signal(signal.SIGINT)  # Ctrl-C: the CLI stops and finalizes every output
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "lost" in stderr and "back after" in stderr, stderr  # the outage is logged, and the recovery

    records = read_events(events)
    frames = [r["frame"] for r in records]
    times = [r["t"] for r in records]
    assert frames == sorted(set(frames)) and times == sorted(times)
    gaps = [b - a for a, b in zip(times, times[1:])]
    gap_at = max(range(len(gaps)), key=gaps.__getitem__)
    # The camera was away OUTAGE_S, plus up to 2 x read_timeout_s to notice, a reconnect wait and the open (its
    # timeout): the gap is at most that sum, whatever the machine's load.
    assert OUTAGE_S <= gaps[gap_at] <= OUTAGE_S + 2 * READ_TIMEOUT_S + RECONNECT_MAX_S + OPEN_TIMEOUT_S, gaps[gap_at]
    # Any other pause of 2 x read_timeout_s would have been a stall and a reconnection: there must be none.
    assert sorted(gaps)[-2] < 2 * READ_TIMEOUT_S, "a second long gap: frames were lost outside the outage"
    before_gap, after_gap = records[: gap_at + 1], records[gap_at + 1:]
    assert len(before_gap) >= 30 and len(after_gap) >= 30

    # The person is the same track, with the same label, on both sides of the gap.
    id_before, gender_before = _dominant(before_gap[-20:])
    id_after, gender_after = _dominant(after_gap[:20])
    assert gender_before is not None, "no label before the outage"
    assert (id_after, gender_after) == (id_before, gender_before)
    for face in after_gap[0]["faces"]:
        if face["track_id"] == id_before:
            assert face["age_group"] is not None  # the label does not start over after the reconnect

    # The video has every processed frame, at the camera's timestamps: the gap is in the file too.
    video_times = _video_times(video)
    assert len(video_times) == len(records)
    offsets = [v - (t - times[0]) for v, t in zip(video_times, times)]
    assert max(abs(o - offsets[0]) for o in offsets) <= 1 / 30 + 1e-3, "video timestamps drift from the events'"

    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["frames"] == len(records)
    assert id_before in {track["track_id"] for track in data["tracks"]}


def test_live_source_that_gives_up_ends_the_run_with_complete_outputs(
    start_server: Callable[..., rtsp.RtspServer], tmp_path: Path
) -> None:
    server = start_server()
    events, video, summary = tmp_path / "events.jsonl", tmp_path / "out.mp4", tmp_path / "summary.json"
    process = subprocess.Popen(
        cli_command("--source", server.url(), "--events", str(events), "--output", str(video),
                    "--summary", str(summary), *LIVE, "--set", "source.give_up_after_s=2"),
        cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lines(events, 40, process, limit_s=90)
        server.kill()  # for good
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    line = error_line(stderr)
    assert process.returncode == 2 and "unavailable for 2 s, giving up" in line, (process.returncode, line)
    records = read_events(events)
    assert [r["frame"] for r in records] == sorted({r["frame"] for r in records}) and len(records) >= 40
    assert len(_video_times(video)) == len(records)
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["frames"] == len(records)
    # The run stopped on an error, yet its open tracks were ended: the summary lists the person the events show.
    _assert_summary_has_the_person(records, data)


def _assert_summary_has_the_person(records: list[dict], data: dict) -> None:
    track_id, gender = _dominant(records)
    ended = {track["track_id"]: track for track in data["tracks"]}
    assert track_id in ended and ended[track_id]["gender"] == gender, data["tracks"]


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_mid_run_fails_with_one_error_and_complete_other_outputs(tmp_path: Path) -> None:
    """The video grows past the limit first (~300 kB after ~80 frames): the run stops with one error line naming
    it, and the events and summary, far below the limit, are complete and agree."""
    clip = shared_file("videos", "talking_woman_512.mp4")
    events, video, summary = tmp_path / "events.jsonl", tmp_path / "out.mp4", tmp_path / "summary.json"
    command = cli_command("--source", str(clip), "--events", str(events), "--output", str(video),
                          "--summary", str(summary))
    done = subprocess.run(command, cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(300_000))
    assert done.returncode == 2, done.stderr
    line = error_line(done.stderr)
    assert "out.mp4" in line and "disk" in line, line
    records = read_events(events)
    assert [r["frame"] for r in records] == list(range(len(records))) and 20 <= len(records) < 300
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["frames"] == len(records)
    # The run stopped on an error, yet its open tracks were ended: the summary lists the person the events show.
    _assert_summary_has_the_person(records, data)
