"""ByteTrack-style multi-object tracking of faces.

:class:`ByteTracker` follows ByteTrack (Zhang et al., ECCV 2022): a constant-velocity Kalman
filter per track, a first association of confident detections to every live track by IoU with
Hungarian assignment, a second association that lets low-confidence detections (blurred, turned
or partly occluded faces) keep an existing track alive, and a short memory for lost tracks so a
face that is briefly hidden gets its old id back.

It differs from the reference implementation where faces or the product need it:

* Visible ids are handed out only when a track is confirmed, so false positives that die young
  never consume an id and the ids users see run 1, 2, 3... without gaps.
* The returned rows are the caller's own detections (boxes, landmarks, extras untouched) with
  ``track_id`` filled in, never Kalman-smoothed boxes, so landmarks stay consistent with boxes.
* The cost is plain ``1 - IoU``, without ByteTrack's ``fuse_score`` (``1 - IoU * score``). Faces
  are small and move fast relative to their size, so their IoU between frames is low already;
  gating the fused cost demands IoU >= 0.33 from a face detected at score 0.6 instead of 0.2. On
  simulated streams of 16-48 px faces moving 0.05-0.6 box widths per frame, fusing the gate gave
  7-35 % more ids and 16-140 % more id switches, and fusing only the assignment (ties between
  competing detections) changed nothing measurable, so the simpler cost stays.
* Tentative tracks are predicted like all others and matched with the same gate as confirmed ones.

The Kalman filter is in :mod:`stream.tracking.kalman`, the association (IoU, Hungarian) in
:mod:`stream.tracking.matching`; identity across shots and re-identification by appearance are a separate
stage (:mod:`stream.tracking.identity`), which tells the tracker when to end a track (:meth:`ByteTracker.end`,
:meth:`ByteTracker.cut`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from stream.config import TrackerConfig, settings
from stream.tracking.kalman import kf_initiate, kf_predict, kf_update, xyah_to_xyxy, xyxy_to_xyah
from stream.tracking.matching import match
from stream.types import NO_TRACK, Faces

# ByteTrack's gate for the second association (low-score detections): a blurred or partly
# occluded detection must overlap the track's prediction well to be trusted, because these
# detections are also where the detector's false positives live.
_LOW_SCORE_MAX_COST = 0.5


class _State(Enum):
    TENTATIVE = 0  # seen, not yet for minimum_consecutive_frames in a row; no visible id
    TRACKED = 1  # confirmed and matched on the latest frame
    LOST = 2  # confirmed, unmatched for a while, kept to be re-identified


@dataclass(eq=False)  # identity equality and hashing: tracks are collected in sets
class _Track:
    mean: np.ndarray  # (8,) float64 Kalman state (cx, cy, a, h, vcx, vcy, va, vh)
    cov: np.ndarray  # (8, 8) float64
    state: _State
    track_id: int  # visible id, NO_TRACK while tentative
    hits: int  # consecutive frames matched
    last_frame: int  # frame number of the latest match


class ByteTracker:
    """ByteTrack multi-object tracker for faces; owns the id counter.

    Built from a :class:`~stream.config.TrackerConfig` (the ``tracker:`` section, where defaults and bounds
    live), with keyword overrides: ``ByteTracker(config.tracker, frame_rate=25.0)``.

    Each call to :meth:`update` is one frame. Detections with ``score >=
    track_activation_threshold`` are matched first, to confirmed tracks (tracked or lost), then
    to tentative ones, and start new tracks when left over; detections with
    ``low_score_threshold <= score < track_activation_threshold`` can only continue a track that
    was tracked on the previous frame. A track becomes visible (gets an id) after
    ``minimum_consecutive_frames`` consecutive matches, and is removed after more than
    ``lost_track_buffer * frame_rate / 30`` frames without one.

    Args:
        track_activation_threshold: Detection score in ``[0, 1]`` from which a detection may start
            a track or take part in the first association.
        low_score_threshold: Detection score in ``[0, track_activation_threshold]`` below which
            detections are ignored; between the two thresholds they may only continue tracks.
        minimum_matching_threshold: Largest ``1 - IoU`` in ``(0, 1]`` accepted between a track's
            predicted box and a confident detection (ByteTrack's ``match_thresh``).
        lost_track_buffer: Frames (at 30 fps) a lost track is kept to be re-identified, ``>= 0``.
        frame_rate: Frame rate of the stream in frames per second, ``> 0``; scales
            ``lost_track_buffer`` so the memory lasts the same time at any rate.
        minimum_consecutive_frames: Consecutive matched frames, ``>= 1``, before a track is
            confirmed and its id shown.

    Raises:
        TypeError: An argument has the wrong type or an unknown name.
        ValueError: An argument is out of range.
    """

    def __init__(self, config: TrackerConfig | None = None, /, **overrides: Any) -> None:
        settings_ = settings(TrackerConfig, config, overrides)
        self.track_activation_threshold = settings_.track_activation_threshold
        self.low_score_threshold = settings_.low_score_threshold
        self.minimum_matching_threshold = settings_.minimum_matching_threshold
        self.lost_track_buffer = settings_.lost_track_buffer
        self.frame_rate = settings_.frame_rate
        self.minimum_consecutive_frames = settings_.minimum_consecutive_frames
        # ByteTrack's max_time_lost: the buffer is given in frames at 30 fps so that the memory
        # lasts the same time whatever the stream's rate.
        self._max_frames_lost = self.lost_track_buffer * self.frame_rate / 30.0
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 1, as a newly built tracker.

        Downstream per-track state (e.g. the TrackBook) must be reset with it, since ids repeat.
        """
        self._tracks: list[_Track] = []
        self._frame = 0
        self._next_id = 1
        self._ended = np.empty(0, np.int64)
        # Ids ended by a cut before an update: reported with that update's.
        self._ended_early: list[int] = []

    @property
    def ended_track_ids(self) -> np.ndarray:
        """``(k,)`` int64 ids, ascending, of confirmed tracks removed during the latest update (a cut before it,
        :meth:`end` and :meth:`restart` after it included)."""
        return self._ended.copy()

    @property
    def active_track_ids(self) -> np.ndarray:
        """``(k,)`` int64 ids, ascending, of confirmed tracks currently tracked or lost."""
        ids = [t.track_id for t in self._tracks if t.state is not _State.TENTATIVE]
        return np.sort(np.asarray(ids, dtype=np.int64))

    def update(self, faces: Faces) -> Faces:
        """Advance all tracks by one frame and associate this frame's detections.

        Args:
            faces: This frame's detections; their ``track_id`` is ignored.

        Returns:
            The rows of ``faces`` that belong to a confirmed track this frame, in input order,
            with ``track_id`` set (int64, >= 1) and every other field as given.

        Raises:
            TypeError: If ``faces`` is not a :class:`Faces`.
        """
        if not isinstance(faces, Faces):
            raise TypeError(f"faces must be a Faces, got {type(faces).__name__}")
        self._frame += 1
        self._predict()

        score = faces.score
        high = np.flatnonzero(score >= self.track_activation_threshold)
        low = np.flatnonzero((score >= self.low_score_threshold) & (score < self.track_activation_threshold))
        out_rows: list[int] = []
        out_ids: list[int] = []

        # 1. Confident detections against every confirmed track, lost ones included, so a face
        # that reappears is re-identified before anything else can claim it.
        confirmed = [t for t in self._tracks if t.state is not _State.TENTATIVE]
        matches, left_tracks, left_high = self._associate(confirmed, faces, high, self.minimum_matching_threshold)
        for ti, di in matches:
            track = confirmed[ti]
            track.state = _State.TRACKED
            out_rows.append(int(high[di]))
            out_ids.append(track.track_id)
        high = high[left_high]

        # 2. Low-score detections only continue tracks that were tracked until the last frame: a
        # blurred or turned face is kept, but a weak detection is not evidence enough to revive a
        # lost track.
        remaining = [confirmed[i] for i in left_tracks if confirmed[i].state is _State.TRACKED]
        matches, left_tracks, _ = self._associate(remaining, faces, low, _LOW_SCORE_MAX_COST)
        for ti, di in matches:
            out_rows.append(int(low[di]))
            out_ids.append(remaining[ti].track_id)
        for i in left_tracks:
            remaining[i].state = _State.LOST

        # 3. Leftover confident detections against tentative tracks. The same gate as confirmed
        # tracks (ByteTrack uses a stricter one) because a new track has no velocity estimate
        # yet and a fast face moves far between its first two frames.
        tentative = [t for t in self._tracks if t.state is _State.TENTATIVE]
        matches, left_tracks, left_high = self._associate(tentative, faces, high, self.minimum_matching_threshold)
        dead = {tentative[i] for i in left_tracks}  # one miss and a tentative track is gone
        for ti, di in matches:
            track = tentative[ti]
            track.hits += 1
            if self._try_confirm(track):
                out_rows.append(int(high[di]))
                out_ids.append(track.track_id)
        high = high[left_high]

        # 4. New tracks from the confident detections nobody claimed.
        if len(high):
            means, covs = kf_initiate(xyxy_to_xyah(faces.xyxy[high]))
            for row, mean, cov in zip(high, means, covs, strict=True):
                track = _Track(mean, cov, _State.TENTATIVE, NO_TRACK, hits=1, last_frame=self._frame)
                self._tracks.append(track)
                if self._try_confirm(track):
                    out_rows.append(int(row))
                    out_ids.append(track.track_id)

        # 5. Forget tentative tracks that missed and confirmed ones lost for too long.
        ended: list[int] = []
        kept: list[_Track] = []
        for track in self._tracks:
            if track in dead:
                continue
            if track.state is _State.LOST and self._frame - track.last_frame > self._max_frames_lost:
                ended.append(track.track_id)
                continue
            kept.append(track)
        self._tracks = kept
        self._ended = np.sort(np.asarray(ended + self._ended_early, dtype=np.int64))
        self._ended_early = []

        # Input order makes the output deterministic and easy to line up with the detections.
        order = np.argsort(np.asarray(out_rows, dtype=np.int64), kind="stable")
        picked = faces[np.asarray(out_rows, dtype=np.int64)[order]]
        return Faces(
            xyxy=picked.xyxy,
            score=picked.score,
            landmarks=picked.landmarks,
            track_id=np.asarray(out_ids, dtype=np.int64)[order],
            data=picked.data,
        )

    def coast(self, previous: Faces) -> Faces:
        """Advance one frame on which detection was skipped on purpose (``detector.interval``).

        Every track moves with its motion model; a skipped frame is not a miss, so tracked faces stay
        tracked and no id ends. The faces returned are the ``previous`` frame's output rows whose
        tracks are still tracked, with boxes from the motion model and landmarks moved and scaled
        with their box (good enough to draw; the pipeline classifies only on detection frames).

        Args:
            previous: What :meth:`update` or :meth:`coast` returned on the previous frame.

        Returns:
            Those faces on this frame, in the same row order.

        Raises:
            TypeError: If ``previous`` is not a :class:`Faces`.
        """
        if not isinstance(previous, Faces):
            raise TypeError(f"previous must be a Faces, got {type(previous).__name__}")
        self._frame += 1
        self._predict()
        self._ended = np.asarray(sorted(self._ended_early), dtype=np.int64)
        self._ended_early = []
        tracked = {t.track_id: t for t in self._tracks if t.state is _State.TRACKED}
        for track in tracked.values():
            track.last_frame = self._frame
        keep = np.array([int(i) in tracked for i in previous.track_id], dtype=bool)
        faces = previous[keep]
        if not len(faces):
            return faces
        new_xyxy = xyah_to_xyxy(np.stack([tracked[int(i)].mean for i in faces.track_id])).astype(np.float32)
        old_centre = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
        new_centre = (new_xyxy[:, :2] + new_xyxy[:, 2:]) / 2
        scale = (new_xyxy[:, 2:] - new_xyxy[:, :2]) / np.maximum(faces.xyxy[:, 2:] - faces.xyxy[:, :2], 1e-3)
        landmarks = (faces.landmarks - old_centre[:, None]) * scale[:, None] + new_centre[:, None]
        return Faces(xyxy=new_xyxy, score=faces.score, landmarks=landmarks, track_id=faces.track_id, data=faces.data)

    def cut(self) -> None:
        """The picture was replaced (a hard cut, :mod:`stream.tracking.cuts`): every track ends now.

        Boxes on either side of a cut belong to different shots, so no track may continue across it by position;
        a person seen in both shots is re-identified by appearance (:mod:`stream.tracking.identity`). The ended
        ids are reported by the next :meth:`update` or :meth:`coast` (``ended_track_ids``). Ids keep counting.
        """
        self._ended_early.extend(t.track_id for t in self._tracks if t.state is not _State.TENTATIVE)
        self._tracks = []

    def end(self, track_id: int) -> None:
        """End one confirmed track now (e.g. its person was re-identified on another track); unknown ids are
        ignored. Called after an update, the id is added to that update's ``ended_track_ids``."""
        kept = [t for t in self._tracks if t.track_id != track_id or t.state is _State.TENTATIVE]
        if len(kept) != len(self._tracks):
            self._ended = np.sort(np.append(self._ended, np.int64(track_id)))
            self._tracks = kept

    def restart(self, track_id: int) -> int:
        """Give a confirmed track a new id: its box moved on to another person (appearance disagrees).

        The motion state stays (the box is where the detector sees the face); the old id ends, added to the latest
        update's ``ended_track_ids`` as for :meth:`end`.

        Returns:
            The new id, or ``track_id`` itself when no confirmed track has it.
        """
        for track in self._tracks:
            if track.track_id == track_id and track.state is not _State.TENTATIVE:
                self._ended = np.sort(np.append(self._ended, np.int64(track_id)))
                track.track_id = self._next_id
                self._next_id += 1
                return track.track_id
        return int(track_id)

    def _predict(self) -> None:
        """Move every track one frame forward."""
        if not self._tracks:
            return
        for track in self._tracks:
            if track.state is _State.LOST:
                # As ByteTrack: a lost track keeps moving but stops growing or shrinking, so its
                # box does not collapse or balloon over a long occlusion.
                track.mean[7] = 0.0
        means, covs = kf_predict(np.stack([t.mean for t in self._tracks]), np.stack([t.cov for t in self._tracks]))
        for track, mean, cov in zip(self._tracks, means, covs, strict=True):
            track.mean, track.cov = mean, cov

    def _associate(
        self, tracks: list[_Track], faces: Faces, rows: np.ndarray, max_cost: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Match ``tracks`` with ``faces[rows]`` and correct the matched tracks' filters.

        Returns:
            ``_match``'s result, detection indices relative to ``rows``.
        """
        track_xyxy = xyah_to_xyxy(np.stack([t.mean for t in tracks])) if tracks else np.empty((0, 4), np.float64)
        matches, left_tracks, left_dets = match(track_xyxy, faces.xyxy[rows], max_cost)
        if len(matches):
            matched = [tracks[i] for i in matches[:, 0]]
            means, covs = kf_update(
                np.stack([t.mean for t in matched]),
                np.stack([t.cov for t in matched]),
                xyxy_to_xyah(faces.xyxy[rows[matches[:, 1]]]),
            )
            for track, mean, cov in zip(matched, means, covs, strict=True):
                track.mean, track.cov = mean, cov
                track.last_frame = self._frame
        return matches, left_tracks, left_dets

    def _try_confirm(self, track: _Track) -> bool:
        """Confirm a tentative track once it has enough consecutive hits; True if now confirmed."""
        if track.hits < self.minimum_consecutive_frames:
            return False
        track.state = _State.TRACKED
        # Ids are numbered at confirmation, not creation, so short-lived false positives never
        # consume one and visible ids have no gaps.
        track.track_id = self._next_id
        self._next_id += 1
        return True
