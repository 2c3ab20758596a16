"""Disk faults and kills against the real CLI: full disk, kill -9 mid-write, two runs on the same paths.

A full disk is a real small tmpfs mounted for the test (root only; skipped elsewhere). Each test asserts the
exit code, the one-line error and that every output written so far is readable: the events file parses to
its last line and the video decodes up to its last fragment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import shared_file
from tests.faults.conftest import LONG_CLIP, STARTUP_S, Run, decodable_frames
from tests.support.cli_util import read_events


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tmpfs file systems of a given size (e.g. "64k") under tmp_path; unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(point)], check=False)


def test_events_on_a_full_disk_end_on_a_complete_line(
    run_cli_bg: Callable[..., Run], small_disk: Callable[[str], Path]
) -> None:
    events = small_disk("48k") / "e.jsonl"
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--events", str(events))
    code, _ = run.finish(STARTUP_S + 60)
    assert code == 2, run.stderr
    assert "No space left on device" in run.error()
    records = read_events(events)  # ends on a complete line, every line parses
    assert records and [r["frame"] for r in records] == list(range(len(records)))


def test_video_on_a_full_disk_stays_playable(
    run_cli_bg: Callable[..., Run], small_disk: Callable[[str], Path], tmp_path: Path
) -> None:
    video = small_disk("600k") / "v.mp4"
    events = tmp_path / "e.jsonl"
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--output", str(video),
                     "--events", str(events))
    code, _ = run.finish(STARTUP_S + 60)
    assert code == 2, run.stderr
    assert "disk" in run.error()
    assert decodable_frames(video) > 0
    assert read_events(events)


def test_kill_9_mid_write_leaves_readable_outputs(run_cli_bg: Callable[..., Run], tmp_path: Path) -> None:
    video, events, summary = tmp_path / "v.mp4", tmp_path / "e.jsonl", tmp_path / "s.json"
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--output", str(video),
                     "--events", str(events), "--summary", str(summary))
    run.wait_for_lines(events, 150)
    run.signal(signal.SIGKILL)
    run.finish(10)
    records = read_events(events)
    assert len(records) >= 150
    # Fragmented mp4: everything up to the last complete fragment (one a second at most) plays.
    # Up to the last fragment: at most a second (30 frames) of fragment, the writer queue and the encoder delay.
    assert decodable_frames(video) >= len(records) - 60, (decodable_frames(video), len(records))
    assert not summary.exists()  # no empty or half-written summary: it is written whole at the end or not at all


def test_two_runs_on_the_same_paths_one_refused_one_whole(run_cli_bg: Callable[..., Run], tmp_path: Path) -> None:
    video, events = tmp_path / "v.mp4", tmp_path / "e.jsonl"
    clip = str(shared_file("videos", LONG_CLIP))
    first = run_cli_bg("--source", clip, "--output", str(video), "--events", str(events), "--max-frames", "300")
    first.wait_for_lines(events, 10)
    link = tmp_path / "link.jsonl"
    link.symlink_to(events)
    second = run_cli_bg("--source", clip, "--events", str(link), "--max-frames", "10")
    code, _ = second.finish(STARTUP_S)
    assert code == 2, second.stderr
    assert "being written by another run" in second.error()
    code, _ = first.finish(STARTUP_S + 60)
    assert code == 0, first.stderr
    assert [r["frame"] for r in read_events(events)] == list(range(300))
    assert decodable_frames(video) == 300


def test_summary_on_a_full_disk_is_one_line_and_leaves_nothing(
    run_cli_bg: Callable[..., Run], small_disk: Callable[[str], Path]
) -> None:
    disk = small_disk("16k")
    with contextlib.suppress(OSError), (disk / "fill").open("wb") as fill:
        fill.write(b"\0" * 64 * 1024)  # fills it
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--summary", str(disk / "s.json"),
                     "--max-frames", "5")
    code, _ = run.finish(STARTUP_S + 30)
    assert code == 2, run.stderr
    assert "No space left on device" in run.error()
    assert sorted(p.name for p in disk.iterdir()) == ["fill"]  # no summary, temporary or lock file left


@pytest.mark.parametrize("extension", [".mp4", ".mkv"])
def test_kill_9_in_the_first_second_leaves_a_playable_video(
    run_cli_bg: Callable[..., Run], tmp_path: Path, extension: str
) -> None:
    # Before the first fragment or cluster was complete a killed run left a 28-byte .mp4 or a 0-byte .mkv.
    video, events = tmp_path / f"v{extension}", tmp_path / "e.jsonl"
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--output", str(video),
                     "--events", str(events))
    run.wait_for_lines(events, 45)
    run.signal(signal.SIGKILL)
    run.finish(10)
    assert decodable_frames(video) > 0


def test_mqtt_spool_on_a_full_disk_ends_on_a_complete_line_and_closes(small_disk: Callable[[str], Path]) -> None:
    from stream.sinks.mqtt import Spool

    spool = Spool(small_disk("16k") / "spool.jsonl", max_bytes=1 << 20)
    line = b'{"topic":"faces/cam/events","retain":false,"payload":"' + b"x" * 700 + b'"}\n'
    with pytest.raises(OSError):
        for _ in range(1000):
            spool.append(line)
    with pytest.raises(OSError):
        spool.commit(len(line))  # saving the read position fails too (the sink says so and goes on)...
    spool.close()  # ...and closing, which tries again, neither raises nor leaves a temporary file
    text = spool.path.read_bytes()
    assert text and text.endswith(b"\n") and text.count(b"\n") * len(line) == len(text)
    assert not list(spool.path.parent.glob("*.tmp"))
