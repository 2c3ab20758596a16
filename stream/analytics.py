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
    decided by ``rule`` (the pipeline's; default the ``labels:`` defaults)."""
    fused = track.fused
    label = shown_label(fused.get(AGE_GROUP_PROBS), fused.get(AGE_YEARS), fused.get(P_FEMALE),
                        ready=track.shown_group >= 0, shown_group=track.shown_group,
                        shown_female=track.shown_female, n_obs=track.n_obs, rule=rule)
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

    def add(self, record: dict[str, Any]) -> None:
        self.tracks += 1
        if record["age_group"] is None:
            return
        self.labelled += 1
        self.by_age_group[record["age_group"]] += 1
        if record["gender"] is not None:
            self.by_gender[record["gender"]] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"tracks": self.tracks, "labelled_tracks": self.labelled, "by_age_group": dict(self.by_age_group),
                "by_gender": dict(self.by_gender)}
