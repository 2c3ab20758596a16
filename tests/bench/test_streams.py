"""``python -m bench.streams`` on two short runs: every figure present and consistent (never speed)."""

from __future__ import annotations

import json

import av

from bench import streams
from tests.conftest import shared_file


def test_report_has_every_figure_per_run_and_per_stream(tmp_path):
    clip = shared_file("videos", "crowd_1080p.mp4")
    out = tmp_path / "streams.json"
    code = streams.main(["--source", str(clip), "--streams", "1,2", "--seconds", "2", "--warmup-s", "1",
                         "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [run["streams"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert len(run["per_stream"]) == run["streams"]
        assert run["real_time_streams"] == sum(row["real_time"] for row in run["per_stream"])
        assert run["frames_processed"] > 0 and run["frames_decoded"] >= run["frames_processed"]
        assert run["cpu_ms_per_frame"] > 0 and run["loadavg_before"]
        cores = run["cores_by_thread"]
        assert set(cores) == {"decode", "loop", "workers", "other"} and cores["decode"] > 0 and cores["loop"] > 0
        # One camera: no worker thread, everything in the loop's thread. With more, the workers take the frames the
        # loop's thread has not started yet, which on an idle machine may be none (the loop got to them first).
        assert cores["workers"] >= 0 and (run["streams"] > 1 or cores["workers"] == 0)
        assert run["loop_cpu_ms_per_frame"] > 0
        for row in run["per_stream"]:
            assert row["status"] == "live" and row["fps"] > 0
            assert row["latency_p50_ms"] is not None and row["latency_p99_ms"] >= row["latency_p50_ms"]


def test_paced_capture_hands_frames_over_no_earlier_than_their_time():
    capture = streams.PacedFileCapture(shared_file("videos", "crowd_1080p.mp4"), offset_frames=3)
    try:
        assert capture.fps == 25.0
        frames = [capture.read_frame() for _ in range(110)]  # past the clip's 105 frames: it loops
        assert all(isinstance(f, av.VideoFrame) for f in frames)
        steps = [b - a for a, b in zip(capture.due, capture.due[1:])]
        assert all(abs(step - 0.04) < 1e-9 for step in steps)
    finally:
        capture.release()
