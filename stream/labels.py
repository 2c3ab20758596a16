"""The one rule for what label is shown for a face or a person.

Every outlet — the video overlay, the JSONL events, the summary, the web page, the broker messages — asks
this module what to show, so they can never disagree. The rule (:class:`LabelRule`, settings in the ``labels:``
section):

* Nothing until the track has a label (``LABEL_READY``: ``trackbook.min_observations`` observations).
* **Age.** The track book's shown group (hysteresis applied; else the most likely group) is shown alone only
  when the evidence is decisive: it is the most likely group and leads the runner-up by ``group_min_lead``.
  Otherwise, when the two most likely groups are neighbours, both are shown as one range (``21-40``); when they
  are not, the age is undecided (``age?``): a mean of two separate modes is no estimate.
* **Years** always lie inside what is shown: the fused years clamped to the shown group or range. The group is
  the decision (fused probability mass, hysteresis, the decisiveness test); the years are the fused mean, which
  for a spread-out or two-peaked distribution lands between the peaks (or, for models with a separate age head,
  disagrees with the group head), so the nearest age consistent with the decision is shown. Far-off years mean
  two-peaked evidence, which the decisiveness test turns into a range or ``age?`` anyway. No years when the age
  is undecided.
* **Gender** is shown only when the fused P(female) is at least ``gender_min_lean`` from 0.5 *and* on the side
  of the gender the track book shows (its flip hysteresis keeps a label while P(female) drifts back towards 0.5;
  it never shows a gender against the evidence). Otherwise ``?`` with P(female) (``?(F45%)``).

* **Hysteresis.** A decision already on screen for a track stays while its evidence keeps a share of the
  threshold (:data:`KEEP_SHARE`: a group stays while it is still the most likely one; a gender while P(female)
  stays half the threshold on its side), so a lead hovering around the threshold does not make the label blink
  between ``31-40`` and ``21-40`` (or ``F`` and ``?``). A track's summary, decided at its end, starts from what
  it showed last (:meth:`LabelRule.end`), so the summary says what the overlay said.

Thresholds of 0 give the old behaviour (always a single group, gender at P(female) >= 0.5).
The pipeline decides once per frame with its configured rule and stores the decision in ``faces.data``
(:data:`SHOWN_SPAN`, :data:`SHOWN_GENDER`); :func:`face_labels` reads it, so every outlet shows the same thing.
JSON has no NaN, so every value that is not finite is ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.config import LabelsConfig, settings
from stream.types import (
    AGE_GROUP_LOWER,
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

#: Slack in the threshold comparisons: float32 probabilities make 0.4 - 0.5 come out as 0.0999999.
_EPS = 1e-6
#: A shown decision is kept while its lead (age group) or lean (gender) stays above this share of the threshold.
#: Measured on the generated videos (``python -m bench.evaluate_video``, 12 videos): 0, 0.25 and 0.5 for groups
#: give the same accuracy within 0.01 and the fewest group <-> range changes at 0.
KEEP_SHARE = {"group": 0.0, "gender": 0.5}
#: ``faces.data`` key: ``(n, 2)`` int8 first and last age-group index shown (equal for one group); -1 for none.
SHOWN_SPAN = "shown_span"
#: ``faces.data`` key: ``(n,)`` int8 gender shown: 1 female, 0 male, -1 undecided or none.
SHOWN_GENDER = "shown_gender"
FEMALE, MALE = "female", "male"
_N_GROUPS = len(AGE_GROUPS)


def span_text(first: int, last: int) -> str:
    """The shown name of the age groups ``first..last``: ``"31-40"``, ``"21-40"``, ``"66+"`` (with ``80+``)."""
    low = AGE_GROUPS[first].split("-")[0].rstrip("+")
    return f"{low}+" if AGE_GROUPS[last].endswith("+") else f"{low}-{AGE_GROUPS[last].split('-')[1]}"


def span_years(first: int, last: int) -> tuple[float, float]:
    """Inclusive whole years covered by the age groups ``first..last`` (``inf`` above the last group)."""
    high = AGE_GROUP_LOWER[last + 1] - 1 if last + 1 < _N_GROUPS else math.inf
    return float(AGE_GROUP_LOWER[first]), float(high)


@dataclass(frozen=True)
class ShownLabel:
    """What is shown for one face or person; every field ``None`` until the label is ready.

    Attributes:
        ready: The track has enough observations for a label.
        n_obs: Observations the fused estimate rests on (``None`` when unknown).
        age_group: One of :data:`~stream.types.AGE_GROUPS` when the evidence decides one group, else ``None``.
        age_range: The age shown: the group's name, two neighbouring groups as one range (``"21-40"``) when they
            are too close to call, ``None`` when the age is undecided or unknown.
        age_group_probs: The 8 fused group probabilities, in ``AGE_GROUPS`` order.
        confidence: The fused probability of what is shown (the group, or both groups of a range).
        age: Fused years, inside ``age_range`` (``None`` when the age is undecided).
        gender: ``"female"`` or ``"male"`` when the evidence decides, else ``None``.
        p_female: Fused P(female) (given whether or not a gender is shown).
    """

    ready: bool
    n_obs: int | None = None
    age_group: str | None = None
    age_range: str | None = None
    age_group_probs: tuple[float, ...] | None = None
    confidence: float | None = None
    age: float | None = None
    gender: str | None = None
    p_female: float | None = None

    @property
    def age_undecided(self) -> bool:
        """Ready with group probabilities, yet no age shown (the two most likely groups are far apart)."""
        return self.ready and self.age_group_probs is not None and self.age_range is None

    @property
    def gender_undecided(self) -> bool:
        """Ready with a P(female), yet no gender shown."""
        return self.ready and self.p_female is not None and self.gender is None

    def as_record(self) -> dict[str, Any]:
        """The label's JSON fields (rounded), as events, summaries and broker messages carry them."""
        return {
            "age_group": self.age_group,
            "age_range": self.age_range,
            "age_group_probs": None if self.age_group_probs is None else [round(p, 4) for p in self.age_group_probs],
            "age": _rounded(self.age, 1),
            "gender": self.gender,
            "p_female": _rounded(self.p_female, 4),
            "n_obs": self.n_obs,
        }


    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ShownLabel:
        """The label a record made by :meth:`as_record` carries (an ended track's summary, an event's face)."""
        probs = record.get("age_group_probs")
        shown = record.get("age_range")
        confidence = None
        if probs is not None and shown is not None:
            first, last = span_of(shown)
            confidence = float(sum(probs[first:last + 1]))
        return cls(ready=probs is not None or record.get("p_female") is not None, n_obs=record.get("n_obs"),
                   age_group=record.get("age_group"), age_range=shown,
                   age_group_probs=None if probs is None else tuple(probs), confidence=confidence,
                   age=record.get("age"), gender=record.get("gender"), p_female=record.get("p_female"))


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


