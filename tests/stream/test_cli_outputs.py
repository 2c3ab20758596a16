"""What the CLI writes, read back and checked against each other: the ``--summary`` file against the
``--events`` of the same run, labels gated at exactly ``trackbook.min_observations``, and ``trackbook.fusion``
reaching the track book. One run of ``python -m stream`` as a child process on 90 frames of the crowd clip."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import shared_file
from tests.support.cli_util import read_events, run_cli

pytestmark = pytest.mark.slow

FRAMES = 90
MIN_OBS = 4  # not the default (3), so the gate is seen to follow the setting
EVIDENCE_KEYS = ("age_group_probs", "p_female")  # given exactly once a track has its label
DECISION_KEYS = ("age_group", "age_range", "age", "gender")  # null before; after, null only while undecided
LABEL_KEYS = EVIDENCE_KEYS + DECISION_KEYS


def _run(tmp_path: Path, *extra: str) -> tuple[list[dict], dict]:
    clip = shared_file("videos", "crowd_1080p.mp4")
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    done = run_cli("--source", str(clip), "--max-frames", str(FRAMES), "--events", str(events),
                   "--summary", str(summary), "--set", f"trackbook.min_observations={MIN_OBS}", *extra,
                   timeout=300)
    assert done.returncode == 0, done.stderr
    return read_events(events), json.loads(summary.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def mean_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("mean"))


@pytest.fixture(scope="module")
def geometric_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("geometric"), "--set", "trackbook.fusion=geometric")


def _faces_by_track(events: list[dict]) -> dict[int, list[tuple[int, dict]]]:
    tracks: dict[int, list[tuple[int, dict]]] = {}
    for event in events:
        for face in event["faces"]:
            tracks.setdefault(face["track_id"], []).append((event["frame"], face))
    return tracks


@pytest.mark.parametrize("run", ["mean_run", "geometric_run"])
def test_labels_appear_exactly_at_min_observations(request, run):
    events, _ = request.getfixturevalue(run)
    assert [e["frame"] for e in events] == list(range(FRAMES))
    seen_at_threshold = 0
    for event in events:
        for face in event["faces"]:
            ready = face["n_obs"] >= MIN_OBS
            assert all((face[key] is not None) == ready for key in EVIDENCE_KEYS), (event["frame"], face)
            assert ready or all(face[key] is None for key in DECISION_KEYS), (event["frame"], face)
            seen_at_threshold += face["n_obs"] == MIN_OBS
    assert seen_at_threshold > 0, "no face was ever seen with exactly min_observations observations"


def test_summary_matches_the_events_of_the_same_run(mean_run):
    events, summary = mean_run
    assert summary["frames"] == FRAMES == len(events)
    assert summary["source"].endswith("crowd_1080p.mp4")
    assert summary["seconds"] > 0 and summary["fps"] == pytest.approx(FRAMES / summary["seconds"], rel=0.01)
    tracks = _faces_by_track(events)
    by_id = {record["track_id"]: record for record in summary["tracks"]}
    assert len(by_id) == len(summary["tracks"]), "a track is summarised twice"
    assert set(by_id) == set(tracks), "the summary's tracks are not the tracks the events showed"
    for track_id, seen in tracks.items():
        record = by_id[track_id]
        last_frame, last_face = seen[-1]
        assert record["first_frame"] <= seen[0][0] and record["last_frame"] == last_frame
        assert record["duration_s"] == pytest.approx((record["last_frame"] - record["first_frame"] + 1) / 25, abs=2e-3)
        assert record["n_obs"] == last_face["n_obs"] == max(face["n_obs"] for _, face in seen)
        # The label a track ends with is the label the last frame showed (one rule, stream.labels).
        for key in LABEL_KEYS:
            assert record[key] == last_face[key], (track_id, key)
    totals = summary["totals"]
    labelled = [r for r in summary["tracks"] if r["age_group_probs"] is not None]
    assert totals["tracks"] == len(summary["tracks"]) and totals["labelled_tracks"] == len(labelled)
    assert totals["by_age_group"] == {group: Counter(r["age_group"] for r in labelled)[group]
                                      for group in totals["by_age_group"]}
    assert totals["by_gender"] == {g: sum(r["gender"] == g for r in labelled) for g in ("female", "male")}
    # Labelled tracks whose evidence decided no age group (a range or age?) are counted as undecided, not guessed.
    assert totals["age_undecided"] == sum(r["age_group"] is None for r in labelled)
    assert totals["labelled_tracks"] >= 5 and 0 < totals["labelled_tracks"] < totals["tracks"]


def test_geometric_fusion_reaches_the_track_book(mean_run, geometric_run):
    """The same faces fused two ways: the first label of a track (the frame its n_obs reaches the threshold)
    differs between the runs for some track, and the product of experts is sharper on average."""
    firsts = []
    for events in (mean_run[0], geometric_run[0]):
        first: dict[int, list[float]] = {}
        for event in events:
            for face in event["faces"]:
                if face["n_obs"] == MIN_OBS and face["track_id"] not in first:
                    first[face["track_id"]] = face["age_group_probs"]
        firsts.append(first)
    common = sorted(set(firsts[0]) & set(firsts[1]))
    assert len(common) >= 3
    differences = [max(abs(a - b) for a, b in zip(firsts[0][t], firsts[1][t])) for t in common]
    assert max(differences) > 0.02
    sharpness = [sum(max(run[t]) for t in common) / len(common) for run in firsts]
    assert sharpness[1] > sharpness[0]
