"""The whole product on real clips with the default models, through the CLI entry point.

These are the acceptance tests of the stream spine: playable output with the input's frame
count, events for every frame, stable track ids, and the right final gender per clip.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stream.__main__ import main
from tests.conftest import shared_file

pytestmark = pytest.mark.slow


def probe(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Decoded frame count, average fps and size of a video file (decodes every frame)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, float(stream.average_rate), (stream.codec_context.width, stream.codec_context.height)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_clip(tmp_path_factory, clip: str, *extra: str):
    out = tmp_path_factory.mktemp(clip.split(".")[0])
    source = shared_file("videos", clip)
    code = main(["--source", str(source), "--output", str(out / "out.mp4"), "--events", str(out / "events.jsonl"),
                 "--summary", str(out / "summary.json"), *extra])
    assert code == 0
    return source, out


@pytest.fixture(scope="module")
def talking_man(tmp_path_factory):
    return run_clip(tmp_path_factory, "talking_man_512.mp4")


@pytest.fixture(scope="module")
def talking_woman(tmp_path_factory):
    return run_clip(tmp_path_factory, "talking_woman_512.mp4")


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    return run_clip(tmp_path_factory, "crowd_1080p.mp4")


@pytest.mark.parametrize(("clip", "gender"), [("talking_man", "male"), ("talking_woman", "female")])
def test_single_person_clip(request, clip, gender):
    source, out = request.getfixturevalue(clip)
    in_frames, in_fps, in_size = probe(source)
    out_frames, out_fps, out_size = probe(out / "out.mp4")
    assert (out_frames, out_size) == (in_frames, in_size)
    assert out_fps == pytest.approx(in_fps, rel=1e-3)
    with av.open(str(out / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"

    events = read_events(out / "events.jsonl")
    assert [e["frame"] for e in events] == list(range(in_frames))
    with_face = [e for e in events if e["faces"]]
    ids = Counter(f["track_id"] for e in with_face for f in e["faces"])
    dominant, frames_with_dominant = ids.most_common(1)[0]
    coverage = frames_with_dominant / len(with_face)
    assert coverage >= 0.95, f"track {dominant} covers {coverage:.1%} of the frames with a face: {ids}"

    final = [f for f in events[-1]["faces"] if f["track_id"] == dominant][0]
    assert final["gender"] == gender
    assert final["age_group"] is not None and len(final["age_group_probs"]) == 8
    assert abs(sum(final["age_group_probs"]) - 1) < 1e-3
    assert 15 <= final["age"] <= 70 and final["n_obs"] >= 3
    # Labels appear only once a track has enough observations.
    for event in events:
        for face in event["faces"]:
            if face["n_obs"] < 3:
                assert face["age_group"] is None and face["gender"] is None

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == in_frames and summary["totals"]["by_gender"][gender] >= 1


def test_crowd_tracks_many_faces_without_id_collisions(crowd):
    source, out = crowd
    events = read_events(out / "events.jsonl")
    assert len(events) == probe(source)[0]
    assert len(events[52]["faces"]) >= 5
    for event in events:
        ids = [f["track_id"] for f in event["faces"]]
        assert len(ids) == len(set(ids)), f"frame {event['frame']}: an id is used twice: {ids}"
    # An id must follow one face: from one frame to the next its box centre moves less than its size.
    last: dict[int, tuple[int, np.ndarray]] = {}
    for event in events:
        for face in event["faces"]:
            box = np.array(face["box_xyxy"])
            centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
            previous = last.get(face["track_id"])
            if previous is not None and previous[0] == event["frame"] - 1:
                assert np.linalg.norm(centre - previous[1]) < size.max(), (event["frame"], face)
            last[face["track_id"]] = (event["frame"], centre)
    labelled = {f["track_id"] for e in events for f in e["faces"] if f["age_group"] is not None}
    assert len(labelled) >= 5


def test_image_mode_multiface(tmp_path):
    source = shared_file("videos", "multiface.jpg")
    code = main(["--source", str(source), "--output", str(tmp_path / "annotated.jpg"),
                 "--events", str(tmp_path / "events.jsonl")])
    assert code == 0
    image = cv2.imread(str(tmp_path / "annotated.jpg"))
    assert image is not None and image.shape == cv2.imread(str(source)).shape
    (event,) = read_events(tmp_path / "events.jsonl")
    assert len(event["faces"]) == 6
    assert all(f["age_group"] is not None and f["gender"] in ("male", "female") for f in event["faces"])
    assert sorted(f["track_id"] for f in event["faces"]) == [1, 2, 3, 4, 5, 6]


def test_folder_of_images_with_downscale(tmp_path):
    source = cv2.imread(str(shared_file("videos", "multiface.jpg")))
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), source)
    cv2.imwrite(str(folder / "b.png"), cv2.resize(source, None, fx=2.4, fy=2.4))  # 1512 px tall: downscaled
    code = main(["--source", str(folder), "--output", str(tmp_path / "out"), "--events", str(tmp_path / "e.jsonl")])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "b.png"]
    assert cv2.imread(str(tmp_path / "out" / "b.png")).shape[0] == 1080
    events = read_events(tmp_path / "e.jsonl")
    assert [len(e["faces"]) for e in events] == [6, 6]


def test_detection_interval_keeps_tracks_and_labels(tmp_path_factory):
    # detector.interval=2: detection on every third frame, the tracker's motion model in between.
    source, out = run_clip(tmp_path_factory, "talking_man_512.mp4", "--set", "detector.interval=2")
    events = read_events(out / "events.jsonl")
    assert len(events) == probe(source)[0] == probe(out / "out.mp4")[0]
    ids = Counter(f["track_id"] for e in events for f in e["faces"])
    assert ids.most_common(1)[0][1] >= 0.95 * sum(1 for e in events if e["faces"])
    assert events[-1]["faces"][0]["gender"] == "male"


def test_auto_detection_interval_follows_the_source_frame_rate(config, default_detector, default_classifiers):
    from stream.pipeline import Pipeline

    pipeline = Pipeline(config, detector=default_detector, classifiers=default_classifiers)
    assert config.detector.interval == "auto" and pipeline.detection_interval == 0  # frame rate unknown yet
    pipeline.set_frame_rate(30.0)
    assert pipeline.detection_interval == 1
    pipeline.set_frame_rate(12.0)
    assert pipeline.detection_interval == 0
