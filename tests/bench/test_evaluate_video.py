"""Labelled-video generator and metrics: hand-checked values on tiny inputs, one short end-to-end run."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bench import evaluate_video as ev
from tests.conftest import shared_file


def _pred(ids, boxes, groups=None, genders=None):
    n = len(ids)
    return {"track_id": np.asarray(ids, np.int64), "xyxy": np.asarray(boxes, np.float32).reshape(-1, 4),
            "shown_group": np.asarray(groups if groups is not None else [-1] * n, np.int32),
            "shown_gender": np.asarray(genders if genders is not None else [-1] * n, np.int8)}


def _gt(ids, boxes, vis=None):
    vis = vis if vis is not None else [1.0] * len(ids)
    return [{"track_id": i, "xyxy": list(b), "visibility": v} for i, b, v in zip(ids, boxes, vis, strict=True)]


A, B, C = [0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]


# ----------------------------------------------------------------------------------- MOT, hand-checked


def test_perfect_tracks_score_one():
    gt = [_gt([1, 2], [A, B])] * 3
    pred = [_pred([7, 8], [A, B])] * 3
    m = ev.mot_metrics(gt, pred)
    assert m["idf1"] == pytest.approx(1.0) and m["mota"] == pytest.approx(1.0)
    assert (m["id_switches"], m["false_positives"], m["misses"], m["num_gt"]) == (0, 0, 0, 6)
    assert (m["gt_tracks"], m["pred_tracks"]) == (2, 2)


def test_id_switch_hand_computed():
    # GT 2 is predicted as 8, then as 9. IDF1: the best one-to-one map (1->7, 2->8) has IDTP = 3 of
    # 4 GT and 4 predicted boxes: 2*3 / (4 + 4) = 0.75. MOTA: 1 - (0 FN + 0 FP + 1 switch) / 4 = 0.75.
    gt = [_gt([1, 2], [A, B]), _gt([1, 2], [A, B])]
    pred = [_pred([7, 8], [A, B]), _pred([7, 9], [A, B])]
    m = ev.mot_metrics(gt, pred)
    assert m["idf1"] == pytest.approx(0.75) and m["mota"] == pytest.approx(0.75) and m["id_switches"] == 1


def test_misses_false_positives_and_ignored_faces():
    # Frame 0: GT 1 found, GT 2 missed, a false positive at C. Frame 1: GT 2 is barely visible
    # (ignored) and predicted: neither a miss nor a false positive.
    gt = [_gt([1, 2], [A, B]), _gt([1, 2], [A, B], vis=[1.0, 0.2])]
    pred = [_pred([7, 9], [A, C]), _pred([7, 8], [A, B])]
    m = ev.mot_metrics(gt, pred)
    assert (m["num_gt"], m["misses"], m["false_positives"], m["id_switches"]) == (3, 1, 1, 0)
    assert m["mota"] == pytest.approx(1 - 2 / 3)
    # IDTP 2 (GT 1 both frames), GT boxes 3, predicted boxes counted 3: 4 / 6.
    assert m["idf1"] == pytest.approx(4 / 6)


def test_frame_counts_must_agree():
    with pytest.raises(ValueError, match="pred_frames"):
        ev.mot_metrics([_gt([1], [A])], [])


def test_match_frame_prefers_best_overlap():
    gt = np.asarray([A, B], np.float32)
    pred = np.asarray([[21, 0, 31, 10], [1, 0, 11, 10], C], np.float32)
    assert sorted(ev.match_frame(gt, pred)) == [(0, 1), (1, 0)]
    assert ev.match_frame(gt, np.empty((0, 4), np.float32)) == []


# ---------------------------------------------------------------------------------- flicker and labels


def test_flicker_counts_changes_after_first_label():
    # Track 1 shows -, 0, 0, 1, -, 1, 0: two changes over labelled frames 1..6 (6 frames at 1 fps).
    groups = [-1, 0, 0, 1, -1, 1, 0]
    frames = [_pred([1], [A], [g]) for g in groups]
    f = ev.flicker(frames, fps=1.0)
    assert f["changes"] == 2 and f["tracks"] == 1
    assert f["minutes"] == pytest.approx(6 / 60, abs=1e-4)
    assert f["per_track_per_min"] == pytest.approx(20.0, rel=1e-3)
    assert ev.flicker([_pred([1], [A])], fps=25)["per_track_per_min"] == 0.0
    with pytest.raises(ValueError, match="fps"):
        ev.flicker(frames, fps=0)


def test_display_flicker_separates_refinements_from_contradictions():
    # Shown age: 31-40, 21-40 (a range holding it), 31-40, age?, 41-55 (contradicts 31-40), 41-55.
    codes = [3 * 8 + 3, 2 * 8 + 3, 3 * 8 + 3, 64, 4 * 8 + 4, 4 * 8 + 4]
    frames = [{"track_id": np.array([1]), "age_code": np.array([c])} for c in codes]
    f = ev.flicker(frames, fps=1.0, key="age_code")
    assert f["changes"] == 4 and f["contradictions"] == 1
    # Gender: F, ?, F, ?, M: the only contradiction is F -> M, across the "?".
    genders = [{"track_id": np.array([1]), "gender_code": np.array([g])} for g in (1, 2, 1, 2, 0)]
    assert ev.flicker(genders, fps=1.0, key="gender_code")["contradictions"] == 1


def test_coverage_of_decided_labels():
    # Ready on 4 frames: a right group, a range holding the truth, age?, a wrong group; gender: F, ?, F, M.
    video = ev.LabelledVideo(video=None, gt=None, fps=1.0, size=(100, 100),
                             tracks=[{"track_id": 1, "age": 25, "gender": 1, "file": "x.jpg"}],
                             frames=[_gt([1], [A])] * 4)
    preds = []
    for group, code, gender in ((2, 2 * 8 + 2, 1), (-1, 2 * 8 + 3, -1), (-1, 64, 1), (4, 4 * 8 + 4, 0)):
        pred = _pred([5], [A], [group], [gender])
        pred.update(ready=np.array([True]), age_code=np.array([code]))
        preds.append(pred)
    m = ev.label_metrics(video, ev.PipelineTrace(frames=preds, fps=1.0))
    assert m["ready_frames"] == 4 and m["age_decided_share"] == 0.5 and m["age_range_share"] == 0.25
    assert m["age_range_contains_truth"] == 1.0 and m["age_group_wrong_per_ready"] == 0.25
    assert m["gender_decided_share"] == 0.75 and m["gender_wrong_per_ready"] == 0.25


def test_label_metrics_hand_made():
    # GT track 1: 25 years (group 2 "21-30"), female. 4 frames; labels from frame 1 on: right, right, wrong.
    video = ev.LabelledVideo(video=None, gt=None, fps=2.0, size=(100, 100),
                             tracks=[{"track_id": 1, "age": 25, "gender": 1, "file": "x.jpg"}],
                             frames=[_gt([1], [A])] * 4)
    trace = ev.PipelineTrace(
        frames=[_pred([5], [A], [-1], [-1]), _pred([5], [A], [2], [1]), _pred([5], [A], [2], [1]),
                _pred([5], [A], [3], [0])],
        raw=[(0, 5, 2, 1, 25.0), (1, 5, 4, 1, 45.0), (3, 5, 3, 0, 33.0), (2, 99, 2, 1, 25.0)], fps=2.0)
    m = ev.label_metrics(video, trace, source_predictions={1: (2, 0)})
    assert m["labelled_frames"] == 3
    assert m["age_group_acc_shown"] == pytest.approx(2 / 3) and m["gender_acc_shown"] == pytest.approx(2 / 3)
    # Raw: 3 observations on matched faces (track 99 is not in the trace): groups 2, 4, 3 -> 1 right.
    assert m["raw_classifications"] == 3
    assert m["age_group_acc_raw"] == pytest.approx(1 / 3) and m["gender_acc_raw"] == pytest.approx(2 / 3)
    assert m["age_group_acc_source_image"] == 1.0 and m["gender_acc_source_image"] == 0.0
    assert m["time_to_first_label_s"] == [0.5]


def test_visibility_of_stacked_boxes():
    boxes = np.asarray([[0, 0, 10, 10], [5, 0, 15, 10], [-5, 20, 5, 30]], np.float32)
    vis = ev._visibility(boxes, 100, 100)
    assert vis == pytest.approx([0.5, 1.0, 0.5])


# ------------------------------------------------------------------------------- generator, end to end


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    shared_file("data", "utkface", "UTKFace")
    out = tmp_path_factory.mktemp("labelled")
    return ev.generate_video(out, "tiny", seed=3, n_tracks=3, n_frames=24, size=(480, 270), face_px=(48, 90))


def test_generated_video_matches_its_ground_truth(tiny_video):
    capture = cv2.VideoCapture(str(tiny_video.video))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    data = json.loads(tiny_video.gt.read_text(encoding="utf-8"))
    assert decoded == data["n_frames"] == len(data["frames"]) == 24
    assert len(data["tracks"]) == 3 and {t["gender"] for t in data["tracks"]} <= {0, 1}
    for rows in data["frames"]:
        for row in rows:
            x1, y1, x2, y2 = row["xyxy"]
            assert 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 270
            assert 0 < row["visibility"] <= 1
    present = {row["track_id"] for rows in data["frames"] for row in rows}
    assert present <= {1, 2, 3}
    assert ev.LabelledVideo.load(tiny_video.gt).frames == data["frames"]


def test_generator_is_seeded(tiny_video, tmp_path):
    again = ev.generate_video(tmp_path, "tiny", seed=3, n_tracks=3, n_frames=24, size=(480, 270), face_px=(48, 90))
    assert again.frames == tiny_video.frames and again.tracks == tiny_video.tracks


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_tracks": 0}, "n_tracks"), ({"n_frames": 1}, "n_frames"), ({"face_px": (8, 20)}, "face_px"),
     ({"size": (100, 100)}, "too small")],
)
def test_generator_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ev.generate_video(tmp_path, "bad", **kwargs)


# Stored figures of the tiny generated video (seed 3: 2 of its 3 faces visible, 41 ground-truth boxes, 24 frames at
# 25 fps, default config): IDF1 0.883, MOTA 0.780, 0 ID switches, 20 labelled frames, every shown label right. One
# box more or less moves IDF1 by ~0.012 and MOTA by 0.024: the bounds allow two boxes.
TINY_IDF1, TINY_MOTA, TINY_LABELLED_FRAMES, TINY_BOX_SLACK = 0.883, 0.780, 20, 2


def test_pipeline_on_generated_video(tiny_video, config):
    report = ev.evaluate([tiny_video], config)
    row, pooled = report["videos"][0], report["all"]
    assert row["frames"] == 24 and row["num_gt"] == 41
    assert row["idf1"] >= TINY_IDF1 - TINY_BOX_SLACK * 0.0125, row
    assert row["mota"] >= TINY_MOTA - TINY_BOX_SLACK / row["num_gt"], row
    assert row["id_switches"] == 0 and row["gt_tracks"] == row["pred_tracks"] == 2, row
    assert row["idf1"] == pytest.approx(pooled["idf1"])
    assert row["labelled_frames"] >= TINY_LABELLED_FRAMES - TINY_BOX_SLACK and row["labelled_frames"] <= row["num_gt"]
    assert row["age_group_acc_shown"] >= 0.9 and row["gender_acc_shown"] >= 0.9, row
    # The shown (fused) label is at least as right as the raw per-frame classifications it rests on.
    assert row["age_group_acc_shown"] >= row["age_group_acc_raw"] and row["gender_acc_shown"] >= row["gender_acc_raw"]
    assert pooled["flicker_group"]["changes"] == 0 and pooled["flicker_group"]["per_track_per_min"] == 0
    # A label needs min_observations classifications warmup_interval_frames apart after the first:
    # (5 - 1) * 2 = 8 frames (0.32 s at 25 fps) at the least; detection and confirmation add a few frames.
    earliest = (config.trackbook.min_observations - 1) * config.scheduler.warmup_interval_frames / tiny_video.fps
    assert earliest <= row["time_to_first_label_median_s"] <= earliest + 4 / tiny_video.fps, row
    assert set(pooled["targets"]) >= {"idf1>=0.8", "flicker_group<=1/min", "track_age_acc>per_image"}
    assert pooled["targets"]["idf1>=0.8"] and pooled["targets"]["flicker_group<=1/min"]


def test_real_clip_stability(config):
    """One man talking for 48 frames: one track, from its 2nd frame on; labelled from its first classification
    plus (min_observations - 1) warmup intervals on, always 31-40 (stored: 32.9 years, range 0.86 over the clip)."""
    clip = shared_file("videos", "talking_man_512.mp4")
    row = ev.evaluate_real_clip(clip, config, max_frames=48)
    assert row["frames"] == 48 and row["tracks"] == 1, row
    assert row["main_track_frames"] >= 48 - config.tracker.minimum_consecutive_frames - 1, row
    warmup = (config.trackbook.min_observations - 1) * config.scheduler.warmup_interval_frames
    assert row["labelled_frames"] == row["main_track_frames"] - warmup, row
    assert row["time_to_first_label_s"] == pytest.approx(warmup / 25, abs=1e-6)
    assert row["groups_shown"] == ["31-40"] and 28 <= row["age_mean"] <= 38, row
    assert row["age_range"] <= 2.0 and row["age_range"] == pytest.approx(row["age_max"] - row["age_min"])
    assert row["age_min"] <= row["age_mean"] <= row["age_max"] and 0 <= row["age_std"] <= row["age_range"]
    assert row["flicker_group"]["changes"] == 0 and row["flicker_gender"]["changes"] == 0


def test_cli_json(tmp_path, capsys):
    shared_file("videos", "talking_man_512.mp4")
    out = tmp_path / "report.json"
    assert ev.main(["--no-generated", "--real", "talking_man_512.mp4", "--real-max-frames", "6",
                    "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["real"][0]["frames"] == 6 and "real single-person clips" in capsys.readouterr().out
    assert ev.main(["--size", "bad"]) == 2


# Stored figures of the regression gate below (seed 3, 6 faces, 250 frames at 960x540, default config; 5 faces
# visible, 901 ground-truth boxes): IDF1 0.902 / MOTA 0.821 / 0 ID switches / 701 labelled boxes (ready_frames;
# 685 of them show one age group, the rest a range), recorded
# 2026-12-03 (0.901 / 0.825 / 2 before min_observations went to 5). One box moves MOTA by 0.0011 and IDF1 by about
# as much: the bounds allow 9 boxes (0.01) for platform differences in decoding and onnxruntime kernels, one ID
# switch, and 2% of the labelled boxes — not a worse tracker.
GATE_IDF1, GATE_MOTA, GATE_MAX_ID_SWITCHES, GATE_LABELLED = 0.902 - 0.01, 0.821 - 0.01, 1, int(701 * 0.98)


@pytest.mark.slow
def test_tracking_regression_gate(tmp_path, config):
    shared_file("data", "utkface", "UTKFace")
    video = ev.generate_video(tmp_path, "gate", seed=3)
    row = ev.evaluate([video], config)["videos"][0]
    assert row["num_gt"] == 901 and row["gt_tracks"] == 5, row
    assert row["idf1"] >= GATE_IDF1 and row["mota"] >= GATE_MOTA, row
    assert row["id_switches"] <= GATE_MAX_ID_SWITCHES and row["pred_tracks"] <= row["gt_tracks"] + 1, row
    assert row["ready_frames"] >= GATE_LABELLED, row
