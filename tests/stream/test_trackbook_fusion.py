"""TrackBook rules stated in its docstring and config, beyond tests/stream/test_trackbook.py: the label appears at
exactly ``min_observations`` observations, and ``fusion: geometric`` is the renormalised weighted geometric mean
(the product of experts, floored at 1e-4 per group so one near-zero cannot veto a group for good)."""

from __future__ import annotations

import numpy as np
import pytest

from stream.config import load_config, replace
from stream.trackbook import TrackBook
from stream.types import AGE_GROUP_PROBS, AGE_YEARS, LABEL_READY, N_OBS, P_FEMALE, SHOWN_GROUP, Faces


def face(track_id: int = 1) -> Faces:
    return Faces(xyxy=np.array([[0, 0, 50, 50]], np.float32), score=np.ones(1), landmarks=np.zeros((1, 5, 2)),
                 track_id=np.array([track_id]))


def observation(probs, p_female: float = 0.8, age: float = 30.0) -> dict[str, np.ndarray]:
    return {AGE_GROUP_PROBS: np.asarray(probs, np.float32)[None], AGE_YEARS: np.array([age], np.float32),
            P_FEMALE: np.array([p_female], np.float32)}


def peaked(group: int, confidence: float) -> np.ndarray:
    probs = np.full(8, (1 - confidence) / 7)
    probs[group] = confidence
    return probs


@pytest.mark.parametrize("min_observations", [1, 2, 3, 5])
def test_label_appears_exactly_at_min_observations(min_observations):
    book = TrackBook(min_observations=min_observations, max_observations=8)
    ready = []
    for frame in range(min_observations + 2):
        book.add(face(), observation(peaked(3, 0.8)), frame)
        out = book.annotate(face())
        ready.append(bool(out.data[LABEL_READY][0]))
        assert out.data[N_OBS][0] == frame + 1
        assert (out.data[SHOWN_GROUP][0] == 3) == ready[-1]
        assert np.isfinite(out.data[P_FEMALE][0]) == ready[-1]
    assert ready == [False] * (min_observations - 1) + [True] * 3


def test_geometric_fusion_is_the_renormalised_weighted_geometric_mean():
    observations = [peaked(3, 0.6), peaked(3, 0.9), peaked(2, 0.5)]
    weights = np.array([1.0, 3.0, 0.5])
    book = TrackBook(min_observations=1, fusion="geometric")
    mean_book = TrackBook(min_observations=1, fusion="mean")
    for frame, (probs, weight) in enumerate(zip(observations, weights)):
        book.add(face(), observation(probs), frame, weights=np.array([weight]))
        mean_book.add(face(), observation(probs), frame, weights=np.array([weight]))
    logs = np.log(np.stack(observations))
    expected = np.exp((logs * weights[:, None]).sum(0) / weights.sum())
    expected /= expected.sum()
    fused = book.annotate(face()).data[AGE_GROUP_PROBS][0]
    np.testing.assert_allclose(fused, expected, rtol=1e-5)
    mean = mean_book.annotate(face()).data[AGE_GROUP_PROBS][0]
    np.testing.assert_allclose(mean, (np.stack(observations) * weights[:, None]).sum(0) / weights.sum(), rtol=1e-5)
    assert fused[3] > mean[3]  # agreeing evidence sharpens the product of experts more than the mean
    # Age and gender are fused by the weighted mean either way.
    assert book.annotate(face()).data[P_FEMALE][0] == pytest.approx(0.8)


def test_geometric_fusion_floors_a_zero_so_one_frame_cannot_veto_a_group():
    book = TrackBook(min_observations=1, fusion="geometric", switch_margin=0.0, switch_confidence=0.0)
    vetoing = peaked(2, 0.99)
    vetoing[3] = 0.0
    vetoing /= vetoing.sum()
    for frame in range(6):
        book.add(face(), observation(peaked(3, 0.9)), frame)
    book.add(face(), observation(vetoing), 6)
    fused = book.annotate(face()).data[AGE_GROUP_PROBS][0]
    logs = np.log(np.maximum(np.stack([peaked(3, 0.9)] * 6 + [vetoing]), 1e-4))
    expected = np.exp(logs.mean(0))
    np.testing.assert_allclose(fused, expected / expected.sum(), rtol=1e-5)
    assert fused.argmax() == 3 and book.annotate(face()).data[SHOWN_GROUP][0] == 3


