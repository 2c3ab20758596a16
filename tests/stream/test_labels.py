"""The one rule of what is shown (stream.labels): coherent years and groups, undecided shown as such.

Unit cases on hand-made fused estimates, then every registered age classifier on real faces (UTKFace stills and
real clips) through the pipeline, checking every label the overlay, the events and the summaries show.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from stream.config import LabelsConfig
from stream.labels import (
    KEEP_SHARE,
    LabelRule,
    ShownLabel,
    face_labels,
    label_text,
    shown_label,
    span_text,
    span_years,
)
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, LABEL_READY, P_FEMALE, Faces
from tests.conftest import UTKFACE, shared_file


def probs(**groups: float) -> np.ndarray:
    """An (8,) vector from ``g3=0.6`` style keywords (group index -> probability), the rest spread evenly."""
    vector = np.zeros(len(AGE_GROUPS))
    for key, value in groups.items():
        vector[int(key[1:])] = value
    rest = 1.0 - vector.sum()
    vector[vector == 0] = rest / max(int((vector == 0).sum()), 1)
    return vector


@pytest.mark.parametrize(
    ("vector", "years", "expected_range", "expected_group", "expected_years"),
    [
        (probs(g3=0.7, g4=0.2), 34.2, "31-40", "31-40", 34.2),  # decisive, years inside
        (probs(g2=0.6, g3=0.3), 33.0, "21-30", "21-30", 30.0),  # "21-30 33y" -> years clamped to 30
        (probs(g1=0.6, g2=0.3), 28.0, "11-20", "11-20", 20.0),  # "11-20 28y" -> 20
        (probs(g2=0.4, g3=0.35), 45.0, "21-40", None, 40.0),  # close neighbours -> range, years inside it
        (probs(g2=0.4, g4=0.35), 38.0, None, None, None),  # close, not neighbours -> age?, no years
        (probs(g6=0.45, g7=0.4), 90.0, "66+", None, 90.0),  # 80+ has no upper bound
        (probs(g0=0.9), -3.0, "01-10", "01-10", 0.0),
    ],
)
def test_age_rule(vector, years, expected_range, expected_group, expected_years):
    label = shown_label(vector, years, 0.1)
    assert (label.age_range, label.age_group, label.age) == (expected_range, expected_group, expected_years)
    if expected_range is not None:
        assert label.confidence == pytest.approx(sum(p for p, g in zip(vector, AGE_GROUPS, strict=True)
                                                     if g in _groups_of(expected_range)))


def _groups_of(text: str) -> list[str]:
    for first in range(len(AGE_GROUPS)):
        for last in range(first, len(AGE_GROUPS)):
            if span_text(first, last) == text:
                return list(AGE_GROUPS[first : last + 1])
    raise AssertionError(text)


@pytest.mark.parametrize(
    ("p_female", "shown_female", "previous", "expected"),
    [
        (0.93, -1, -1, "female"),
        (0.45, 1, -1, None),  # the "F at P(female) 0.45": now undecided
        (0.42, -1, -1, None),
        (0.35, 1, -1, None),  # the track book still holds F (hysteresis) but the evidence says M: never shown
        (0.30, 0, -1, "male"),
        (0.57, 1, 1, "female"),  # shown before and still half the lean on its side: kept
        (0.57, 1, -1, None),  # not shown before: needs the full lean
    ],
)
def test_gender_rule(p_female, shown_female, previous, expected):
    rule = LabelRule()
    label = rule.label(probs(g3=0.9), 35.0, p_female, shown_female=shown_female,
                       previous=None if previous < 0 else ((3, 3), previous))
    assert label.gender == expected
    assert label.p_female == pytest.approx(p_female)
    assert label.gender_undecided == (expected is None)


def test_thresholds_of_zero_give_the_old_behaviour():
    rule = LabelRule(group_min_lead=0.0, gender_min_lean=0.0)
    label = rule.label(probs(g2=0.4, g4=0.38), 33.0, 0.49, shown_group=4)
    # The held group is shown whatever the lead, the gender at P(female) >= 0.5; the years still follow the group.
    assert (label.age_group, label.gender, label.age) == ("41-55", "male", 41.0)


def test_a_shown_group_stays_while_it_leads():
    rule = LabelRule()
    close = probs(g3=0.42, g4=0.37)
    assert rule.label(close, 35.0, 0.1).age_range == "31-55"
    kept = rule.label(close, 35.0, 0.1, previous=((3, 3), 0))
    assert kept.age_group == "31-40" and KEEP_SHARE["group"] < 1
    # ...but not once the neighbour leads.
    assert rule.label(probs(g3=0.37, g4=0.42), 35.0, 0.1, shown_group=3, previous=((3, 3), 0)).age_range == "31-55"


def test_annotate_remembers_per_track_and_face_labels_reads_the_decision():
    rule = LabelRule(group_min_lead=0.1)
    faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)), np.array([7]),
                  {AGE_GROUP_PROBS: probs(g3=0.6, g4=0.3)[None], AGE_YEARS: np.array([36.0]),
                   P_FEMALE: np.array([0.9]), LABEL_READY: np.array([True])})
    assert face_labels(rule.annotate(faces))[0].age_group == "31-40"
    closer = faces.with_data(**{AGE_GROUP_PROBS: probs(g3=0.45, g4=0.41)[None]})
    annotated = rule.annotate(closer)
    assert face_labels(annotated)[0].age_group == "31-40"  # kept: shown before, still the most likely
    # A stored decision wins over the default rule (whatever rule face_labels would apply itself).
    assert face_labels(annotated, LabelRule(group_min_lead=0.5))[0].age_group == "31-40"
    fresh = LabelRule(group_min_lead=0.1).annotate(closer)
    assert face_labels(fresh)[0].age_range == "31-55"


@pytest.mark.parametrize(
    ("label", "text"),
    [
        (ShownLabel(False, 2), "#3 estimating... (2)"),
        (shown_label(probs(g3=0.87), 34.0, 0.95, n_obs=6), "#3 F 31-40 34y 87%"),
        (shown_label(probs(g2=0.41, g3=0.40), 33.0, 0.45), "#3 ?(F45%) 21-40 33y 81%"),
        (shown_label(probs(g2=0.41, g4=0.40), 33.0, 0.05), "#3 M age?"),
        (shown_label(None, None, 0.05), "#3 M"),
    ],
)
def test_label_text(label, text):
    assert label_text(label, 3) == text


def test_span_helpers():
    assert [span_text(i, i) for i in range(len(AGE_GROUPS))] == list(AGE_GROUPS)
    assert span_text(2, 3) == "21-40" and span_text(6, 7) == "66+" and span_text(0, 1) == "01-20"
    assert span_years(2, 3) == (21.0, 40.0) and span_years(7, 7)[1] == float("inf")


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"labels\.gender_min_lean must be in \[0\.0, 0\.5\]"):
        LabelRule(gender_min_lean=0.7)
    assert LabelRule(LabelsConfig(group_min_lead=0.2)).group_min_lead == 0.2


# ------------------------------------------------------------------ every registered classifier, real faces


def assert_coherent(label: ShownLabel, rule: LabelRule, where: str) -> None:
    """What one label shows agrees with itself and with its evidence."""
    if not label.ready:
        assert (label.age_range, label.age, label.gender, label.p_female) == (None, None, None, None), where
        return
    text = label_text(label)
    if label.age_range is not None:
        groups = _groups_of(label.age_range)
        low, high = span_years(AGE_GROUPS.index(groups[0]), AGE_GROUPS.index(groups[-1]))
        if label.age is not None:
            assert low <= round(label.age) <= high, where
            record_age = label.as_record()["age"]
            assert low <= round(record_age) <= high, where
            shown_years = int(re.search(r" (\d+)y", text).group(1))
            assert low <= shown_years <= high, (where, text)
        assert label.age_range in text, where
        vector = np.asarray(label.age_group_probs)
        if label.age_group is not None:
            assert label.age_group == label.age_range, where
            assert int(np.argmax(vector)) == AGE_GROUPS.index(label.age_group), where  # never against the evidence
        else:
            top_two = sorted(np.argsort(-vector)[:2].tolist())
            assert [AGE_GROUPS[i] for i in top_two] == groups, where
    elif label.age_group_probs is not None:
        assert label.age is None and "age?" in text, where
    if label.gender is not None:
        side = "female" if label.p_female >= 0.5 else "male"
        assert label.gender == side, where
        assert abs(label.p_female - 0.5) >= rule.gender_min_lean * KEEP_SHARE["gender"] - 1e-6, where
    elif label.p_female is not None:
        assert "?(F" in text, where


def _age_models() -> list[str]:
    from models.registry import names_for_task

    return names_for_task("age", "age_gender", "age_group")


@pytest.mark.parametrize("age_model", _age_models())
def test_every_classifier_shows_coherent_labels_on_real_faces(age_model, config):
    from models.fetch import find_local
    from models.registry import get_spec
    from models.training.data import list_samples, read_image
    from stream.config import replace
    from stream.pipeline import Pipeline
    from stream.sinks.events import face_records
    from stream.sources import open_source
    from stream.types import Frame

    spec = get_spec(age_model)
    if find_local(spec, config.models.local_dirs) is None:
        pytest.skip(f"{age_model} is not available on this machine ({spec.sources[0].describe()})")
    gender_model = "none" if spec.task == "age_gender" else "cydral_gender"
    run_config = replace(config, "classifier", age_model=age_model, gender_model=gender_model)
    pipeline = Pipeline(run_config)
    rule = pipeline.labels
    seen = 0
    shared_file("data", "utkface", "UTKFace")
    for path in list_samples(UTKFACE, limit=24).paths:
        faces = pipeline.process_still(Frame(0, 0.0, read_image(path), name=str(path)))
        for label in face_labels(faces):
            assert_coherent(label, rule, f"{age_model} still {path}")
            seen += label.ready
    records = []
    for clip in ("talking_woman_512.mp4", "crowd_1080p.mp4"):
        pipeline = Pipeline(run_config)
        with open_source(str(shared_file("videos", clip))) as frames:
            pipeline.set_frame_rate(frames.fps)
            for frame in frames:
                if frame.index >= 60:
                    break
                faces, ended = pipeline.process(frame)
                records += ended
                for label, record in zip(face_labels(faces), face_records(faces), strict=True):
                    assert_coherent(label, rule, f"{age_model} {clip} frame {frame.index}")
                    assert record["age"] == label.as_record()["age"] and record["gender"] == label.gender
                    seen += label.ready
        records += pipeline.finish()
    assert records
    for record in records:  # the summaries: the same rule, decided on the whole track
        if record["age_range"] is not None and record["age"] is not None:
            groups = _groups_of(record["age_range"])
            low, high = span_years(AGE_GROUPS.index(groups[0]), AGE_GROUPS.index(groups[-1]))
            assert low <= round(record["age"]) <= high, record
        if record["age_range"] is None:
            assert record["age"] is None and record["age_group"] is None, record
        if record["gender"] is not None:
            assert (record["gender"] == "female") == (record["p_female"] >= 0.5), record
    assert seen > 100, f"{age_model}: only {seen} labels checked"


def test_stills_are_decided_without_memory_and_ended_tracks_are_forgotten():
    rule = LabelRule()
    faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)), np.array([1]),
                  {AGE_GROUP_PROBS: probs(g3=0.6, g4=0.3)[None], AGE_YEARS: np.array([36.0]),
                   P_FEMALE: np.array([0.9]), LABEL_READY: np.array([True])})
    rule.annotate(faces, remember=False)
    assert rule.end(1) is None
    rule.annotate(faces)
    assert rule.end(1) == ((3, 3), 1) and rule.end(1) is None


# --------------------------------------------------------------------------------------------------------------
# Edges of the rule, one test per decision the mutation run (tests/mutation/run.py labels) showed unpinned.
# --------------------------------------------------------------------------------------------------------------


def _face(vector, *, p_female=0.9, years=30.0, ready=True, track_id=7) -> Faces:
    return Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)), np.array([track_id]),
                 {AGE_GROUP_PROBS: np.asarray(vector, np.float64)[None], AGE_YEARS: np.array([years]),
                  P_FEMALE: np.array([p_female]), LABEL_READY: np.array([ready])})


def test_a_shown_group_is_kept_while_it_leads_by_any_margin_and_a_new_one_needs_the_full_lead():
    rule = LabelRule(group_min_lead=0.1)
    barely = probs(g3=0.4, g2=0.395)  # 31-40 leads by 0.005
    assert rule.age_span(barely, previous=(3, 3)) == (3, 3)  # KEEP_SHARE["group"] = 0: kept while it leads
    assert rule.age_span(barely) == (2, 3)  # not shown before: a range
    # The full lead (0.1) decides a group not shown before, also when float32 makes 0.4 - 0.3 = 0.0999999.
    assert rule.age_span(np.array([0.05, 0.05, 0.3, 0.4, 0.05, 0.05, 0.05, 0.05], np.float32)) == (3, 3)
    assert rule.age_span(probs(g3=0.405, g2=0.3)) == (3, 3)  # a lead of 0.105 is enough
    assert rule.age_span(probs(g3=0.39, g2=0.3)) == (2, 3)  # 0.09 is not


def test_the_track_books_group_zero_is_a_shown_group():
    rule = LabelRule(group_min_lead=0.1)
    # The book still shows 01-10 while 11-20 now leads: not shown alone against the evidence, as the range.
    assert rule.age_span(probs(g1=0.6, g0=0.3), shown_group=0) == (0, 1)
    assert rule.age_span(probs(g1=0.6, g0=0.3)) == (1, 1)


def test_gender_edges():
    old = LabelRule(gender_min_lean=0.0)
    assert old.gender(0.5) == 1 and old.gender(0.52) == 1 and old.gender(0.4999) == 0
    assert old.gender(0.3, shown_female=1) == 1  # threshold 0: the track book's shown gender, as before the rule
    rule = LabelRule(gender_min_lean=0.1)
    assert rule.gender(0.55) == -1 and rule.gender(0.45) == -1  # undecided is -1
    assert rule.gender(0.552, previous=1) == 1  # shown before: kept while it leans half the threshold (0.05)
    assert rule.gender(0.548, previous=1) == -1
    assert rule.gender(0.552) == -1  # not shown before: needs the full 0.1
    assert KEEP_SHARE["gender"] == 0.5


def test_span_years_bounds():
    assert span_years(2, 2) == (21.0, 30.0) and span_years(0, 0) == (0.0, 10.0)
    assert span_years(4, 5) == (41.0, 65.0) and span_years(6, 7) == (66.0, float("inf"))


def test_undecided_properties():
    assert shown_label(probs(g2=0.41, g4=0.40), 33.0, 0.5).age_undecided  # age?
    assert not shown_label(probs(g2=0.41, g3=0.40), 33.0, 0.5).age_undecided  # a range is a decision
    assert not shown_label(None, 33.0, 0.5).age_undecided and not ShownLabel(False, 2).age_undecided
    assert shown_label(None, None, 0.52).gender_undecided and not shown_label(None, None, 0.9).gender_undecided
    assert not shown_label(probs(g3=0.8), 33.0, None).gender_undecided and not ShownLabel(False).gender_undecided


@pytest.mark.parametrize("label", [
    shown_label(probs(g3=0.87), 34.0, 0.95, n_obs=6),  # one group
    shown_label(probs(g2=0.41, g3=0.40), 33.0, 0.45, n_obs=5),  # a range, gender undecided
    shown_label(probs(g2=0.41, g4=0.40), 33.0, 0.05, n_obs=5),  # age?
    shown_label(None, None, 0.05, n_obs=5),  # gender model only
    shown_label(probs(g3=0.87), 34.0, None, n_obs=5),  # age model only
    ShownLabel(False, 3),
])
def test_a_record_carries_its_label_back(label):
    back = ShownLabel.from_record(label.as_record())
    assert (back.ready, back.n_obs, back.age_group, back.age_range, back.gender) == (
        label.ready, label.n_obs, label.age_group, label.age_range, label.gender)
    for field in ("confidence", "age", "p_female"):
        mine, theirs = getattr(back, field), getattr(label, field)
        assert (mine is None) == (theirs is None) and (mine is None or mine == pytest.approx(theirs, abs=1e-3))
    assert label_text(back, 4) == label_text(label, 4)


def test_a_record_with_an_unknown_age_span_is_refused():
    record = shown_label(probs(g3=0.87), 34.0, 0.95).as_record()
    with pytest.raises(ValueError, match="not an age span"):
        ShownLabel.from_record({**record, "age_range": "30-35"})


@pytest.mark.parametrize(("vector", "p_female", "shown"), [
    (probs(g0=0.9), 0.9, ("01-10", "01-10", "female")),  # group 0 stored as (0, 0)
    (probs(g2=0.41, g3=0.40), 0.9, (None, "21-40", "female")),  # a stored range
    (probs(g2=0.41, g4=0.40), 0.55, (None, None, None)),  # age? and gender undecided stored as none
])
def test_what_annotate_stores_is_what_face_labels_shows(vector, p_female, shown):
    # face_labels with a rule that would decide otherwise: only the stored decision can give the expected label.
    annotated = LabelRule().annotate(_face(vector, p_female=p_female))
    label = face_labels(annotated, LabelRule(group_min_lead=0.0, gender_min_lean=0.0))[0]
    assert (label.age_group, label.age_range, label.gender) == shown


def test_a_ready_label_without_evidence_is_still_estimating():
    assert label_text(ShownLabel(True, 3), 5) == "#5 estimating... (3)"
