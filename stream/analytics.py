"""Per-track summaries and totals: what footfall analytics reads at the end of a run.

A track is summarised once, when it ends, with the label it held then (its fused estimate over its whole life, and
over the earlier tracks of its person when appearance re-identified it: :meth:`stream.trackbook.TrackBook.merge`).
Totals count people, not tracks: a person who left and came back, or was seen again after a cut, is one person,
counted with the label of their latest track (the one resting on all their evidence); ``merged_tracks`` says how
many tracks were folded into people seen before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from stream.labels import LabelRule, shown_label
from stream.trackbook import TrackEstimate
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, P_FEMALE


def track_record(track_id: int, track: TrackEstimate, fps: float, person_id: int | None = None,
                 rule: LabelRule | None = None) -> dict[str, Any]:
    """JSON-ready summary of one track: its life, its person, and the label shown when it ended (``None`` fields if it
    had none; ``person_id`` None when no identity stage ran), decided by ``rule`` (the pipeline's, which also knows
    what the track showed last; default the ``labels:`` defaults)."""
    fused = track.fused
    previous = None if rule is None else rule.end(track_id)
    label = shown_label(fused.get(AGE_GROUP_PROBS), fused.get(AGE_YEARS), fused.get(P_FEMALE),
                        ready=track.shown_group >= 0, shown_group=track.shown_group,
                        shown_female=track.shown_female, n_obs=track.n_obs, rule=rule, previous=previous)
    return {
        "track_id": track_id,
        "person_id": person_id,
        "first_frame": track.first_frame,
        "last_frame": track.last_seen_frame,
        "duration_s": round((track.last_seen_frame - track.first_frame + 1) / fps, 3) if fps > 0 else None,
        **label.as_record(),
    }


class _PersonLabel(NamedTuple):
    """What a person's latest record showed. A person with evidence but no decided group (a range or ``age?``,
    see :mod:`stream.labels`) or gender is counted as undecided, not guessed into one."""

    group: str | None
    gender: str | None
    has_age: bool  # age evidence was fused
    has_gender: bool


_NO_LABEL = _PersonLabel(None, None, False, False)


@dataclass
class Totals:
    """Counts of ended tracks and of the people they belong to, people by age group and gender.

    A record without a ``person_id`` (a still image's face, a run without the identity stage) is a person of its own.
    Each person is counted with the label of their latest record.
    """

    tracks: int = 0
    labelled: int = 0
    # person key -> the label of their latest record; a few bytes a person, for a run's lifetime.
    _people: dict[Any, _PersonLabel] = field(default_factory=dict)

    def add(self, record: dict[str, Any]) -> None:
        self.tracks += 1
        person = record.get("person_id")
        key = ("track", self.tracks) if person is None else person
        evidence = record.get("age_group_probs") is not None or record.get("p_female") is not None
        self.labelled += evidence
        label = _PersonLabel(record["age_group"], record["gender"], record.get("age_group_probs") is not None,
                             record.get("p_female") is not None) if evidence else _NO_LABEL
        # A later track of a person without evidence (it ended before its first look) keeps the earlier label.
        if key not in self._people or evidence:
            self._people[key] = label

    @property
    def people(self) -> int:
        return len(self._people)

    def as_dict(self) -> dict[str, Any]:
        by_age_group = dict.fromkeys(AGE_GROUPS, 0)
        by_gender = {"female": 0, "male": 0}
        labelled_people = age_undecided = gender_undecided = 0
        for person in self._people.values():
            if not (person.has_age or person.has_gender):
                continue
            labelled_people += 1
            if person.group is not None:
                by_age_group[person.group] += 1
            elif person.has_age:
                age_undecided += 1
            if person.gender is not None:
                by_gender[person.gender] += 1
            elif person.has_gender:
                gender_undecided += 1
        return {"people": self.people, "labelled_people": labelled_people, "tracks": self.tracks,
                "labelled_tracks": self.labelled, "merged_tracks": self.tracks - self.people,
                "by_age_group": by_age_group, "by_gender": by_gender, "age_undecided": age_undecided,
                "gender_undecided": gender_undecided}