def test_fusion_is_chosen_in_the_trackbook_section():
    config = load_config()
    assert config.trackbook.fusion == "mean"
    assert TrackBook(replace(config, "trackbook", fusion="geometric").trackbook).fusion == "geometric"
    with pytest.raises(ValueError, match="fusion"):
        replace(config, "trackbook", fusion="median")


def test_track_life_fields():
    """TrackEstimate's documented frame fields: seen is not classified; a classification is also a sighting."""
    book = TrackBook(min_observations=2, forget_after_frames=10)
    book.observe_presence(face(4), 3)
    track = book.tracks[4]
    assert (track.first_frame, track.last_seen_frame, track.last_classified_frame, track.n_obs) == (3, 3, -1, 0)
    assert (track.shown_group, track.shown_female) == (-1, -1)
    book.add(face(4), observation(peaked(2, 0.8)), 20)
    assert (track.first_frame, track.last_seen_frame, track.last_classified_frame, track.n_obs) == (3, 20, 20, 1)
    assert [t for t, _ in book.prune(30)] == []  # seen at 20 (by add alone): not stale at 30
    assert [t for t, _ in book.prune(31)] == [4]


def test_first_label_takes_the_evidence_as_it_is():
    """No hysteresis before there is a label: the first gender and group are what the fused evidence says."""
    book = TrackBook(min_observations=1, gender_margin=0.3, switch_confidence=2.0)
    book.add(face(), observation(peaked(6, 0.7), p_female=0.1), 0)
    out = book.annotate(face())
    assert out.data["shown_female"][0] == 0 and out.data[SHOWN_GROUP][0] == 6


def test_switch_after_counts_from_the_first_challenger_after_the_label():
    book = TrackBook(min_observations=1, max_observations=1, switch_margin=0.0, switch_after=3, switch_confidence=0.0)
    shown = []
    for frame, group in enumerate([3, 4, 4, 4]):
        book.add(face(), observation(peaked(group, 0.9)), frame)
        shown.append(int(book.annotate(face()).data[SHOWN_GROUP][0]))
    assert shown == [3, 3, 3, 4]


def test_values_a_model_did_not_give_are_left_out_of_the_fusion():
    """An observation without P(female) (no gender model that frame) does not pull the fused value; a track whose
    observations never had an age stays without one (NaN, not 0)."""
    book = TrackBook(min_observations=1)
    book.add(face(), {AGE_GROUP_PROBS: peaked(3, 0.8)[None].astype(np.float32),
                      P_FEMALE: np.array([0.9], np.float32)}, 0)
    book.add(face(), {AGE_GROUP_PROBS: peaked(3, 0.6)[None].astype(np.float32)}, 1)
    out = book.annotate(face())
    assert out.data[P_FEMALE][0] == pytest.approx(0.9)
    assert np.isnan(out.data[AGE_YEARS][0])
    np.testing.assert_allclose(out.data[AGE_GROUP_PROBS][0], (peaked(3, 0.8) + peaked(3, 0.6)) / 2, rtol=1e-6)


@pytest.mark.parametrize("p_female", [0.5, 0.52])
def test_first_gender_is_female_from_one_half(p_female):
    book = TrackBook(min_observations=1)
    book.add(face(), observation(peaked(3, 0.8), p_female=p_female), 0)
    assert book.annotate(face()).data["shown_female"][0] == 1


def test_the_youngest_group_keeps_its_label_like_any_other():
    """Group index 0 (01-10) is a label, not "no label": hysteresis holds it against a small lead."""
    book = TrackBook(min_observations=1, switch_margin=0.2, switch_confidence=0.0)
    book.add(face(), observation(peaked(0, 0.6)), 0)
    book.add(face(), observation(peaked(1, 0.7)), 1)  # fused: group 1 leads group 0 by less than the margin
    assert book.annotate(face()).data[SHOWN_GROUP][0] == 0


