"""The one rule for what label is shown for a face or a person.

Every outlet — the video overlay, the JSONL events, the summary, the web page, the broker messages — asks
this module what to show, so they can never disagree. The rule: nothing until the track has a label
(``LABEL_READY``: ``trackbook.min_observations`` observations); then the age group the track book shows
(hysteresis applied), else the most likely one; the gender the track book shows, else P(female) >= 0.5.
JSON has no NaN, so every value that is not finite is ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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

FEMALE, MALE = "female", "male"


@dataclass(frozen=True)
class ShownLabel:
    """What is shown for one face or person; every field ``None`` until the label is ready.

    Attributes:
        ready: The track has enough observations for a label.
        n_obs: Observations the fused estimate rests on (``None`` when unknown).
        age_group: One of :data:`~stream.types.AGE_GROUPS`.
        age_group_probs: The 8 fused group probabilities, in ``AGE_GROUPS`` order.
        confidence: The fused probability of the shown group.
        age: Fused age in years.
        gender: ``"female"`` or ``"male"``.
        p_female: Fused P(female).
    """

    ready: bool
    n_obs: int | None = None
    age_group: str | None = None
    age_group_probs: tuple[float, ...] | None = None
    confidence: float | None = None
    age: float | None = None
    gender: str | None = None
    p_female: float | None = None

    def as_record(self) -> dict[str, Any]:
        """The label's JSON fields (rounded), as events, summaries and broker messages carry them."""
        return {
            "age_group": self.age_group,
            "age_group_probs": None if self.age_group_probs is None else [round(p, 4) for p in self.age_group_probs],
            "age": _rounded(self.age, 1),
            "gender": self.gender,
            "p_female": _rounded(self.p_female, 4),
            "n_obs": self.n_obs,
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def shown_label(
    probs: np.ndarray | None,
    age: float | np.ndarray | None,
    p_female: float | np.ndarray | None,
    *,
    ready: bool = True,
    shown_group: int = -1,
    shown_female: int = -1,
    n_obs: int | None = None,
) -> ShownLabel:
    """The label to show from one fused estimate.

    Args:
        probs: ``(8,)`` fused age-group probabilities, or None when no age model ran.
        age: Fused years (NaN or None when unknown).
        p_female: Fused P(female) (NaN or None when unknown).
        ready: Whether the track has a label yet; when False only ``n_obs`` is filled.
        shown_group: The track book's shown group index (hysteresis applied), -1 for none.
        shown_female: The track book's shown gender, 1 female, 0 male, -1 for none.
        n_obs: Observations behind the estimate.
    """
    if not ready:
        return ShownLabel(False, n_obs)
    group = confidence = None
    group_probs = None
    if probs is not None:
        vector = np.asarray(probs, np.float64)
        if vector.shape != (len(AGE_GROUPS),):
            raise ValueError(f"probs must have shape ({len(AGE_GROUPS)},), got {vector.shape}")
        if np.isfinite(vector).all() and vector.sum() > 0:
            index = shown_group if shown_group >= 0 else int(np.argmax(vector))
            group, confidence = AGE_GROUPS[index], float(vector[index])
            group_probs = tuple(float(p) for p in vector)
    years = None if age is None else _finite(age)
    female = None if p_female is None else _finite(p_female)
    gender = None
    if female is not None:
        is_female = shown_female == 1 if shown_female >= 0 else female >= 0.5
        gender = FEMALE if is_female else MALE
    return ShownLabel(True, n_obs, group, group_probs, confidence, years, gender, female)


def face_labels(faces: Faces) -> list[ShownLabel]:
    """The label shown for each face, in row order.

    Args:
        faces: ``n`` faces; label arrays are read from ``faces.data`` (names in :mod:`stream.types`), any of
            which may be absent. Without a ``LABEL_READY`` array labels are not gated.
    """
    n = len(faces)
    data = faces.data
    ready = np.asarray(data[LABEL_READY], bool) if LABEL_READY in data else np.ones(n, bool)
    probs = np.asarray(data[AGE_GROUP_PROBS], np.float64) if AGE_GROUP_PROBS in data else None
    if probs is not None and probs.shape != (n, len(AGE_GROUPS)):
        raise ValueError(f"faces.data[{AGE_GROUP_PROBS!r}] must have shape ({n}, {len(AGE_GROUPS)}), got {probs.shape}")
    ages, p_female = data.get(AGE_YEARS), data.get(P_FEMALE)
    shown, shown_female, n_obs = data.get(SHOWN_GROUP), data.get(SHOWN_FEMALE), data.get(N_OBS)
    return [
        shown_label(
            None if probs is None else probs[i],
            None if ages is None else ages[i],
            None if p_female is None else p_female[i],
            ready=bool(ready[i]),
            shown_group=-1 if shown is None else int(shown[i]),
            shown_female=-1 if shown_female is None else int(shown_female[i]),
            n_obs=None if n_obs is None else int(n_obs[i]),
        )
        for i in range(n)
    ]


def label_text(label: ShownLabel, track_id: int | None = None) -> str:
    """The overlay's text: ``#3 F 31-40 34y 87%``, or ``#3 estimating... (2)`` before the label is ready."""
    prefix = f"#{track_id}" if track_id is not None and track_id >= 0 else ""
    if not label.ready or label.age_group is None:
        progress = f" ({label.n_obs})" if label.n_obs else ""
        return f"{prefix} estimating...{progress}".strip()
    parts = [prefix]
    if label.gender is not None:
        parts.append("F" if label.gender == FEMALE else "M")
    parts.append(label.age_group)
    if label.age is not None:
        parts.append(f"{label.age:.0f}y")
    if label.confidence is not None:
        parts.append(f"{label.confidence * 100:.0f}%")
    return " ".join(p for p in parts if p)
