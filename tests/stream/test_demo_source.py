"""The built-in demo source: a bare machine's first run (``python -m stream`` with no --source)."""

import json
import subprocess
import sys

import numpy as np

from stream.sources import open_source
from stream.sources.demo import FPS, HEIGHT, SECONDS, WIDTH
from tests.conftest import REPO


def test_demo_is_a_finite_file_like_clip_with_one_face_throughout(default_detector):
    with open_source("demo") as source:
        assert (source.kind, source.fps, source.frame_count) == ("video", FPS, int(SECONDS * FPS))
        frames = list(source)
    assert len(frames) == int(SECONDS * FPS)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[0].image.shape == (HEIGHT, WIDTH, 3)
    sizes = []
    for frame in frames[::25]:
        faces = default_detector.detect(frame.image)
        faces = faces[faces.score >= 0.5]  # what can start a track (tracker.track_activation_threshold)
        assert len(faces) == 1, f"frame {frame.index}: {len(faces)} faces"
        sizes.append(float(faces.size[0]))
    assert min(sizes) < 50 and max(sizes) > 110  # the camera comes closer and moves away again


def test_cli_without_source_runs_the_demo(tmp_path):
    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    done = subprocess.run([sys.executable, "-m", "stream", "--max-frames", "100", "--events", str(events),
                           "--summary", str(summary)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 100 and lines[0]["source"].startswith("demo")
    labelled = [f for line in lines for f in line["faces"] if f["age_group"] is not None]
    assert labelled and {f["track_id"] for f in labelled} == {1}
    result = json.loads(summary.read_text())
    assert result["totals"]["tracks"] == 1 and result["totals"]["labelled_tracks"] == 1
    assert np.isclose(sum(result["tracks"][0]["age_group_probs"]), 1.0, atol=1e-3)
