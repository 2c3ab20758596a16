"""The detector benchmark runs end to end on a tiny input and writes a complete report."""

import json

import numpy as np
import pytest

from bench import detectors
from stream.types import Faces
from tests.conftest import shared_file


def test_quick_run_writes_every_detector_and_size(tmp_path, capsys):
    shared_file("videos", "crowd_1080p.mp4")
    shared_file("data", "utkface", "UTKFace")
    out = tmp_path / "report.json"
    assert detectors.main(["--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    present, _ = detectors.available_detectors()
    assert set(report["detectors"]) | set(report["skipped"]) >= set(present)
    assert report["detectors"], "no detector could be benchmarked"
    for name, result in report["detectors"].items():
        assert set(result["ms"]) == {"640x360", "1920x1080"}
        assert all(ms >= 0 for ms in result["ms"].values()), name
        for recall in result["recall"].values():
            assert set(recall) == {str(s) for s in detectors.BUCKETS}
            assert all(0.0 <= r <= 1.0 for r in recall.values()), name
        for fp in result["fp_per_frame"].values():
            assert all(v >= 0 for v in fp.values()), name
    assert "R16" in capsys.readouterr().out


def test_unknown_detector_is_an_error(capsys):
    assert detectors.main(["--quick", "--detectors", "nope"]) == 2
    assert "unknown nope" in capsys.readouterr().err


def _faces(xyxy, score):
    n = len(score)
    return Faces(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), score=score, landmarks=np.zeros((n, 5, 2)))


@pytest.mark.parametrize(
    ("xyxy", "score", "min_score", "hits", "unmatched"),
    [
        ([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], 0.5, [True, False], 1),  # one hit, one FP
        ([[0, 0, 10, 10], [1, 1, 10, 10]], [0.9, 0.8], 0.5, [True, False], 1),  # duplicate is an FP
        ([[0, 0, 10, 10]], [0.4], 0.5, [False, False], 0),  # below the threshold: ignored
        ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.6, 0.9], 0.5, [True, True], 0),
        ([], [], 0.3, [False, False], 0),
    ],
)
def test_match_table(xyxy, score, min_score, hits, unmatched):
    gt = np.asarray([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    hit, fp = detectors.match(_faces(xyxy, np.asarray(score, np.float32)), gt, min_score)
    assert hit.tolist() == hits and fp == unmatched
