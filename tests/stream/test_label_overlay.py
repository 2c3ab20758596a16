"""The one label rule (stream.labels) and the overlay that draws it (stream.annotate), through their public API.

The overlay's text is ``#id F/M group years confidence`` once a track has its label and ``#id estimating... (n)``
before; the label box is coloured by the gender shown (grey while there is none). The pixel checks read the
drawn frame: the colour of the box and of the label's background, and the width of that background, which is the
width of the text ``label_text`` returns (so a different text, or none, is seen).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.annotate import Annotator, label_color
from stream.labels import FEMALE, MALE, ShownLabel, face_labels, label_text, shown_label
from stream.types import (
    AGE_GROUP_PROBS,
    AGE_GROUPS,
    AGE_YEARS,
    LABEL_READY,
    N_OBS,
    P_FEMALE,
    SHOWN_FEMALE,
    SHOWN_GROUP,
    Faces,
)

FEMALE_BGR, MALE_BGR, UNKNOWN_BGR = (180, 90, 235), (235, 160, 40), (170, 170, 170)  # documented in annotate.py


def probs_for(group: int, confidence: float) -> np.ndarray:
    probs = np.full(len(AGE_GROUPS), (1 - confidence) / (len(AGE_GROUPS) - 1))
    probs[group] = confidence
    return probs


# ---------------------------------------------------------------------------------------------------------------
# shown_label: the rule
# ---------------------------------------------------------------------------------------------------------------


def test_not_ready_shows_nothing_but_the_observation_count():
    label = shown_label(probs_for(3, 0.9), 34.0, 0.9, ready=False, n_obs=2)
    assert label == ShownLabel(False, 2)
    assert label.as_record() == {"age_group": None, "age_range": None, "age_group_probs": None, "age": None,
                                 "gender": None, "p_female": None, "n_obs": 2}


def test_ready_shows_the_most_likely_group_and_gender_from_p_female():
    label = shown_label(probs_for(3, 0.87), 34.4, 0.8, n_obs=5)
    assert (label.ready, label.age_group, label.gender, label.n_obs) == (True, "31-40", FEMALE, 5)
    assert label.confidence == pytest.approx(0.87)
    assert label.age == pytest.approx(34.4) and label.p_female == pytest.approx(0.8)
    assert label.age_group_probs == pytest.approx(tuple(probs_for(3, 0.87)))


# A gender is shown only when P(female) leans labels.gender_min_lean (0.1) away from 0.5; else none (shown as ``?``).
@pytest.mark.parametrize(("p_female", "gender"), [(0.6, FEMALE), (0.4, MALE), (0.5, None), (0.5999, None),
                                                  (0.4001, None), (0.0, MALE), (1.0, FEMALE)])
def test_gender_is_shown_only_past_the_minimum_lean(p_female, gender):
    assert shown_label(probs_for(2, 0.6), 25.0, p_female).gender == gender


def test_the_track_books_shown_group_and_gender_hold_only_while_the_evidence_agrees():
    """Hysteresis lives in the track book: what it holds is shown while it still leads (with that group's probability
    as the confidence); a group or gender the evidence has left is not shown against it."""
    probs = probs_for(3, 0.6)
    label = shown_label(probs, 35.0, 0.2, shown_group=3, shown_female=0)
    assert (label.age_group, label.gender) == ("31-40", MALE)
    assert label.confidence == pytest.approx(probs[3])
    contradicted = shown_label(probs_for(4, 0.6), 45.0, 0.9, shown_group=3, shown_female=0)
    assert contradicted.age_group != "31-40" and contradicted.gender is None


@pytest.mark.parametrize("bad", [np.zeros(8), np.full(8, np.nan), np.r_[np.full(7, 0.1), np.nan],
                                 np.r_[np.full(7, 0.1), np.inf]])
def test_no_group_without_finite_positive_probabilities(bad):
    label = shown_label(bad, 30.0, 0.7)
    assert label.ready and label.age_group is None and label.confidence is None and label.age_group_probs is None
    assert label.gender == FEMALE  # gender does not depend on the age model


def test_shown_group_zero_is_a_group_and_labels_are_immutable():
    label = shown_label(probs_for(0, 0.6), 8.0, 0.2, shown_group=0)
    assert label.age_group == "01-10"
    with pytest.raises(AttributeError):
        label.age_group = "21-30"  # type: ignore[misc]


def test_face_labels_without_the_track_books_choice_take_the_argmax():
    faces = labelled_faces()
    data = {k: v for k, v in faces.data.items() if k not in (SHOWN_GROUP, SHOWN_FEMALE)}
    bare = Faces(xyxy=faces.xyxy, score=faces.score, landmarks=faces.landmarks, track_id=faces.track_id)
    labels = face_labels(bare.with_data(**data))
    assert [(lb.age_group, lb.gender) for lb in labels] == [("31-40", FEMALE), ("21-30", MALE), (None, None)]


def test_non_finite_values_become_none_for_json():
    label = shown_label(None, np.float32("nan"), np.float32("inf"))
    assert (label.age, label.p_female, label.gender, label.age_group) == (None, None, None, None)


def test_wrong_probability_shape_is_refused():
    with pytest.raises(ValueError, match=r"probs must have shape \(8,\), got \(7,\)"):
        shown_label(np.ones(7) / 7, 30.0, 0.5)


def test_record_rounds_for_json():
    label = shown_label(probs_for(3, 0.876543), 34.456, 0.812345, n_obs=4)
    record = label.as_record()
    assert record["age"] == 34.5 and record["p_female"] == 0.8123 and record["n_obs"] == 4
    assert record["age_group"] == "31-40" and record["gender"] == FEMALE
    assert record["age_group_probs"][3] == 0.8765 and len(record["age_group_probs"]) == 8


# ---------------------------------------------------------------------------------------------------------------
# face_labels: the rule applied to each row of Faces
# ---------------------------------------------------------------------------------------------------------------


def labelled_faces() -> Faces:
    """Three tracked faces: #3 a woman in her thirties, #4 a man in his twenties, #5 not ready (2 observations)."""
    faces = Faces(xyxy=np.array([[40, 120, 140, 240], [300, 150, 380, 250], [420, 10, 500, 100]], np.float32),
                  score=np.ones(3), landmarks=np.zeros((3, 5, 2)), track_id=np.array([3, 4, 5]))
    probs = np.stack([probs_for(3, 0.87), probs_for(2, 0.64), np.full(8, np.nan)]).astype(np.float32)
    return faces.with_data(**{
        AGE_GROUP_PROBS: probs, AGE_YEARS: np.array([34.2, 26.6, np.nan], np.float32),
        P_FEMALE: np.array([0.93, 0.08, np.nan], np.float32), N_OBS: np.array([5, 9, 2], np.int32),
        LABEL_READY: np.array([True, True, False]), SHOWN_GROUP: np.array([3, 2, -1], np.int32),
        SHOWN_FEMALE: np.array([1, 0, -1], np.int8)})


