"""Which tracked faces to classify on this frame.

Classification is the expensive stage and its value per call falls quickly once a
track's estimate has settled, so the scheduler spends a fixed per-frame budget
where it buys the most: tracks without a label first (time to first label is what
users notice), then tracks that are overdue for a refresh, the least certain and
the most overdue first. Faces too small or too unsure to classify well are tracked
but never classified.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.config import SchedulerConfig, settings
from stream.plausible import plausible_faces
from stream.trackbook import TrackBook
from stream.types import PLAUSIBLE, Faces


class Scheduler:
    """Per-frame classification budget over tracked faces.

    Built from a :class:`~stream.config.SchedulerConfig` (the ``scheduler:`` section, where defaults and bounds
    live), with keyword overrides.

    Args:
        max_faces_per_frame: Most faces classified on one frame (0 = no limit).
        min_face_size: Faces whose shorter box side is below this many pixels are not classified.
        min_score: Faces with a lower detector score are not classified.
        check_faces: Detections that fail :mod:`stream.plausible`'s checks (the top of a head stacked on a face,
            landmarks out of a face's order) are tracked but never classified (:meth:`mark`).
        warmup_interval_frames: Frames between classifications of a track until it has a label.
        refresh_interval_frames: Frames between classifications of a labelled track.
        settled_observations: After this many observations a track is settled...
        settled_interval_frames: ...and is re-classified only this often.
    """

    def __init__(self, config: SchedulerConfig | None = None, /, **overrides: Any) -> None:
        settings_ = settings(SchedulerConfig, config, overrides)
        self.max_faces_per_frame = settings_.max_faces_per_frame
        self.min_face_size = settings_.min_face_size
        self.min_score = settings_.min_score
        self.check_faces = settings_.check_faces
        self.warmup_interval_frames = settings_.warmup_interval_frames
        self.refresh_interval_frames = settings_.refresh_interval_frames
        self.settled_observations = settings_.settled_observations
        self.settled_interval_frames = settings_.settled_interval_frames
        # Per track: detection frames seen, and how many of them failed the face checks (see select()).
        self._checked: dict[int, list[int]] = {}

    def mark(self, detections: Faces) -> Faces:
        """``detections`` (all of one frame's, before tracking: the checks compare boxes with each other) with
        :data:`~stream.types.PLAUSIBLE` set, when ``check_faces`` is on; unchanged otherwise."""
        if not self.check_faces:
            return detections
        return detections.with_data(**{PLAUSIBLE: plausible_faces(detections)})

    def _mostly_plausible(self, faces: Faces) -> np.ndarray:
        """``(n,)`` bool: tracks that passed the face checks on most of their detection frames so far.

        The top of a bowed head is stacked on its face on most frames, but not on the frames where the face itself
        is missed; judged frame by frame it would still be classified there (and labelled). Judged over its life it
        never is.
        """
        plausible = faces.data.get(PLAUSIBLE)
        if plausible is None or not self.check_faces:
            return np.ones(len(faces), bool)
        out = np.empty(len(faces), bool)
        for i, (track_id, passed) in enumerate(zip(faces.track_id.tolist(), plausible.tolist())):
            counts = self._checked.setdefault(int(track_id), [0, 0])
            counts[0] += 1
            counts[1] += not passed
            out[i] = counts[1] * 2 < counts[0]
        return out

    def forget(self, track_ids: np.ndarray | list[int]) -> None:
        """Drop the per-track state of tracks that ended."""
        for track_id in list(track_ids):
            self._checked.pop(int(track_id), None)

    def eligible(self, faces: Faces) -> np.ndarray:
        """``(n,)`` bool: faces big and sure enough to classify, with usable landmarks, and plausible when
        :meth:`mark` judged them."""
        finite = np.isfinite(faces.landmarks).all(axis=(1, 2))
        ok = (faces.size >= self.min_face_size) & (faces.score >= self.min_score) & finite
        plausible = faces.data.get(PLAUSIBLE)
        return ok if plausible is None or not self.check_faces else ok & plausible.astype(bool)

    def select(self, faces: Faces, book: TrackBook, frame_index: int, min_observations: int) -> np.ndarray:
        """Choose the faces to classify now.

        Args:
            faces: Tracked faces on this frame (``track_id`` set).
            book: The track book (observation counts, last classification, confidence).
            frame_index: Current frame index.
            min_observations: Observations a track needs before its label is shown.

        Returns:
            ``(n,)`` bool mask over ``faces``.
        """
        n = len(faces)
        chosen = np.zeros(n, bool)
        if n == 0:
            return chosen
        ok = self.eligible(faces) & self._mostly_plausible(faces)
        n_obs = np.zeros(n, np.int64)
        since = np.full(n, np.inf)
        for i, track_id in enumerate(faces.track_id.tolist()):
            track = book.tracks.get(int(track_id))
            if track is not None and track.last_classified_frame >= 0:
                n_obs[i] = track.n_obs
                since[i] = frame_index - track.last_classified_frame
        interval = np.where(
            n_obs < min_observations,
            self.warmup_interval_frames,
            np.where(n_obs < self.settled_observations, self.refresh_interval_frames, self.settled_interval_frames),
        )
        due = ok & (since >= interval)
        if not due.any():
            return chosen
        # Tiers: never classified (0), still without a label (1), labelled (2). Within a tier the
        # most overdue and least certain go first, bigger faces breaking ties (better chips).
        tier = np.where(n_obs == 0, 0, np.where(n_obs < min_observations, 1, 2))
        uncertainty = 1.0 - book.confidence(faces.track_id)
        overdue = np.minimum(since / interval, 1e6)
        urgency = overdue * (1.0 + uncertainty)
        order = np.lexsort((-faces.size, -urgency, tier))
        order = order[due[order]]
        if self.max_faces_per_frame:
            order = order[: self.max_faces_per_frame]
        chosen[order] = True
        return chosen