class LabelRule:
    """Decides what is shown from a fused estimate (the rule is the module doc's).

    Built from a :class:`~stream.config.LabelsConfig` (the ``labels:`` section), with keyword overrides.

    Args:
        group_min_lead: One age group is shown only when it is the most likely and leads the runner-up by this
            much fused probability; else two neighbouring groups as a range, or ``age?`` (0: always one group).
        gender_min_lean: A gender is shown only when the fused P(female) is this far from 0.5, on the side of
            the gender shown; else ``?`` with P(female) (0: always a gender).
    """

    def __init__(self, config: LabelsConfig | None = None, /, **overrides: Any) -> None:
        settings_ = settings(LabelsConfig, config, overrides)
        self.group_min_lead = settings_.group_min_lead
        self.gender_min_lean = settings_.gender_min_lean
        # What :meth:`annotate` showed for each track on its last call (the hysteresis' memory).
        self._shown: dict[int, tuple[tuple[int, int] | None, int]] = {}

    def age_span(self, probs: np.ndarray, shown_group: int = -1,
                 previous: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """First and last group index to show from ``(8,)`` fused probabilities, or None (undecided).

        Args:
            probs: Fused group probabilities.
            shown_group: The track book's shown group (hysteresis applied), -1 for none.
            previous: The span shown on the track's previous frame, if any (see :data:`KEEP_SHARE`).
        """
        order = np.argsort(-probs, kind="stable")
        best, second = int(order[0]), int(order[1])
        held = shown_group if shown_group >= 0 else best
        if self.group_min_lead <= 0:
            return held, held
        needed = self.group_min_lead * (KEEP_SHARE["group"] if previous == (best, best) else 1.0)
        if held == best and probs[best] - probs[second] >= needed - _EPS:
            return best, best
        if abs(best - second) == 1:
            return min(best, second), max(best, second)
        return None

    def gender(self, p_female: float, shown_female: int = -1, previous: int = -1) -> int:
        """1 female, 0 male, -1 undecided, from the fused P(female), the track book's shown gender and the gender
        shown on the track's previous frame (-1: none; see :data:`KEEP_SHARE`)."""
        side = int(p_female >= 0.5)
        held = shown_female if shown_female >= 0 else side
        if self.gender_min_lean <= 0:
            return held
        needed = self.gender_min_lean * (KEEP_SHARE["gender"] if previous == held else 1.0)
        return held if held == side and abs(p_female - 0.5) >= needed - _EPS else -1

    def label(
        self,
        probs: np.ndarray | None,
        age: float | np.ndarray | None,
        p_female: float | np.ndarray | None,
        *,
        ready: bool = True,
        shown_group: int = -1,
        shown_female: int = -1,
        n_obs: int | None = None,
        span: tuple[int, int] | None | bool = True,
        gender: int | None = None,
        previous: tuple[tuple[int, int] | None, int] | None = None,
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
            span: A decision already made (:meth:`annotate`): the group span, or None for undecided; True
                (default) decides here.
            gender: A decision already made: 1, 0, or -1 undecided; None (default) decides here.
            previous: ``(span, gender)`` shown on the track's previous frame (hysteresis), None for none.
        """
        if not ready:
            return ShownLabel(False, n_obs)
        group = age_range = confidence = None
        group_probs = None
        years = None if age is None else _finite(age)
        if probs is not None:
            vector = np.asarray(probs, np.float64)
            if vector.shape != (_N_GROUPS,):
                raise ValueError(f"probs must have shape ({_N_GROUPS},), got {vector.shape}")
            if np.isfinite(vector).all() and vector.sum() > 0:
                group_probs = tuple(float(p) for p in vector)
                before = None if previous is None else previous[0]
                chosen = self.age_span(vector, shown_group, before) if span is True else span
                if chosen is None:
                    years = None
                else:
                    first, last = chosen  # type: ignore[misc]
                    age_range = span_text(first, last)
                    group = AGE_GROUPS[first] if first == last else None
                    confidence = float(vector[first : last + 1].sum())
                    if years is not None:
                        low, high = span_years(first, last)
                        years = min(max(years, low), high)
        female = None if p_female is None else _finite(p_female)
        shown_gender = None
        if female is not None:
            before_gender = -1 if previous is None else previous[1]
            decided = self.gender(female, shown_female, before_gender) if gender is None else gender
            shown_gender = None if decided < 0 else FEMALE if decided == 1 else MALE
        return ShownLabel(True, n_obs, group, age_range, group_probs, confidence, years, shown_gender, female)

    def annotate(self, faces: Faces, *, remember: bool = True) -> Faces:
        """``faces`` with this rule's decisions stored (:data:`SHOWN_SPAN`, :data:`SHOWN_GENDER`), so every outlet
        that calls :func:`face_labels` shows what this rule decided.

        Call it once per frame of one stream (the pipeline does): it remembers what each track showed, for the
        hysteresis, until :meth:`end` is called for the track. ``remember=False`` decides without that memory
        and leaves it alone (still images: their face ids restart at 1 on every image).
        """
        n = len(faces)
        spans = np.full((n, 2), -1, np.int8)
        genders = np.full(n, -1, np.int8)
        shown: dict[int, tuple[tuple[int, int] | None, int]] = {}
        for i, label in enumerate(_labels(faces, self, previous=self._shown if remember else None)):
            span = None
            if label.age_range is not None and label.age_group_probs is not None:
                span = span_of(label.age_range)
                spans[i] = span
            if label.gender is not None:
                genders[i] = int(label.gender == FEMALE)
            if label.ready:
                shown[int(faces.track_id[i])] = (span, int(genders[i]))
        if remember:
            self._shown.update(shown)
        return faces.with_data(**{SHOWN_SPAN: spans, SHOWN_GENDER: genders})

    def end(self, track_id: int) -> tuple[tuple[int, int] | None, int] | None:
        """Forget a track that ended; returns what it showed last (``previous`` for its summary's label)."""
        return self._shown.pop(int(track_id), None)


def span_of(text: str) -> tuple[int, int]:
    """First and last group index of a :func:`span_text` result (``"21-40"`` -> ``(2, 3)``)."""
    for first in range(_N_GROUPS):
        for last in range(first, _N_GROUPS):
            if span_text(first, last) == text:
                return first, last
    raise ValueError(f"not an age span: {text!r}")


#: The rule with the section's defaults, for callers without a config (a still image in a test, a summary).
DEFAULT_RULE = LabelRule()


def shown_label(
    probs: np.ndarray | None,
    age: float | np.ndarray | None,
    p_female: float | np.ndarray | None,
    *,
    ready: bool = True,
    shown_group: int = -1,
    shown_female: int = -1,
    n_obs: int | None = None,
    rule: LabelRule | None = None,
    previous: tuple[tuple[int, int] | None, int] | None = None,
) -> ShownLabel:
    """The label to show from one fused estimate, by ``rule`` (default :data:`DEFAULT_RULE`); see
    :meth:`LabelRule.label`."""
    return (rule or DEFAULT_RULE).label(probs, age, p_female, ready=ready, shown_group=shown_group,
                                        shown_female=shown_female, n_obs=n_obs, previous=previous)


def _labels(faces: Faces, rule: LabelRule, stored: bool = False,
            previous: dict[int, tuple[tuple[int, int] | None, int]] | None = None) -> list[ShownLabel]:
    n = len(faces)
    data = faces.data
    ready = np.asarray(data[LABEL_READY], bool) if LABEL_READY in data else np.ones(n, bool)
    probs = np.asarray(data[AGE_GROUP_PROBS], np.float64) if AGE_GROUP_PROBS in data else None
    if probs is not None and probs.shape != (n, _N_GROUPS):
        raise ValueError(f"faces.data[{AGE_GROUP_PROBS!r}] must have shape ({n}, {_N_GROUPS}), got {probs.shape}")
    ages, p_female = data.get(AGE_YEARS), data.get(P_FEMALE)
    shown, shown_female, n_obs = data.get(SHOWN_GROUP), data.get(SHOWN_FEMALE), data.get(N_OBS)
    spans = data.get(SHOWN_SPAN) if stored else None
    genders = data.get(SHOWN_GENDER) if stored else None
    labels = []
    for i in range(n):
        span: tuple[int, int] | None | bool = True
        if spans is not None:
            span = None if spans[i][0] < 0 else (int(spans[i][0]), int(spans[i][1]))
        labels.append(rule.label(
            None if probs is None else probs[i],
            None if ages is None else ages[i],
            None if p_female is None else p_female[i],
            ready=bool(ready[i]),
            shown_group=-1 if shown is None else int(shown[i]),
            shown_female=-1 if shown_female is None else int(shown_female[i]),
            n_obs=None if n_obs is None else int(n_obs[i]),
            span=span,
            gender=None if genders is None else int(genders[i]),
            previous=None if previous is None else previous.get(int(faces.track_id[i])),
        ))
    return labels


def face_labels(faces: Faces, rule: LabelRule | None = None) -> list[ShownLabel]:
    """The label shown for each face, in row order.

    Args:
        faces: ``n`` faces; label arrays are read from ``faces.data`` (names in :mod:`stream.types`), any of
            which may be absent. Without a ``LABEL_READY`` array labels are not gated. Decisions stored by
            :meth:`LabelRule.annotate` (the pipeline's configured rule) are used as they are.
        rule: Decides where no decision is stored (default :data:`DEFAULT_RULE`).
    """
    return _labels(faces, rule or DEFAULT_RULE, stored=True)


def label_text(label: ShownLabel, track_id: int | None = None) -> str:
    """The overlay's text: ``#3 F 31-40 34y 87%``, ``#3 ?(F45%) 21-40 33y 81%``, ``#3 M age?``, or
    ``#3 estimating... (2)`` before the label is ready."""
    prefix = f"#{track_id}" if track_id is not None and track_id >= 0 else ""
    if not label.ready or (label.age_group_probs is None and label.p_female is None):
        progress = f" ({label.n_obs})" if label.n_obs else ""
        return f"{prefix} estimating...{progress}".strip()
    parts = [prefix]
    if label.gender is not None:
        parts.append("F" if label.gender == FEMALE else "M")
    elif label.p_female is not None:
        parts.append(f"?(F{label.p_female * 100:.0f}%)")
    if label.age_range is not None:
        parts.append(label.age_range)
        if label.age is not None:
            parts.append(f"{label.age:.0f}y")
        if label.confidence is not None:
            parts.append(f"{label.confidence * 100:.0f}%")
    elif label.age_group_probs is not None:
        parts.append("age?")
    elif label.age is not None:
        parts.append(f"{label.age:.0f}y")
    return " ".join(p for p in parts if p)
