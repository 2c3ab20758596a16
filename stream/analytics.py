"""Per-track summaries and totals: what footfall analytics reads at the end of a run.

A track is summarised once, when it ends, with the label it held then (its fused estimate over its whole life, and
over the earlier tracks of its person when appearance re-identified it: :meth:`stream.trackbook.TrackBook.merge`).
Totals count people, not tracks: a person who left and came back, or was seen again after a cut, is one person,
counted with the label of their latest track (the one resting on all their evidence); ``merged_tracks`` says how
many tracks were folded into people seen before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.labels import shown_label
from stream.trackbook import TrackEstimate
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, P_FEMALE


def track_record(track_id: int, track: TrackEstimate, fps: float, person_id: int | None = None) -> dict[str, Any]:
    """JSON-ready summary of one track: its life, its person, and the label shown when it ended (``None`` fields if it
    had none; ``person_id`` None when no identity stage ran)."""
    fused = track.fused
    label = shown_label(fused.get(AGE_GROUP_PROBS), fused.get(AGE_YEARS), fused.get(P_FEMALE),
                        ready=track.shown_group >= 0, shown_group=track.shown_group,
                        shown_female=track.shown_female, n_obs=track.n_obs)
    return {
        "track_id": track_id,
        "person_id": person_id,
        "first_frame": track.first_frame,
        "last_frame": track.last_seen_frame,
        "duration_s": round((track.last_seen_frame - track.first_frame + 1) / fps, 3) if fps > 0 else None,
        **label.as_record(),
    }


@dataclass
class Totals:
    """Counts of ended tracks and of the people they belong to, people by age group and gender.

    A record without a ``person_id`` (a still image's face, a run without the identity stage) is a person of its own.
    Each person is counted with the label of their latest record.
    """

    tracks: int = 0
    labelled: int = 0
    # person key -> (age group, gender) of their latest record; a few bytes a person, for a run's lifetime.
    _people: dict[Any, tuple[str | None, str | None]] = field(default_factory=dict)

    def add(self, record: dict[str, Any]) -> None:
        self.tracks += 1
        person = record.get("person_id")
        key = ("track", self.tracks) if person is None else person
        self.labelled += record["age_group"] is not None
        label = (record["age_group"], record["gender"] if record["age_group"] is not None else None)
        # A later track of a person without a label (it ended before its first one) keeps the earlier label.
        if key not in self._people or label[0] is not None:
            self._people[key] = label

    @property
    def people(self) -> int:
        return len(self._people)

    def as_dict(self) -> dict[str, Any]:
        by_age_group = dict.fromkeys(AGE_GROUPS, 0)
        by_gender = {"female": 0, "male": 0}
        labelled_people = 0
        for group, gender in self._people.values():
            if group is None:
                continue
            labelled_people += 1
            by_age_group[group] = by_age_group.get(group, 0) + 1
            if gender is not None:
                by_gender[gender] = by_gender.get(gender, 0) + 1
        return {"people": self.people, "labelled_people": labelled_people, "tracks": self.tracks,
                "labelled_tracks": self.labelled, "merged_tracks": self.tracks - self.people,
                "by_age_group": by_age_group, "by_gender": by_gender}
