"""Per-track summaries and totals: what footfall analytics reads at the end of a run.

A track is counted once, with the label it held when it ended (its fused estimate
over its whole life), so totals do not depend on how often a face was classified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.labels import LabelRule, shown_label
from stream.trackbook import TrackEstimate
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, P_FEMALE


def track_record(track_id: int, track: TrackEstimate, fps: float, rule: LabelRule | None = None) -> dict[str, Any]:
    """JSON-ready summary of one track: its life and the label shown when it ended (``None`` fields if it had none),
    decided by ``rule`` (the pipeline's, which also knows what the track showed last; default the ``labels:``
    defaults)."""
    fused = track.fused
    previous = None if rule is None else rule.end(track_id)
    label = shown_label(fused.get(AGE_GROUP_PROBS), fused.get(AGE_YEARS), fused.get(P_FEMALE),
                        ready=track.shown_group >= 0, shown_group=track.shown_group,
                        shown_female=track.shown_female, n_obs=track.n_obs, rule=rule, previous=previous)
    return {
        "track_id": track_id,
        "first_frame": track.first_frame,
        "last_frame": track.last_seen_frame,
        "duration_s": round((track.last_seen_frame - track.first_frame + 1) / fps, 3) if fps > 0 else None,
        **label.as_record(),
    }


@dataclass
class Totals:
    """Counts of ended tracks by age group and gender."""

    tracks: int = 0
    labelled: int = 0
    by_age_group: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGE_GROUPS, 0))
    by_gender: dict[str, int] = field(default_factory=lambda: {"female": 0, "male": 0})

    #: Labelled tracks whose fused evidence decided no single age group (a range or ``age?``, see
    #: :mod:`stream.labels`) / no gender: counted here, not guessed into a group.
    age_undecided: int = 0
    gender_undecided: int = 0

    def add(self, record: dict[str, Any]) -> None:
        self.tracks += 1
        if record.get("age_group_probs") is None and record.get("p_female") is None:
            return
        self.labelled += 1
        if record["age_group"] is not None:
            self.by_age_group[record["age_group"]] += 1
        elif record.get("age_group_probs") is not None:
            self.age_undecided += 1
        if record["gender"] is not None:
            self.by_gender[record["gender"]] += 1
        elif record.get("p_female") is not None:
            self.gender_undecided += 1

    def as_dict(self) -> dict[str, Any]:
        return {"tracks": self.tracks, "labelled_tracks": self.labelled, "by_age_group": dict(self.by_age_group),
                "by_gender": dict(self.by_gender), "age_undecided": self.age_undecided,
                "gender_undecided": self.gender_undecided}