def test_face_labels_read_each_row():
    labels = face_labels(labelled_faces())
    assert [(lb.ready, lb.age_group, lb.gender, lb.n_obs) for lb in labels] == [
        (True, "31-40", FEMALE, 5), (True, "21-30", MALE, 9), (False, None, None, 2)]


def test_face_labels_without_a_ready_array_are_not_gated_and_absent_arrays_are_none():
    faces = Faces(xyxy=np.array([[0, 0, 10, 10]], np.float32), score=np.ones(1), landmarks=np.zeros((1, 5, 2)))
    (label,) = face_labels(faces.with_data(**{P_FEMALE: np.array([0.2], np.float32)}))
    assert label.ready and label.gender == MALE and label.age_group is None and label.n_obs is None


def test_face_labels_refuse_probabilities_of_the_wrong_shape():
    faces = labelled_faces()
    with pytest.raises(ValueError, match=r"must have shape \(3, 8\), got \(3, 7\)"):
        face_labels(faces.with_data(**{AGE_GROUP_PROBS: np.ones((3, 7), np.float32)}))


# ---------------------------------------------------------------------------------------------------------------
# label_text: the overlay's words
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "track_id", "text"),
    [
        (shown_label(probs_for(3, 0.87), 34.2, 0.93, n_obs=5), 3, "#3 F 31-40 34y 87%"),
        (shown_label(probs_for(2, 0.641), 26.6, 0.08, n_obs=9), 12, "#12 M 21-30 27y 64%"),
        (shown_label(probs_for(7, 0.5), None, None), 4, "#4 80+ 50%"),  # no age or gender model
        (shown_label(probs_for(0, 0.995), 5.0, 0.6), None, "F 01-10 5y 100%"),
        (shown_label(probs_for(1, 0.7), 15.0, 0.6), -1, "F 11-20 15y 70%"),  # no track id: no prefix
        (ShownLabel(False, 2), 3, "#3 estimating... (2)"),
        (ShownLabel(False, 0), 3, "#3 estimating..."),
        (ShownLabel(False, None), None, "estimating..."),
        (shown_label(np.zeros(8), 30.0, 0.9, n_obs=4), 8, "#8 F 30y"),  # no usable age probabilities: gender, years
    ],
)
def test_label_text(label, track_id, text):
    assert label_text(label, track_id) == text


# ---------------------------------------------------------------------------------------------------------------
# Annotator: the pixels
# ---------------------------------------------------------------------------------------------------------------


def _run_length(row: np.ndarray, color: tuple[int, int, int]) -> int:
    """How many pixels from the start of ``row`` have exactly ``color``."""
    match = (row == np.array(color, np.uint8)).all(axis=1)
    return int(np.argmin(match)) if not match.all() else len(match)


