"""People, not tracks: hard cuts end tracks, appearance keeps a track on one person and finds people again.

The tracker follows boxes; this stage says whose face a box is. It owns three decisions:

* **Cuts** (:mod:`stream.tracking.cuts`): on a frame that replaces the picture, every track ends
  (:meth:`~stream.tracking.ByteTracker.cut`), so no track and no fused label runs from one shot into the next by
  position alone.
* **Refusal**: each time the scheduler classifies a tracked face, its embedding is computed from the same aligned
  pass (never on every face of every frame) and compared with the track's own embeddings. A face farther than
  ``reject_distance`` from them is another person the box has slid onto (an undetected cut, two people crossing):
  the track is given a new id (:meth:`~stream.tracking.ByteTracker.restart`), so the old person's track and label
  end there and the new face starts its own.
* **Re-identification**: a track whose person is new is compared, on each of its first ``reid_attempts``
  embeddings, with the people not visible on this frame and seen within ``reid_horizon_s``; the nearest one within
  that person's own radius (:data:`SPREAD_FACTOR` times the spread of their embeddings, at most ``reid_distance``;
  ``reid_distance`` itself where they were lost a moment ago at the same place of the same shot) is the same
  person. The track takes that ``person_id``, the person's earlier evidence is merged into it
  (:meth:`~stream.trackbook.TrackBook.merge`: the label carries on), and a lost track of that person still held by
  the tracker ends.

Only faces whose embedding can say who they are get one (:meth:`Identities.wants_embedding`): at least
``min_face_size`` pixels, wholly inside the frame, overlapping no other face.

Every face carries a ``person_id`` (:data:`stream.types.PERSON_ID`) beside its ``track_id``: a new track starts as a
new person, and may take an earlier person's id during its first classifications. Person ids are never reused; a
person unseen for longer than ``reid_horizon_s`` is forgotten.

Distances are Euclidean between embeddings (dlib's descriptors: below 0.6 for one person); a person is represented
by the mean of its most recent embeddings, which is steadier than any single chip.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stream.config import IdentityConfig, settings
from stream.trackbook import TrackBook, TrackEstimate
from stream.tracking.cuts import CutDetector
from stream.tracking.matching import iou_xyxy
from stream.types import PERSON_ID, Faces

logger = logging.getLogger(__name__)

#: Embeddings kept per track (the refusal test) and per person (re-identification): the most recent ones.
TRACK_EMBEDDINGS = 16
PERSON_EMBEDDINGS = 32
#: A person is re-identified within ``SPREAD_FACTOR`` times their own embeddings' mean distance from their centre
#: (never beyond ``reid_distance``, never below ``MIN_RADIUS``). One fixed threshold cannot serve everybody: on the
#: shared clips one person's faces lie up to 0.41 from her centre while two different men's centres are 0.41 apart
#: (dlib's descriptors place some people close together), and the people with tight clusters are the ones others
#: fall near. Measured per person it separates both (``python -m bench.identity``).
SPREAD_FACTOR = 2.0
MIN_RADIUS = 0.3
MIN_SPREAD_SAMPLES = 3
#: A face that reappears in the same shot, where a person was lost (IoU >= ``SAME_PLACE_IOU`` with their last box)
#: within ``SAME_PLACE_S`` seconds, is taken for them up to ``reid_distance``: a person covered for a moment comes
#: back where they were, often turned (2 s behind a patch on talking_woman_512: 0.48 from her centre).
SAME_PLACE_IOU = 0.3
SAME_PLACE_S = 5.0


class Embedder(Protocol):
    """What this stage needs of a face-embedding model (:class:`stream.tracking.appearance.FaceEmbedder`)."""

    template: str
    chip_size: int

    def embed(self, chips: np.ndarray) -> np.ndarray: ...


class TrackControl(Protocol):
    """What this stage needs of the tracker (:class:`stream.tracking.ByteTracker`)."""

    def end(self, track_id: int) -> None: ...

    def restart(self, track_id: int) -> int: ...


@dataclass
class _Person:
    person_id: int
    last_seen_s: float
    shot: int = 0  # the shot (count of cuts) they were last seen in
    last_box: np.ndarray | None = None  # (4,) xyxy where they were last seen
    embeddings: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=PERSON_EMBEDDINGS))
    tracks: set[int] = field(default_factory=set)  # live tracks (at most one outside a merge)
    evidence: TrackEstimate | None = None  # the fused evidence of its latest ended track, for a merge

    def centre(self) -> np.ndarray:
        return np.mean(np.stack(self.embeddings), axis=0)

    def radius(self, limit: float) -> float:
        """How far a face of this person may be from their centre to be taken for them: ``SPREAD_FACTOR`` times the
        mean distance of their own embeddings from it, within ``[MIN_RADIUS, limit]`` (``MIN_RADIUS`` while they
        have fewer than ``MIN_SPREAD_SAMPLES`` embeddings)."""
        if len(self.embeddings) < MIN_SPREAD_SAMPLES:
            return min(MIN_RADIUS, limit)
        stacked = np.stack(self.embeddings)
        spread = float(np.linalg.norm(stacked - stacked.mean(axis=0), axis=1).mean())
        return min(max(SPREAD_FACTOR * spread, MIN_RADIUS), limit)


@dataclass
class _Track:
    person_id: int
    shot: int = 0  # the shot it started in
    first_box: np.ndarray | None = None  # (4,) xyxy where it started
    embeddings: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=TRACK_EMBEDDINGS))
    observed: int = 0  # embeddings computed so far
    reid_open: bool = True  # its person is new: it may still turn out to be someone seen before

    def centre(self) -> np.ndarray:
        return np.mean(np.stack(self.embeddings), axis=0)


@dataclass
class IdentityStats:
    """What the stage decided so far (reported by the benchmarks and the run's totals)."""

    cuts: int = 0
    refused: int = 0  # tracks restarted because the face on them was another person
    reidentified: int = 0  # tracks that took the id of a person seen before

    def as_dict(self) -> dict[str, int]:
        return {"cuts": self.cuts, "refused_matches": self.refused, "reidentified_tracks": self.reidentified}


class Identities:
    """Person ids for tracks: cut detection, appearance refusal and re-identification.

    Built from an :class:`~stream.config.IdentityConfig` (the ``identity:`` section, where defaults and bounds live),
    with keyword overrides, and the embedding model (built from ``embedding_model`` by
    :func:`stream.tracking.appearance.build_embedder`; None: cuts and person ids only, no appearance).

    Args:
        embedding_model: Registry name of the face-embedding model; ``none`` turns appearance off (every track is
            then its own person, and nothing is refused).
        cut_histogram_threshold: Colour histogram change between consecutive frames (total variation, 0-1) that
            marks a hard cut; 1 turns this test off.
        cut_difference_threshold: Mean absolute difference of consecutive grey thumbnails (0-1) that marks a hard
            cut; 1 turns this test off.
        reject_distance: A classified face farther than this from its track's embeddings is another person: the
            track is restarted under a new id (``inf``: never).
        reid_distance: A new track within this distance of a person not in view is that person.
        reid_horizon_s: How long (seconds of stream time) a person who left can be re-identified.
        reid_attempts: Classifications of a new track during which it may still be re-identified.
        min_face_size: Faces smaller than this (pixels, shorter box side) get no embedding: upsampled to the model's
            150-pixel chip they look alike (on crowd_1080p.mp4, 40-110 px faces of two people came closer than two
            views of one).
    """

    def __init__(self, config: IdentityConfig | None = None, /, *, embedder: Embedder | None = None,
                 **overrides: Any) -> None:
        settings_ = settings(IdentityConfig, config, overrides)
        self.embedding_model = settings_.embedding_model
        self.cut_histogram_threshold = settings_.cut_histogram_threshold
        self.cut_difference_threshold = settings_.cut_difference_threshold
        self.reject_distance = settings_.reject_distance
        self.reid_distance = settings_.reid_distance
        self.reid_horizon_s = settings_.reid_horizon_s
        self.reid_attempts = settings_.reid_attempts
        self.min_face_size = settings_.min_face_size
        self.embedder = embedder
        self.cuts = CutDetector(self.cut_histogram_threshold, self.cut_difference_threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every person and track (with the tracker's reset: track ids repeat)."""
        self._people: dict[int, _Person] = {}
        self._tracks: dict[int, _Track] = {}
        self._next_person = 1
        self.stats = IdentityStats()
        self.cuts.reset()

    @property
    def chip_input(self) -> tuple[str, int] | None:
        """``(template, size)`` of the embedding model's aligned chips, or None without one."""
        return None if self.embedder is None else (self.embedder.template, self.embedder.chip_size)

    def is_cut(self, image: np.ndarray) -> bool:
        """Whether ``image`` starts a new shot (call on every frame, in order)."""
        cut = self.cuts.is_cut(image)
        self.stats.cuts += cut
        return cut

    def person_of(self, track_id: int) -> int | None:
        """The person id of a live (or just ended) track, None for an unknown track."""
        track = self._tracks.get(int(track_id))
        return None if track is None else track.person_id

    def label(self, faces: Faces, now_s: float | None = None) -> Faces:
        """``faces`` with :data:`~stream.types.PERSON_ID` (int64) filled in; a track seen for the first time starts
        a new person. ``now_s`` (stream time) marks the people seen."""
        ids = np.empty(len(faces), np.int64)
        shot = self.stats.cuts
        for i, track_id in enumerate(faces.track_id.tolist()):
            track = self._tracks.get(int(track_id))
            if track is None:
                track = self._tracks[int(track_id)] = _Track(self._new_person(int(track_id), now_s or 0.0), shot,
                                                             faces.xyxy[i].copy())
            ids[i] = track.person_id
            person = self._people[track.person_id]
            person.shot, person.last_box = shot, faces.xyxy[i].copy()
            if now_s is not None:
                person.last_seen_s = now_s
        return faces.with_data(**{PERSON_ID: ids})

    def wants_embedding(self, faces: Faces, image_shape: tuple[int, ...]) -> np.ndarray:
        """``(n,)`` bool: faces whose embedding can be trusted to say who they are, when there is an embedding model.

        Such a face is big enough (``min_face_size``), wholly inside the frame, and overlaps no other face of the
        frame: a face cut by the frame's edge or partly covered by another one gives an embedding of part of a face
        (on the generated videos, where faces slide in over the edge and pass behind each other, these were
        0.65 from their own track's and restarted it).

        Args:
            faces: All the tracked faces of the frame.
            image_shape: The frame's ``(H, W, ...)``.
        """
        if self.embedder is None or not len(faces):
            return np.zeros(len(faces), bool)
        xyxy = faces.xyxy.astype(np.float64)
        height, width = image_shape[:2]
        # A box on the frame's edge (detectors may clip boxes to the frame) is cut by it: a pixel of margin.
        inside = (xyxy[:, 0] >= 1) & (xyxy[:, 1] >= 1) & (xyxy[:, 2] <= width - 1) & (xyxy[:, 3] <= height - 1)
        overlap = iou_xyxy(xyxy, xyxy)
        np.fill_diagonal(overlap, 0.0)
        return (faces.size >= self.min_face_size) & inside & ~(overlap > 0).any(axis=1)

    def observe(self, faces: Faces, rows: np.ndarray, embeddings: np.ndarray, now_s: float, tracker: TrackControl,
                book: TrackBook) -> tuple[Faces, list[tuple[int, TrackEstimate]]]:
        """Take the embeddings of the faces classified on this frame: refuse, then re-identify.

        Call before the classifications are added to ``book``, so a refused track's new id receives them.

        Args:
            faces: This frame's tracked faces, labelled by :meth:`label`.
            rows: ``(k,)`` int indices of the classified faces in ``faces``.
            embeddings: ``(k, d)`` float32 embeddings of those faces.
            now_s: Stream time of the frame (seconds).
            tracker: Told to restart refused tracks and to end lost tracks of re-identified people.
            book: Evidence of re-identified people is merged into their new track.

        Returns:
            ``faces`` with new track ids on refused rows and updated person ids, and the ``(track_id, estimate)`` of
            live tracks that were merged into another one (they ended: the caller summarises them, with
            :meth:`person_of`, before :meth:`end_tracks`).
        """
        track_ids = faces.track_id.copy()
        swallowed: list[tuple[int, TrackEstimate]] = []
        visible = {self._tracks[int(t)].person_id for t in track_ids if int(t) in self._tracks}
        for row, embedding in zip(np.asarray(rows, np.int64).tolist(), np.asarray(embeddings, np.float32)):
            track_id = int(track_ids[row])
            track = self._tracks.get(track_id)
            if track is None:  # not labelled: treat as a new track
                track = self._tracks[track_id] = _Track(self._new_person(track_id, now_s))
            distance = _distance(embedding, track.centre()) if track.embeddings else 0.0
            if distance > self.reject_distance:
                logger.debug("t=%.2f track %d: face %.3f from its track: another person", now_s, track_id, distance)
                track_id, track = self._refuse(track_id, tracker, now_s)
                track_ids[row] = track_id
            track.embeddings.append(embedding)
            track.observed += 1
            person = self._people[track.person_id]
            person.embeddings.append(embedding)
            if track.reid_open:
                swallowed += self._reidentify(track_id, track, visible, now_s, tracker, book)
        faces = Faces(faces.xyxy, faces.score, faces.landmarks, track_ids, dict(faces.data))
        return self.label(faces, now_s), swallowed

    def end_tracks(self, ended: Iterable[tuple[int, TrackEstimate | None]], now_s: float) -> dict[int, int]:
        """Tracks that ended (tracker or book): keep their evidence with their person for a later re-identification.

        Returns:
            ``{track_id: person_id}`` of the ended tracks this stage knew (for their summaries).
        """
        persons: dict[int, int] = {}
        for track_id, estimate in ended:
            track = self._tracks.pop(int(track_id), None)
            if track is None:
                continue
            persons[int(track_id)] = track.person_id
            person = self._people.get(track.person_id)
            if person is None:
                continue
            person.tracks.discard(int(track_id))
            if estimate is not None:
                person.evidence = estimate
        self._forget_people(now_s)
        return persons

    # ---------------------------------------------------------------------------------------------------------

    def _new_person(self, track_id: int, now_s: float) -> int:
        person = _Person(self._next_person, now_s)
        person.tracks.add(track_id)
        self._people[person.person_id] = person
        self._next_person += 1
        return person.person_id

    def _refuse(self, track_id: int, tracker: TrackControl, now_s: float) -> tuple[int, _Track]:
        """The face on ``track_id`` is another person: the tracker restarts the box under a new id and new person.

        The old id ends (the tracker reports it), its evidence stays with its person.
        """
        new_id = tracker.restart(track_id)
        self.stats.refused += 1
        track = self._tracks[new_id] = _Track(self._new_person(new_id, now_s))
        return new_id, track

    def _reidentify(self, track_id: int, track: _Track, visible: set[int], now_s: float, tracker: TrackControl,
                    book: TrackBook) -> list[tuple[int, TrackEstimate]]:
        """Give ``track`` the id of the nearest person out of view, if near enough; merge that person's evidence."""
        centre = track.centre()
        best, best_distance, nearest = None, np.inf, np.inf
        for person in self._people.values():
            if (person.person_id == track.person_id or person.person_id in visible or not person.embeddings
                    or now_s - person.last_seen_s > self.reid_horizon_s):
                continue
            distance = _distance(centre, person.centre())
            nearest = min(nearest, distance)
            if distance <= self._radius(person, track, now_s) and distance < best_distance:
                best, best_distance = person, distance
        logger.debug("t=%.2f track %d (person %d, %d embeddings): nearest person out of view %s", now_s, track_id,
                     track.person_id, track.observed,
                     f"none (nearest {nearest:.3f})" if best is None else f"{best.person_id} at {best_distance:.3f} "
                     f"(radius {self._radius(best, track, now_s):.3f})")
        if best is None:
            track.reid_open = track.observed < self.reid_attempts
            return []
        fresh = self._people.pop(track.person_id)
        track.person_id, track.reid_open = best.person_id, False
        best.embeddings.extend(fresh.embeddings)
        best.last_seen_s = now_s
        self.stats.reidentified += 1
        swallowed = []
        for old_id in sorted(best.tracks):
            # A lost track of this person that the tracker still holds: it ends here, its evidence moves over.
            estimate = book.merge(old_id, track_id)
            if estimate is not None:
                swallowed.append((old_id, estimate))
            tracker.end(old_id)  # reported as ended on this frame; end_tracks forgets it then
        best.tracks.add(track_id)
        if best.evidence is not None:
            book.merge(best.evidence, track_id)
            best.evidence = None
        return swallowed

    def _radius(self, person: _Person, track: _Track, now_s: float) -> float:
        """How close ``track`` must come to ``person`` to be them: ``reid_distance`` where they were lost a moment
        ago in the same shot, else the person's own radius."""
        if (person.shot == track.shot and now_s - person.last_seen_s <= SAME_PLACE_S and person.last_box is not None
                and track.first_box is not None
                and iou_xyxy(person.last_box[None], track.first_box[None])[0, 0] >= SAME_PLACE_IOU):
            return self.reid_distance
        return person.radius(self.reid_distance)

    def _forget_people(self, now_s: float) -> None:
        """Drop people out of view for longer than the horizon (they can no longer be re-identified)."""
        stale = [p for p, person in self._people.items()
                 if not person.tracks and now_s - person.last_seen_s > self.reid_horizon_s]
        for person_id in stale:
            del self._people[person_id]


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
