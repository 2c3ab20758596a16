import numpy as np
import pytest

from stream.trackbook import TrackBook
from stream.types import AGE_GROUP_PROBS, AGE_YEARS, LABEL_READY, N_OBS, P_FEMALE, SHOWN_GROUP, Faces


def faces_with_ids(*ids: int) -> Faces:
    n = len(ids)
    return Faces(xyxy=np.tile([0, 0, 50, 50], (n, 1)), score=np.ones(n), landmarks=np.zeros((n, 5, 2)),
                 track_id=np.array(ids))


def obs(group: int, p_female: float, age: float, confidence: float = 0.7) -> dict[str, np.ndarray]:
    probs = np.full(8, (1 - confidence) / 7, np.float32)
    probs[group] = confidence
    return {AGE_GROUP_PROBS: probs[None], AGE_YEARS: np.array([age], np.float32),
            P_FEMALE: np.array([p_female], np.float32)}


def test_label_hidden_until_min_observations_then_fused_mean():
    book = TrackBook(min_observations=3, switch_confidence=0.0)
    face = faces_with_ids(7)
    for frame, p in enumerate([0.9, 0.8]):
        book.add(face, obs(3, p, 34), frame)
        out = book.annotate(face)
        assert not out.data[LABEL_READY][0] and np.isnan(out.data[AGE_GROUP_PROBS][0]).all()
        assert out.data[N_OBS][0] == frame + 1
    book.add(face, obs(3, 0.1, 40), 2)
    out = book.annotate(face)
    assert out.data[LABEL_READY][0] and out.data[SHOWN_GROUP][0] == 3
    assert out.data[P_FEMALE][0] == pytest.approx(0.6, abs=1e-6)  # mean of 0.9, 0.8, 0.1: not the last label
    assert out.data[AGE_YEARS][0] == pytest.approx(36, abs=1e-5)


def test_one_confident_frame_outweighs_two_unsure_ones():
    # A vote of last labels would say group 2; fusing probabilities says group 4.
    book = TrackBook(min_observations=3, switch_margin=0.0, switch_confidence=0.0)
    face = faces_with_ids(1)
    book.add(face, obs(2, 0.5, 25, confidence=0.3), 0)
    book.add(face, obs(2, 0.5, 25, confidence=0.3), 1)
    book.add(face, obs(4, 0.5, 45, confidence=0.99), 2)
    assert book.annotate(face).data[SHOWN_GROUP][0] == 4


def test_hysteresis_keeps_the_shown_group_until_clearly_beaten():
    book = TrackBook(min_observations=1, max_observations=4, switch_margin=0.2, switch_confidence=0.0)
    face = faces_with_ids(1)
    book.add(face, obs(3, 0.5, 35, confidence=0.6), 0)
    assert book.annotate(face).data[SHOWN_GROUP][0] == 3
    book.add(face, obs(4, 0.5, 42, confidence=0.7), 1)  # fused: group 4 leads group 3 only slightly
    assert book.annotate(face).data[SHOWN_GROUP][0] == 3
    for frame in range(2, 6):
        book.add(face, obs(4, 0.5, 42, confidence=0.9), frame)
    assert book.annotate(face).data[SHOWN_GROUP][0] == 4


def test_weights_and_window():
    book = TrackBook(min_observations=1, max_observations=2, switch_confidence=0.0)
    face = faces_with_ids(1)
    book.add(face, obs(0, 1.0, 5), 0)
    book.add(face, obs(0, 0.0, 5), 1, weights=np.array([3.0]))
    assert book.annotate(face).data[P_FEMALE][0] == pytest.approx(0.25)
    book.add(face, obs(0, 0.0, 5), 2)  # the first observation drops out of the 2-long window
    assert book.annotate(face).data[P_FEMALE][0] == pytest.approx(0.0)
    assert book.annotate(face).data[N_OBS][0] == 3


