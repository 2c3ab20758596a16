"""The data types that flow between pipeline stages.

Every stage takes and returns :class:`Faces`: parallel numpy arrays, one row per
face, so stages never juggle lists of per-face objects and a boolean mask selects
a subset consistently across all fields (the roboflow/supervision ``Detections``
idea). :class:`Frame` carries the image and its position in the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Age groups shown to users, in the order of every ``age_group_probs`` vector.
AGE_GROUPS: tuple[str, ...] = (
    "01-10",
    "11-20",
    "21-30",
    "31-40",
    "41-55",
    "56-65",
    "66-80",
    "80+",
)
# Inclusive lower age (years) of each group; a group ends where the next begins.
# "01-10" starts at 0 so newborns are not orphaned.
AGE_GROUP_LOWER: tuple[int, ...] = (0, 11, 21, 31, 41, 56, 66, 81)

NO_TRACK = -1

# Names of the optional per-face arrays in ``Faces.data`` written by the stages.
AGE_GROUP_PROBS = "age_group_probs"  # (n, 8) float32, fused per track
AGE_YEARS = "age"  # (n,) float32 years, NaN when unknown
P_FEMALE = "p_female"  # (n,) float32, NaN when unknown
N_OBS = "n_obs"  # (n,) int32 observations the fused label rests on
LABEL_READY = "label_ready"  # (n,) bool: enough observations to show a label
SHOWN_GROUP = "shown_group"  # (n,) int32 index of the age group shown (hysteresis applied), -1 if none
PLAUSIBLE = "plausible"  # (n,) bool: the detection passed the checks of stream.plausible (may be classified)
PERSON_ID = "person_id"  # (n,) int64 person of the face's track, stable across re-identification (tracking.identity)
SHOWN_FEMALE = "shown_female"  # (n,) int8 gender shown (hysteresis applied): 1 female, 0 male, -1 none


def age_group_index(age_years: float | np.ndarray) -> np.ndarray:
    """Map ages in years to indices into :data:`AGE_GROUPS`.

    Args:
        age_years: Scalar or array of ages in years.

    Returns:
        int64 array of the same shape with values in ``0..7``.
    """
    ages = np.asarray(age_years, dtype=np.float64)
    # An age belongs to the last group whose lower bound it reaches; ages are
    # whole years in the labels, fractional estimates round down into a group.
    return np.searchsorted(np.asarray(AGE_GROUP_LOWER), np.floor(ages), side="right") - 1


@dataclass
class Frame:
    """One decoded video frame or still image.

    Attributes:
        index: 0-based position in the source (frames read, including skipped ones).
        timestamp: Seconds since the start of the source (media time for files,
            wall-clock since open for live sources).
        image: ``(H, W, 3)`` uint8 BGR image.
        source: Display name of the source (credentials redacted).
        name: File name for still images (used to name annotated outputs), else "".
        camera: Name of the camera it came from (``stream.config.CameraSpec.name``), else "".
    """

    index: int
    timestamp: float
    image: np.ndarray
    source: str = ""
    name: str = ""
    camera: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.image, np.ndarray) or self.image.dtype != np.uint8:
            raise TypeError(f"Frame.image must be a uint8 numpy array, got {type(self.image).__name__}")
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"Frame.image must have shape (H, W, 3), got {self.image.shape}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _as_array(name: str, value: Any, dtype: Any, shape_tail: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        expected = "(n" + "".join(f", {d}" for d in shape_tail) + ")"
        raise ValueError(f"Faces.{name} must have shape {expected}, got {array.shape}")
    return array


@dataclass
class Faces:
    """Faces in one frame as parallel arrays (row ``i`` of every field is face ``i``).

    Attributes:
        xyxy: ``(n, 4)`` float32 boxes ``x1, y1, x2, y2`` in frame pixels.
        score: ``(n,)`` float32 detector confidence in ``[0, 1]``.
        landmarks: ``(n, 5, 2)`` float32 points in frame pixels: left eye, right eye,
            nose, left mouth corner, right mouth corner, as seen in the image.
            NaN where the detector gives no landmarks.
        track_id: ``(n,)`` int64 track ids, :data:`NO_TRACK` before tracking.
        data: Named extra arrays whose first dimension is ``n``.
    """

    xyxy: np.ndarray
    score: np.ndarray
    landmarks: np.ndarray
    track_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = _as_array("xyxy", self.xyxy, np.float32, (4,))
        n = len(self.xyxy)
        self.score = _as_array("score", self.score, np.float32, ())
        self.landmarks = _as_array("landmarks", self.landmarks, np.float32, (5, 2))
        if len(self.track_id) == 0 and n > 0:
            self.track_id = np.full(n, NO_TRACK, dtype=np.int64)
        self.track_id = _as_array("track_id", self.track_id, np.int64, ())
        for name, arr in (("score", self.score), ("landmarks", self.landmarks), ("track_id", self.track_id)):
            if len(arr) != n:
                raise ValueError(f"Faces.{name} has {len(arr)} rows, xyxy has {n}")
        for key, value in self.data.items():
            value = np.asarray(value)
            if value.ndim == 0 or len(value) != n:
                raise ValueError(f"Faces.data[{key!r}] must have {n} rows, got shape {value.shape}")
            self.data[key] = value

    @classmethod
    def empty(cls) -> Faces:
        """No faces: zero-row arrays of the right shapes and dtypes."""
        return cls(
            xyxy=np.empty((0, 4), np.float32),
            score=np.empty(0, np.float32),
            landmarks=np.empty((0, 5, 2), np.float32),
            track_id=np.empty(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int] | int) -> Faces:
        """Select rows by boolean mask, integer indices, slice or single int."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Faces(
            xyxy=self.xyxy[index],
            score=self.score[index],
            landmarks=self.landmarks[index],
            track_id=self.track_id[index],
            data={k: v[index] for k, v in self.data.items()},
        )

    @property
    def width(self) -> np.ndarray:
        """``(n,)`` box widths in pixels."""
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def height(self) -> np.ndarray:
        """``(n,)`` box heights in pixels."""
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @property
    def size(self) -> np.ndarray:
        """``(n,)`` face size in pixels: the shorter box side."""
        return np.minimum(self.width, self.height)

    def with_data(self, **arrays: np.ndarray) -> Faces:
        """A copy with extra named arrays added or replaced."""
        return Faces(
            xyxy=self.xyxy,
            score=self.score,
            landmarks=self.landmarks,
            track_id=self.track_id,
            data={**self.data, **arrays},
        )

    @staticmethod
    def concatenate(parts: list[Faces]) -> Faces:
        """Stack several ``Faces`` row-wise; extras kept only where all parts have them."""
        if not parts:
            return Faces.empty()
        keys = set(parts[0].data)
        for part in parts[1:]:
            keys &= set(part.data)
        return Faces(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            landmarks=np.concatenate([p.landmarks for p in parts]),
            track_id=np.concatenate([p.track_id for p in parts]),
            data={k: np.concatenate([p.data[k] for p in parts]) for k in sorted(keys)},
        )