@pytest.mark.parametrize("height", [480, 1080])
def test_overlay_colours_boxes_by_gender_and_sizes_the_label_to_its_text(height):
    faces = labelled_faces()
    faces.xyxy[:] *= height / 480
    annotator = Annotator(draw_landmarks=False, show_stats=False)
    image = np.full((height, height * 4 // 3, 3), 60, np.uint8)
    out = annotator.draw(image, faces)
    assert out is not image and (image == 60).all()  # a copy unless in_place
    scale = max(0.4, height / 1400)
    thick = max(1, round(scale * 2))
    expected = {3: ("#3 F 31-40 34y 87%", FEMALE_BGR), 4: ("#4 M 21-30 27y 64%", MALE_BGR),
                5: ("#5 estimating... (2)", UNKNOWN_BGR)}
    for row, track_id in enumerate(faces.track_id.tolist()):
        text, color = expected[track_id]
        x1, y1, x2, y2 = (int(round(v)) for v in faces.xyxy[row])
        assert tuple(out[(y1 + y2) // 2, x1]) == color  # the box's left edge
        assert tuple(out[(y1 + y2) // 2, x2]) == color  # and its right edge
        assert tuple(out[(y1 + y2) // 2, (x1 + x2) // 2]) == (60, 60, 60)  # not filled
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        # The label sits above the box when there is room, else below it (these faces' labels do not collide); its
        # background's top row is clear of the glyphs.
        label_h = th + base + base // 2
        top = y1 - 4 - label_h if y1 - 4 - label_h >= 0 else y2 + 4
        assert _run_length(out[top, x1:], color) == tw + 5, f"#{track_id}'s label is not as wide as {text!r}"
        # The text is drawn in near-black on that background.
        label_box = out[top: top + label_h, x1: x1 + tw + 4]
        assert (label_box.max(axis=2) < 60).sum() > tw, "no text drawn in the label"


def test_labels_of_faces_side_by_side_do_not_cover_each_other():
    """Two faces whose label spots overlap (a crowd): the second label is stacked above the first, both whole."""
    faces = labelled_faces()[:2]
    faces.xyxy[:] = [[200, 200, 260, 270], [230, 210, 290, 280]]
    out = Annotator(draw_landmarks=False, show_stats=False).draw(np.full((480, 640, 3), 60, np.uint8), faces)
    scale = 0.4
    thick = max(1, round(scale * 2))
    tops = []
    for row, (text, color) in enumerate([("#3 F 31-40 34y 87%", FEMALE_BGR), ("#4 M 21-30 27y 64%", MALE_BGR)]):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        label_h = th + base + base // 2
        x1 = int(faces.xyxy[row][0])
        # The background's top row of each label, found in the label's column above its box.
        column = out[: int(faces.xyxy[row][1]), x1 + 1]
        rows = np.flatnonzero((column == np.array(color, np.uint8)).all(axis=1))
        assert len(rows) >= label_h, f"label {text!r} is not whole"
        tops.append(int(rows[0]))
        assert _run_length(out[tops[-1], x1:], color) >= tw + 4
    assert tops[1] + label_h <= tops[0] or tops[0] + label_h <= tops[1], "the labels overlap"


def test_overlay_stats_corner_and_landmarks():
    faces = labelled_faces()
    faces.landmarks[0] = [[70, 160], [110, 160], [90, 185], [75, 210], [105, 210]]
    image = np.full((480, 640, 3), 60, np.uint8)
    plain = Annotator(draw_landmarks=False, show_stats=False).draw(image, faces)
    full = Annotator(draw_landmarks=True, show_stats=True).draw(image, faces, fps=24.0)
    assert (plain[:5, :5] == 60).all() and (full[:5, :5] == 0).all()  # the black stats panel, top left
    for x, y in faces.landmarks[0].astype(int):
        assert tuple(plain[y, x]) == (60, 60, 60) and tuple(full[y, x]) == FEMALE_BGR
    same = Annotator(draw_landmarks=False, show_stats=False).draw(image, faces, in_place=True)
    assert same is image and (image == plain).all()


def test_label_color_rule():
    assert label_color(shown_label(probs_for(3, 0.9), 30.0, 0.9)) == FEMALE_BGR
    assert label_color(shown_label(probs_for(3, 0.9), 30.0, 0.1)) == MALE_BGR
    assert label_color(ShownLabel(False, 4)) == UNKNOWN_BGR
    assert label_color(shown_label(probs_for(3, 0.9), 30.0, None)) == UNKNOWN_BGR  # no gender model
    assert label_color(shown_label(np.zeros(8), 30.0, 0.9)) == FEMALE_BGR  # the gender shown, with or without a group
    assert label_color(shown_label(probs_for(3, 0.9), 30.0, 0.55)) == UNKNOWN_BGR  # gender undecided