def test_forget_and_prune():
    book = TrackBook(min_observations=1, forget_after_frames=10, switch_confidence=0.0)
    book.add(faces_with_ids(1, 2), {P_FEMALE: np.array([0.2, 0.8])}, 0)
    assert [t for t, _ in book.forget([1, 99])] == [1]
    book.observe_presence(faces_with_ids(3), 5)
    assert [t for t, _ in book.prune(11)] == [2]
    assert list(book.tracks) == [3]
    unknown = book.annotate(faces_with_ids(42))
    assert unknown.data[N_OBS][0] == 0 and not unknown.data[LABEL_READY][0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_observations": 0}, "min_observations"), ({"max_observations": 1, "min_observations": 2}, "max_obs"),
     ({"forget_after_frames": 0}, "forget_after_frames"), ({"switch_margin": 1.0}, "switch_margin")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrackBook(**kwargs)


def test_switch_after_needs_a_persistent_challenger():
    book = TrackBook(min_observations=1, max_observations=1, switch_margin=0.0, switch_after=3, switch_confidence=0.0)
    face = faces_with_ids(1)
    book.add(face, obs(3, 0.5, 35, confidence=0.9), 0)
    shown = []
    # One frame for group 4, back to 3, then three in a row for group 4.
    for frame, group in enumerate([4, 3, 4, 4, 4], start=1):
        book.add(face, obs(group, 0.5, 40, confidence=0.9), frame)
        shown.append(int(book.annotate(face).data[SHOWN_GROUP][0]))
    assert shown == [3, 3, 3, 3, 4]


def test_gender_hysteresis():
    book = TrackBook(min_observations=1, max_observations=1, gender_margin=0.2, switch_confidence=0.0)
    face = faces_with_ids(1)
    shown = []
    for frame, p in enumerate([0.7, 0.45, 0.55, 0.35, 0.58, 0.65]):
        book.add(face, obs(2, p, 25), frame)
        shown.append(int(book.annotate(face).data["shown_female"][0]))
    assert shown == [1, 1, 1, 0, 0, 1]  # flips only past 0.4 / 0.6


def _shown_after(book: TrackBook, groups: list[int], confidence: float = 0.9) -> list[int]:
    face = faces_with_ids(1)
    shown = []
    for frame, group in enumerate(groups):
        book.add(face, obs(group, 0.5, 40, confidence=confidence), frame)
        shown.append(int(book.annotate(face).data[SHOWN_GROUP][0]))
    return shown


def test_switch_confidence_blocks_a_lead_built_on_scattered_frames():
    # Group 3 first, then frames alternating 4, 4, 4, 3: group 4 comes to lead by > 0.1 in the mean, but the
    # per-frame leads scatter between +0.8 and -0.8, so a 2-standard-error test holds the label...
    scattered = [3, 3, 3] + [4, 4, 4, 3] * 3
    plain = _shown_after(TrackBook(min_observations=3, switch_margin=0.1, switch_confidence=0.0), scattered)
    tested = _shown_after(TrackBook(min_observations=3, switch_margin=0.1, switch_confidence=2.0), scattered)
    assert plain[-1] == 4
    assert set(tested[2:]) == {3}
    # ...while a run of frames that all agree still moves it.
    steady = _shown_after(TrackBook(min_observations=3, switch_margin=0.1, switch_confidence=2.0), [3, 3, 3] + [4] * 12)
    assert steady[-1] == 4 and steady[:3] == [-1, -1, 3]


def test_switch_confidence_guards_gender_flips():
    face = faces_with_ids(1)
    book = TrackBook(min_observations=2, gender_margin=0.2, switch_confidence=2.0)
    shown = []
    # Shown male after two frames; wildly scattered frames then pull the mean past 0.6 without consistency.
    for frame, p in enumerate([0.3, 0.3, 0.99, 0.99, 0.05, 0.99, 0.99, 0.2]):
        book.add(face, obs(2, p, 25), frame)
        shown.append(int(book.annotate(face).data["shown_female"][0]))
    assert shown[1:] == [0] * 7
    plain = TrackBook(min_observations=2, gender_margin=0.2, switch_confidence=0.0)
    flips = []
    for frame, p in enumerate([0.3, 0.3, 0.99, 0.99, 0.05, 0.99, 0.99, 0.2]):
        plain.add(face, obs(2, p, 25), frame)
        flips.append(int(plain.annotate(face).data["shown_female"][0]))
    assert 1 in flips


def _estimate(book: TrackBook, track_id: int, group: int, p_female: float, frames: range, confidence: float = 0.7):
    face = faces_with_ids(track_id)
    for frame in frames:
        book.add(face, obs(group, p_female, 30.0, confidence), frame)
    return book.tracks[track_id]


def test_merge_carries_the_shown_label_on_and_refuses_it_again_by_the_usual_rules():
    """Re-identification: an earlier track's label (group 0, male) carries on over the new track's own (group 6,
    female) although the merged evidence leans the other way; the hysteresis then starts over from it: the
    challenger has led once (streak 1 of switch_after 2), and the next observation that keeps it ahead switches."""
    book = TrackBook(min_observations=3, switch_margin=0.1, switch_after=2, switch_confidence=0.0, gender_margin=0.3)
    _estimate(book, 1, 0, 0.1, range(0, 3))
    (_, earlier), = book.forget([1])
    assert (earlier.shown_group, earlier.shown_female) == (0, 0)
    track = _estimate(book, 5, 6, 0.9, range(10, 16))
    assert (track.shown_group, track.shown_female) == (6, 1)
    assert book.merge(earlier, 5) is earlier
    assert (track.shown_group, track.shown_female, track.challenger_streak) == (0, 0, 1)
    # The evidence is fused again over all nine observations: P(female) (3 x 0.1 + 6 x 0.9) / 9.
    assert track.fused[P_FEMALE] == pytest.approx(5.7 / 9, abs=1e-6)
    assert track.fused[AGE_GROUP_PROBS][6] == pytest.approx((6 * 0.7 + 3 * 0.3 / 7) / 9, abs=1e-6)
    book.add(faces_with_ids(5), obs(6, 0.9, 30.0), 16)
    assert track.shown_group == 6


def test_merge_of_an_unlabelled_track_keeps_the_new_tracks_label():
    """The earlier track had no label yet: the new track's label stays, and its hysteresis applies to the merged
    evidence (which favours group 0 and male, not yet by enough to switch)."""
    book = TrackBook(min_observations=3, switch_margin=0.1, switch_after=2, switch_confidence=0.0, gender_margin=0.3)
    _estimate(book, 1, 0, 0.0, range(0, 2), confidence=0.95)  # two observations of three: no label yet
    (_, earlier), = book.forget([1])
    assert (earlier.shown_group, earlier.shown_female) == (-1, -1)
    track = _estimate(book, 5, 6, 0.6, range(10, 13), confidence=0.4)
    book.merge(earlier, 5)
    assert int(np.argmax(track.fused[AGE_GROUP_PROBS])) == 0 and track.fused[P_FEMALE] < 0.5
    assert (track.shown_group, track.shown_female, track.n_obs) == (6, 1, 5)


def test_merge_into_a_track_the_book_does_not_hold_yet_takes_the_earlier_frames():
    """A new track re-identified before the book has an entry for it: the entry starts from the earlier track's
    frames (first seen, last seen, last classified), which the scheduler's intervals count from."""
    book = TrackBook(min_observations=3)
    _estimate(book, 1, 2, 0.9, range(4, 7))
    book.observe_presence(faces_with_ids(1), 9)  # seen, not classified, on frame 9
    (_, earlier), = book.forget([1])
    book.merge(earlier, 8)
    track = book.tracks[8]
    assert (track.first_frame, track.last_seen_frame, track.last_classified_frame) == (4, 9, 6)
    assert (track.n_obs, track.shown_group) == (3, 2)
