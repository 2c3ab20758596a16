"""People over time (stream.counts, stream.report, --counts, the summary's counts)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from stream.counts import ALL_CAMERAS, COLUMNS, EventsCounter, PeopleCounter, parse_window, table_bytes
from stream.types import PERSON_ID, Faces
from tests.conftest import REPO, shared_file
from tests.support.cli_util import error_line, run_cli

T0 = 1_800_000_000.0  # a round Unix time: 2027-01-15 08:00:00 UTC, a multiple of 3600


def _faces(track_ids, person_ids=None) -> Faces:
    n = len(track_ids)
    faces = Faces(np.zeros((n, 4)), np.ones(n), np.zeros((n, 5, 2)), np.array(track_ids, np.int64))
    return faces if person_ids is None else faces.with_data(**{PERSON_ID: np.array(person_ids, np.int64)})


def _end(track_id, group=None, gender=None, **extra):
    return {"track_id": track_id, "age_group": group, "gender": gender, **extra}


def test_a_person_whose_age_stayed_undecided_is_counted_as_such_with_the_gender_shown():
    """From an events file: track 1 shows a group, then only a range (its last label); track 2 never decides an age
    but shows a gender; track 3 leaves before any label. Each is counted once, by the last label it showed."""
    probs = [0.1, 0.1, 0.3, 0.3, 0.1, 0.05, 0.03, 0.02]

    def face(track_id, group=None, age_range=None, gender=None, labelled=True):
        return {"track_id": track_id, "age_group": group, "age_range": age_range, "gender": gender,
                "age_group_probs": probs if labelled else None, "p_female": (0.8 if gender else 0.5) if labelled
                else None}

    counter = EventsCounter()
    frames = [[face(1, labelled=False), face(2, labelled=False), face(3, labelled=False)],
              [face(1, "21-30", "21-30", "female"), face(2, gender="male"), face(3, labelled=False)],
              [face(1, None, "21-40", "female"), face(2, gender="male")]]
    for k, faces in enumerate(frames):
        counter.add({"frame": k, "time": T0 + k, "camera": "door", "faces": faces})
    row = next(r for r in counter.finish().rows(60.0) if r["camera"] == "door")
    assert (row["people"], row["labelled"], row["age_undecided"], row["estimating"]) == (3, 0, 2, 1)
    assert (row["female"], row["male"], row["gender_unknown"]) == (1, 1, 1)
    assert row["estimating_share"] == pytest.approx(1 / 3, abs=1e-4)


@pytest.mark.parametrize(
    ("window", "seconds"),
    [("1min", 60.0), ("15min", 900.0), ("1h", 3600.0), ("300", 300.0), (30, 30.0),
     ("0", ValueError), ("2d", ValueError), ("nan", ValueError), ("100000", ValueError)],
)
def test_parse_window(window, seconds):
    if seconds is ValueError:
        with pytest.raises(ValueError, match="window must be one of 1min, 15min, 1h or seconds"):
            parse_window(window)
    else:
        assert parse_window(window) == seconds


def test_people_are_counted_once_in_the_window_they_arrived_with_their_final_label_and_dwell():
    counter = PeopleCounter()
    # Frame by frame at 1 s: track 1 from 0 s to 70 s (crosses a minute), track 2 from 50 s to 55 s, track 3
    # (camera b) at 61 s only, never labelled.
    for second in range(0, 71):
        tracks = [1] + ([2] if 50 <= second <= 55 else [])
        counter.observe("a", T0 + second, _faces(tracks))
        if second == 55:
            counter.end("a", _end(2, "21-30", "male"))
        if second == 61:
            counter.observe("b", T0 + second, _faces([3]))
            counter.end("b", _end(3))
    counter.end("a", _end(1, "31-40", "female"))
    rows = {(r["window_start"][11:16], r["camera"]): r for r in counter.rows(60.0)}
    assert set(rows) == {("08:00", "a"), ("08:00", ALL_CAMERAS), ("08:01", "b"), ("08:01", ALL_CAMERAS)}
    first = rows[("08:00", "a")]
    assert (first["people"], first["labelled"], first["estimating"]) == (2, 2, 0)
    assert (first["age_31-40"], first["age_21-30"], first["female"], first["male"]) == (1, 1, 1, 1)
    assert (first["dwell_mean_s"], first["dwell_median_s"]) == (37.5, 37.5)  # 70 s and 5 s
    late = rows[("08:01", ALL_CAMERAS)]
    assert (late["people"], late["estimating"], late["estimating_share"], late["gender_unknown"]) == (1, 1, 1.0, 1)
    assert rows[("08:00", ALL_CAMERAS)]["people"] == 2
    totals = {r["camera"]: r for r in counter.totals()}
    assert totals[ALL_CAMERAS]["people"] == 3 and totals[ALL_CAMERAS]["window_s"] == 70.0


def test_person_ids_merge_the_tracks_of_one_person():
    counter = PeopleCounter()
    counter.observe("a", T0, _faces([1], [7]))
    counter.observe("a", T0 + 10, _faces([1], [7]))
    counter.end("a", _end(1, "41-55", "male"))
    counter.observe("a", T0 + 20, _faces([2], [7]))  # the same person, back under a new track
    counter.observe("a", T0 + 30, _faces([2, 3], [7, 8]))
    counter.end("a", _end(2))  # left before this track's label was ready: the person keeps the earlier label
    counter.end("a", _end(3, "11-20", "female"))
    (row,) = counter.rows(3600.0, across=False)
    assert (row["people"], row["labelled"], row["age_41-55"], row["age_11-20"]) == (2, 2, 1, 1)
    assert row["dwell_mean_s"] == 15.0  # person 7: 0..30 s, person 8: 30..30 s


def test_still_faces_are_people_and_have_no_dwell():
    counter = PeopleCounter()
    for image in ("a.jpg", "b.jpg"):
        for face in (1, 2, 3):
            counter.end("shop", _end(face, "21-30", "female", image=image), when=T0)
    (row,) = counter.rows(60.0, across=False)
    assert row["people"] == 6 and row["dwell_mean_s"] is None


def test_broker_end_events_are_counted_from_their_summary():
    events = EventsCounter()
    events.add({"type": "new", "camera": "door", "time": T0, "track_id": 4})
    events.add({"type": "end", "camera": "door", "time": T0 + 95,
                "after": {"track_id": 4, "duration_s": 30.0, "age_group": "56-65", "gender": "male"}})
    counter = events.finish()
    (row,) = counter.rows(60.0, across=False)
    assert row["window_start"].endswith("08:01:00+00:00")  # arrived at 95 - 30 = 65 s
    assert (row["people"], row["age_56-65"], row["dwell_mean_s"]) == (1, 1, 30.0)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_are_read_by_pandas_as_they_are(tmp_path, fmt):
    counter = PeopleCounter()
    counter.observe("a", T0, _faces([1]))
    counter.end("a", _end(1))
    counter.end("a", _end(2, "80+", "female", image="x.jpg"), when=T0 + 1)
    path = tmp_path / f"counts.{fmt}"
    path.write_bytes(table_bytes(counter.rows(900.0), fmt))
    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["people"].tolist() == [2, 2] and frame["camera"].tolist() == ["a", "all"]
    assert frame["estimating_share"].tolist() == [0.5, 0.5] and frame["age_80+"].tolist() == [1, 1]


def test_still_images_count_their_faces(tmp_path):
    summary, counts = tmp_path / "summary.json", tmp_path / "counts.csv"
    result = run_cli("--source", str(shared_file("videos", "multiface.jpg")), "--summary", str(summary),
                     "--counts", str(counts), timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(summary.read_text())
    assert report["totals"]["tracks"] == 6
    (row,) = [r for r in report["counts"]["rows"] if r["camera"] == ALL_CAMERAS]
    assert row["people"] == 6 and row["labelled"] == 6
    table = pd.read_csv(counts)
    assert table.loc[table["camera"] == "multiface", "people"].tolist() == [6]


def test_report_from_events_agrees_with_the_runs_own_counts(tmp_path):
    events, summary, counts = tmp_path / "events.jsonl", tmp_path / "summary.json", tmp_path / "counts.parquet"
    result = run_cli("--source", f"crowd={shared_file('videos', 'crowd_1080p.mp4')}", "--source",
                     str(shared_file("videos", "multiface.jpg")), "--events", str(events), "--summary", str(summary),
                     "--counts", str(counts), "--set", "output.counts_window_s=1", timeout=300)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "report"
    report = subprocess.run([sys.executable, "-m", "stream.report", str(events), "--window", "1", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert report.returncode == 0, report.stderr
    from_events = pd.read_csv(out / "counts.csv")
    from_run = pd.read_parquet(counts)
    from_summary = pd.DataFrame(json.loads(summary.read_text())["counts"]["rows"])
    summed = ["people", "labelled", "estimating", *[c for c in COLUMNS if c.startswith("age_")], "female", "male"]
    for table in (from_run, from_summary):
        for camera in ("crowd", "multiface", ALL_CAMERAS):
            mine = table.loc[table["camera"] == camera, summed].sum()
            theirs = from_events.loc[from_events["camera"] == camera, summed].sum()
            assert mine.to_dict() == theirs.to_dict(), camera
    crowd = from_events.loc[from_events["camera"] == "crowd"]
    # 27 faces walk by in 4 s; most get a label: one age group, or one their evidence leaves undecided (a range).
    assert crowd["people"].sum() >= 15 and (crowd["labelled"] + crowd["age_undecided"]).sum() >= 10
    png = (out / "counts.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["/nonexistent.jsonl"], r"error: cannot read /nonexistent.jsonl"),
        (["{bad}"], r"error: .*bad.jsonl:2: not a JSON line"),
        (["{good}", "--window", "2d"], r"error: window must be one of 1min, 15min, 1h"),
        (["{good}", "--format", "xlsx"], r"error: argument --format: invalid choice"),
    ],
)
def test_report_bad_input_exits_2_with_one_line(tmp_path, args, expected):
    (tmp_path / "bad.jsonl").write_text('{"frame": 0, "t": 0, "faces": []}\nnot json\n')
    (tmp_path / "good.jsonl").write_text('{"frame": 0, "t": 0, "faces": []}\n')
    argv = [a.format(bad=tmp_path / "bad.jsonl", good=tmp_path / "good.jsonl") for a in args]
    result = subprocess.run([sys.executable, "-m", "stream.report", *argv, "--out", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert re.search(expected, error_line(result.stderr)), result.stderr


def test_counts_output_refuses_other_extensions(tmp_path):
    result = run_cli("--source", str(shared_file("videos", "multiface.jpg")), "--counts", str(tmp_path / "c.xlsx"))
    assert result.returncode == 2
    assert "counts are written as .csv or .parquet" in error_line(result.stderr)
