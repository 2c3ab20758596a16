"""Per-track fusion of age and gender estimates over time.

A face's age and gender do not change while it is tracked, so every observation
is evidence about the same answer: the TrackBook keeps each track's recent
probability vectors and fuses them with a quality-weighted mean (probabilities,
not a vote of last labels, so one confident frame outweighs two unsure ones and a
blurred frame cannot flip a label on its own). The label shown only changes when
the fused evidence for a new age group beats the shown one by a margin, which keeps
labels from flickering between neighbouring groups, and only when that lead is
larger than the noise of the observations behind it (a sequential test: a lead of
0.15 from four scattered frames is chance, from forty it is news).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from stream.config import TrackBookConfig, settings
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

_N_GROUPS = len(AGE_GROUPS)


@dataclass
class TrackEstimate:
    """One track's evidence and its fused view.

    Attributes:
        weights: Quality weight of each kept observation.
        group_probs: ``(8,)`` float32 probability vectors, one per observation.
        ages: Age in years per observation (NaN when the model gives none).
        p_female: P(female) per observation (NaN when the model gives none).
        first_frame / last_seen_frame / last_classified_frame: Frame indices.
        shown_group: Index of the age group currently shown (-1 before the first label).
        n_obs: Observations received in total (the window keeps at most ``max_observations``).
    """

    weights: deque[float]
    group_probs: deque[np.ndarray]
    ages: deque[float]
    p_female: deque[float]
    first_frame: int
    last_seen_frame: int
    last_classified_frame: int = -1
    shown_group: int = -1
    challenger_streak: int = 0
    shown_female: int = -1
    n_obs: int = 0
    fused: dict[str, np.ndarray] = field(default_factory=dict)


class TrackBook:
    """Fused per-track age/gender estimates.

    Built from a :class:`~stream.config.TrackBookConfig` (the ``trackbook:`` section, where defaults and bounds
    live), with keyword overrides: ``TrackBook(min_observations=3)``.

    Args:
        min_observations: Observations needed before a track's label is shown.
        max_observations: Most recent observations kept per track (older ones drop out).
        forget_after_frames: A track unseen for this many frames is forgotten.
        switch_margin: The shown age group changes only when another group's fused
            probability exceeds the shown one's by this much (hysteresis against flicker).
        gender_margin: The shown gender changes only when the fused P(female) crosses 0.5 by
            more than half this margin (0.3: below 0.35 or above 0.65).
        switch_after: ...and only after it has led for this many consecutive observations
            (persistence: one lucky frame cannot flip a label, a real change still does).
        switch_confidence: ...and only when the lead is this many standard errors above zero (the
            spread of the per-observation leads over the square root of their effective count;
            0 turns the test off). The same test guards gender flips (P(female) away from 0.5).
        fusion: "mean" (quality-weighted mean of the probability vectors: robust to one wild
            frame) or "geometric" (weighted mean of log-probabilities, renormalised: the product
            of experts, which sharpens as agreeing evidence accumulates).
    """

    def __init__(self, config: TrackBookConfig | None = None, /, **overrides: Any) -> None:
        settings_ = settings(TrackBookConfig, config, overrides)
        self.min_observations = settings_.min_observations
        self.max_observations = settings_.max_observations
        self.forget_after_frames = settings_.forget_after_frames
        self.switch_margin = settings_.switch_margin
        self.switch_after = settings_.switch_after
        self.switch_confidence = settings_.switch_confidence
        self.gender_margin = settings_.gender_margin
        self.fusion = settings_.fusion
        self.tracks: dict[int, TrackEstimate] = {}

    def __len__(self) -> int:
        return len(self.tracks)

    def _track(self, track_id: int, frame_index: int) -> TrackEstimate:
        estimate = self.tracks.get(track_id)
        if estimate is None:
            k = self.max_observations
            estimate = TrackEstimate(
                deque(maxlen=k), deque(maxlen=k), deque(maxlen=k), deque(maxlen=k), frame_index, frame_index
            )
            self.tracks[track_id] = estimate
        return estimate

    def observe_presence(self, faces: Faces, frame_index: int) -> None:
        """Note that these tracks were seen on this frame (classified or not)."""
        for track_id in faces.track_id.tolist():
            self._track(int(track_id), frame_index).last_seen_frame = frame_index

    def add(self, faces: Faces, estimates: dict[str, np.ndarray], frame_index: int,
            weights: np.ndarray | None = None) -> None:
        """Add one observation per face.

        Args:
            faces: The classified faces (``track_id`` set), ``n`` rows.
            estimates: Classifier outputs with ``n`` rows (any of AGE_GROUP_PROBS, AGE_YEARS, P_FEMALE).
            frame_index: Current frame.
            weights: ``(n,)`` observation quality weights (default 1).
        """
        n = len(faces)
        weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
        probs = estimates.get(AGE_GROUP_PROBS)
        ages = estimates.get(AGE_YEARS)
        females = estimates.get(P_FEMALE)
        for i, track_id in enumerate(faces.track_id.tolist()):
            track = self._track(int(track_id), frame_index)
            track.weights.append(float(weights[i]))
            track.group_probs.append(probs[i] if probs is not None else np.full(_N_GROUPS, np.nan, np.float32))
            track.ages.append(float(ages[i]) if ages is not None else float("nan"))
            track.p_female.append(float(females[i]) if females is not None else float("nan"))
            track.n_obs += 1
            track.last_classified_frame = frame_index
            track.last_seen_frame = frame_index
            self._fuse(track)

    def skip(self, faces: Faces, frame_index: int) -> None:
        """Note a look at these faces that gave no observation (chips too poor to classify,
        :mod:`stream.quality`): the scheduler then waits its interval before trying them again instead of
        putting them first on every frame."""
        for track_id in faces.track_id.tolist():
            track = self._track(int(track_id), frame_index)
            track.last_classified_frame = track.last_seen_frame = frame_index

    @staticmethod
    def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        valid = np.isfinite(values).all(axis=-1) if values.ndim > 1 else np.isfinite(values)
        if not valid.any():
            return np.full(values.shape[1:], np.nan, np.float32)
        w = weights[valid]
        return (values[valid] * w.reshape(-1, *([1] * (values.ndim - 1)))).sum(0) / max(w.sum(), 1e-9)

    def _significant(self, values: np.ndarray, weights: np.ndarray, lead: float) -> bool:
        """Whether ``lead`` (the fused value of ``values``) stands ``switch_confidence`` standard errors clear
        of zero, given how the per-observation ``values`` scatter (weighted; effective count (sum w)^2 / sum w^2).
        """
        if self.switch_confidence <= 0:
            return True
        valid = np.isfinite(values)
        w, v = weights[valid], values[valid]
        if len(v) < 2 or w.sum() <= 0:
            return False
        mean = float((w * v).sum() / w.sum())
        spread = float(np.sqrt((w * (v - mean) ** 2).sum() / w.sum()))
        n_eff = float(w.sum() ** 2 / max((w**2).sum(), 1e-12))
        return abs(lead) > self.switch_confidence * spread / np.sqrt(n_eff)

    def _fuse(self, track: TrackEstimate) -> None:
        weights = np.asarray(track.weights, np.float32)
        group_probs = np.asarray(track.group_probs, np.float32)
        if self.fusion == "geometric":
            # Floor at 1e-4 so one observation's near-zero cannot veto a group for good.
            log_mean = self._weighted_mean(np.log(np.maximum(group_probs, 1e-4)), weights)
            probs = np.exp(log_mean - np.nanmax(log_mean))
            probs = probs / probs.sum()
        else:
            probs = self._weighted_mean(group_probs, weights)
        age = self._weighted_mean(np.asarray(track.ages, np.float32), weights)
        females = np.asarray(track.p_female, np.float32)
        female = self._weighted_mean(females, weights)
        track.fused = {AGE_GROUP_PROBS: probs.astype(np.float32), AGE_YEARS: np.asarray(age, np.float32),
                       P_FEMALE: np.asarray(female, np.float32)}
        if track.n_obs < self.min_observations or not np.isfinite(probs).all():
            return
        best = int(np.argmax(probs))
        if np.isfinite(female):
            wanted, lean = int(female >= 0.5), float(female) - 0.5
            # The significance test runs only for a flip that already clears the margin.
            if track.shown_female < 0 or (wanted != track.shown_female and abs(lean) > self.gender_margin / 2
                                          and self._significant(females - 0.5, weights, lean)):
                track.shown_female = wanted
        shown = track.shown_group
        if shown < 0:
            track.shown_group = best
        elif (best != shown and probs[best] > probs[shown] + self.switch_margin
              and self._significant(group_probs[:, best] - group_probs[:, shown], weights,
                                    float(probs[best] - probs[shown]))):
            track.challenger_streak += 1
            if track.challenger_streak >= self.switch_after:
                track.shown_group, track.challenger_streak = best, 0
        else:
            track.challenger_streak = 0

    def annotate(self, faces: Faces) -> Faces:
        """``faces`` with the fused label arrays added (see ``stream.types`` for names).

        Labels (age group probabilities, age, p_female) are NaN until a track has
        ``min_observations``; ``n_obs`` is always filled.
        """
        n = len(faces)
        probs = np.full((n, _N_GROUPS), np.nan, np.float32)
        ages = np.full(n, np.nan, np.float32)
        females = np.full(n, np.nan, np.float32)
        n_obs = np.zeros(n, np.int32)
        ready = np.zeros(n, bool)
        shown = np.full(n, -1, np.int32)
        shown_female = np.full(n, -1, np.int8)
        for i, track_id in enumerate(faces.track_id.tolist()):
            track = self.tracks.get(int(track_id))
            if track is None:
                continue
            n_obs[i] = track.n_obs
            if track.shown_group < 0:
                continue
            ready[i] = True
            probs[i] = track.fused[AGE_GROUP_PROBS]
            ages[i] = track.fused[AGE_YEARS]
            females[i] = track.fused[P_FEMALE]
            shown[i] = track.shown_group
            shown_female[i] = track.shown_female
        return faces.with_data(
            **{AGE_GROUP_PROBS: probs, AGE_YEARS: ages, P_FEMALE: females, N_OBS: n_obs, LABEL_READY: ready,
               SHOWN_GROUP: shown, SHOWN_FEMALE: shown_female}
        )

    def confidence(self, track_ids: np.ndarray) -> np.ndarray:
        """``(n,)`` confidence of each track's fused age group (0 when unknown)."""
        out = np.zeros(len(track_ids), np.float32)
        for i, track_id in enumerate(track_ids.tolist()):
            track = self.tracks.get(int(track_id))
            if track is not None and track.fused:
                probs = track.fused[AGE_GROUP_PROBS]
                out[i] = float(np.nanmax(probs)) if np.isfinite(probs).any() else 0.0
        return out

    def forget(self, track_ids: np.ndarray | list[int]) -> list[tuple[int, TrackEstimate]]:
        """Drop tracks (e.g. ended by the tracker); returns what was dropped."""
        dropped = []
        for track_id in list(track_ids):
            track = self.tracks.pop(int(track_id), None)
            if track is not None:
                dropped.append((int(track_id), track))
        return dropped

    def merge(self, old: int | TrackEstimate, new_track_id: int) -> TrackEstimate | None:
        """Fold the evidence of an earlier track of the same person into track ``new_track_id`` (re-identification).

        Used when appearance says a new track is a person seen before (:mod:`stream.tracking.identity`): the new
        track's label then rests on all of that person's observations and continues the label shown before,
        instead of starting over at "estimating...".

        Args:
            old: A track id in the book (it is removed from the book) or the estimate of a track that has already
                ended (as :meth:`forget` returned it).
            new_track_id: The track that carries on; created if it has no entry yet.

        Returns:
            The old track's estimate as it was before the merge, or None when ``old`` is an id the book does not
            hold (nothing changes then).
        """
        earlier = self.tracks.pop(int(old), None) if isinstance(old, (int, np.integer)) else old
        if earlier is None:
            return None
        track = self._track(int(new_track_id), earlier.first_frame)
        # Every per-observation window (deque), whatever fields the estimate has: the earlier observations first, so
        # the window keeps the most recent ones.
        for f in fields(track):
            mine = getattr(track, f.name)
            if isinstance(mine, deque):
                setattr(track, f.name, deque([*getattr(earlier, f.name), *mine], maxlen=mine.maxlen))
        track.n_obs += earlier.n_obs
        track.first_frame = min(track.first_frame, earlier.first_frame)
        track.last_seen_frame = max(track.last_seen_frame, earlier.last_seen_frame)
        track.last_classified_frame = max(track.last_classified_frame, earlier.last_classified_frame)
        # The label shown carries on (hysteresis is about what the user saw), then the evidence is fused again.
        if earlier.shown_group >= 0:
            track.shown_group, track.challenger_streak = earlier.shown_group, 0
        if earlier.shown_female >= 0:
            track.shown_female = earlier.shown_female
        if track.weights:
            self._fuse(track)
        return earlier

    def prune(self, frame_index: int) -> list[tuple[int, TrackEstimate]]:
        """Forget tracks unseen for ``forget_after_frames``; returns what was dropped."""
        stale = [t for t, e in self.tracks.items() if frame_index - e.last_seen_frame > self.forget_after_frames]
        return self.forget(stale)
