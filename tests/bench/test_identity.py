"""bench.identity on the short script of real clips: no track crosses people, and people are counted as people."""

from __future__ import annotations

import pytest

from bench import identity
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def report(config):
    from models.fetch import ModelError, model_path

    shared_file("videos", identity.CLIPS[0])
    try:
        model_path(config.identity.embedding_model, download=False)
    except ModelError as error:
        pytest.skip(f"the face embedding is not made yet ({error})")
    return identity.evaluate(config, scale=0.4)


def test_no_track_or_person_spans_two_people(report):
    assert report["tracks_spanning_two_people"] == 0
    assert report["person_ids_spanning_two_people"] == 0


def test_people_counted_are_the_true_people(report):
    assert report["people_counted"] == report["true_people"] == 5
    assert report["merged_tracks"] > 0  # returns were folded into people, not counted again
    assert report["faces_where_nobody_is"] == 0


def test_every_cut_of_the_script_is_seen(report):
    assert report["cuts_seen"] == report["cuts_true"]


def test_returns_are_scored(report):
    kinds = {item["after"] for item in report["returns"]}
    assert kinds == {"occlusion", "cut to black", "other people"}
    assert report["reidentification_rate"] == pytest.approx(1.0)


def test_stream_places_every_face_at_the_same_spot(default_detector):
    import numpy as np

    folder = shared_file("videos", identity.CLIPS[0]).parent
    segments, frames, total = identity.build_stream(folder, default_detector, scale=0.4)
    images = list(frames)
    assert sum(s.frames for s in segments) == total == len(images) and images[0].shape == (540, 960, 3)
    boxes = []
    for segment in segments:
        if segment.kind == "face":
            faces = default_detector.detect(images[segment.start])
            boxes.append(faces.xyxy[int(np.argmax(faces.score))])
        elif segment.kind == "black":
            assert not images[segment.start].any()
    boxes = np.array(boxes)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    # Every person's face near the same spot (people move while they talk): their boxes overlap at every cut.
    assert np.abs(centre - np.array(identity.FACE_CENTRE)).max() < 0.35 * identity.FACE_HEIGHT
    from stream.tracking import iou_xyxy

    assert iou_xyxy(boxes, boxes).min() > 0.3