def test_after_a_switch_the_next_challenger_needs_switch_after_observations_again():
    book = TrackBook(min_observations=1, max_observations=1, switch_margin=0.0, switch_after=3, switch_confidence=0.0)
    shown = []
    for frame, group in enumerate([3, 4, 4, 4, 5, 5, 5]):
        book.add(face(), observation(peaked(group, 0.9)), frame)
        shown.append(int(book.annotate(face()).data[SHOWN_GROUP][0]))
    assert shown == [3, 3, 3, 4, 4, 4, 5]


def test_unknown_tracks_show_no_group_and_no_gender():
    out = TrackBook().annotate(face(99))
    assert out.data[SHOWN_GROUP][0] == -1 and out.data["shown_female"][0] == -1 and not out.data[LABEL_READY][0]


def _significant(values: np.ndarray, weights: np.ndarray, lead: float, z: float) -> bool:
    """The docstring's test: the lead beats z standard errors, the spread of the per-observation leads over the
    square root of their effective count (sum w)^2 / sum w^2; one observation has no spread, so is never enough."""
    if len(values) < 2:
        return False
    mean = np.average(values, weights=weights)
    spread = np.sqrt(np.average((values - mean) ** 2, weights=weights))
    n_eff = weights.sum() ** 2 / (weights**2).sum()
    return abs(lead) > z * spread / np.sqrt(n_eff)


@pytest.mark.parametrize(("z", "seed"), [(0.5, 0), (0.5, 1), (2.0, 2), (2.0, 3), (1.0, 4)])
def test_group_switches_follow_the_documented_significance_test(z, seed):
    rng = np.random.default_rng(seed)
    book = TrackBook(min_observations=1, max_observations=100, switch_margin=0.0, switch_after=1, switch_confidence=z)
    history, weights = [], []
    shown = -1
    switches = 0
    for frame in range(30):
        group = 3 if frame == 0 else int(rng.choice([3, 4], p=[0.35, 0.65]))
        probs = peaked(group, float(rng.uniform(0.4, 0.95)))
        weight = float(rng.uniform(0.2, 1.0))
        book.add(face(), observation(probs), frame, weights=np.array([weight]))
        history.append(probs)
        weights.append(weight)
        stack, w = np.array(history), np.array(weights)
        fused = (stack * w[:, None]).sum(0) / w.sum()
        best = int(np.argmax(fused))
        if shown < 0:
            shown = best
        elif best != shown and fused[best] > fused[shown] and _significant(
                stack[:, best] - stack[:, shown], w, float(fused[best] - fused[shown]), z):
            shown, switches = best, switches + 1
        assert book.annotate(face()).data[SHOWN_GROUP][0] == shown, f"frame {frame}"
    assert switches >= 1 or z == 2.0  # the cases exercise a switch, not only the hold


def test_a_lead_resting_on_one_observation_is_never_significant():
    book = TrackBook(min_observations=1, max_observations=1, switch_margin=0.0, switch_confidence=0.5)
    for frame, group in enumerate([3] + [4] * 5):
        book.add(face(), observation(peaked(group, 0.95)), frame)
    assert book.annotate(face()).data[SHOWN_GROUP][0] == 3


def test_two_agreeing_observations_can_be_significant_whatever_their_weights():
    """Two observations are the fewest with a spread; agreeing ones (spread 0) carry a lead of any size, also when
    their weights are small (the weights' scale does not matter, only their ratios)."""
    for weight in (1.0, 0.3):
        book = TrackBook(min_observations=1, max_observations=2, switch_margin=0.0, switch_confidence=2.0)
        for frame, group in enumerate([3, 4, 4]):
            book.add(face(), observation(peaked(group, 0.9)), frame, weights=np.array([weight]))
        assert book.annotate(face()).data[SHOWN_GROUP][0] == 4, weight


def test_confidence_is_the_fused_probability_of_the_likeliest_group():
    book = TrackBook(min_observations=3)
    book.add(face(1), observation(peaked(2, 0.7)), 0)
    book.add(face(1), observation(peaked(2, 0.5)), 1)
    book.add(face(2), {P_FEMALE: np.array([0.9], np.float32)}, 1)  # no age model: no group, confidence 0
    confidence = book.confidence(np.array([1, 2, 99]))
    assert confidence.tolist() == pytest.approx([0.6, 0.0, 0.0])
