"""UTKFace-style data: labels from file names, a fixed stratified split, and aligned chips.

Chips are made by the product's own path (detector → 5 landmarks → ``stream.align.align_faces``), so the
network trains on exactly what the runtime will feed it. Detection is the slow part (~10 ms an image), so
:func:`build_chip_cache` runs it once and keeps landmarks and chips as ``.npy`` files outside the repo.

The split is derived, not stored: sort the file names, group them by (age group, gender), shuffle each group
with ``numpy.random.default_rng(seed)`` and send ``round(val_fraction * len(group))`` of it to validation.
The same seed and folder always give the same split; :func:`write_split_lists` also writes it out as text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.align import align_faces, template_points
from stream.types import AGE_GROUPS, age_group_index

logger = logging.getLogger(__name__)

RACES: tuple[str, ...] = ("White", "Black", "Asian", "Indian", "Others")
GENDERS: tuple[str, ...] = ("male", "female")
_NAME = re.compile(r"^(\d+)_([01])_([0-4])_")
#: Template the fallback landmarks come from when the detector misses a face: UTKFace's "aligned & cropped"
#: images are face-centred crops, and ``utkface_crop`` describes where the 5 points sit in such a crop.
FALLBACK_TEMPLATE = "utkface_crop"
DEFAULT_SEED = 0
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Samples:
    """Labelled images as parallel arrays.

    Attributes:
        paths: ``(n,)`` image paths (str), sorted by file name.
        age: ``(n,)`` int64 age in years.
        gender: ``(n,)`` int64, 0 male, 1 female.
        race: ``(n,)`` int64, 0-4 in :data:`RACES` order.
    """

    paths: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def group(self) -> np.ndarray:
        """``(n,)`` int64 age-group index into :data:`stream.types.AGE_GROUPS`."""
        return age_group_index(self.age)

    def subset(self, index: np.ndarray) -> Samples:
        """Rows selected by integer indices or a boolean mask."""
        return Samples(self.paths[index], self.age[index], self.gender[index], self.race[index])


def parse_name(name: str) -> tuple[int, int, int] | None:
    """``(age, gender, race)`` from a UTKFace file name, or None when it does not follow the naming."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def list_samples(data_dir: str | Path, limit: int = 0) -> Samples:
    """All labelled ``*.jpg`` images in ``data_dir`` (names ``AGE_GENDER_RACE_*.jpg``), sorted by name.

    Args:
        data_dir: Folder of UTKFace-named images.
        limit: If > 0, keep an evenly spaced subset of this many (deterministic).

    Raises:
        ValueError: ``data_dir`` is not a folder or holds no labelled image.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"data_dir must be a folder of UTKFace images, got {str(folder)!r}")
    rows = []
    for path in sorted(folder.glob("*.jpg")):
        labels = parse_name(path.name)
        if labels is not None:
            rows.append((str(path), *labels))
    if not rows:
        raise ValueError(f"data_dir {str(folder)!r} holds no images named AGE_GENDER_RACE_*.jpg")
    if limit > 0 and limit < len(rows):
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    paths, age, gender, race = zip(*rows)
    return Samples(np.asarray(paths), np.asarray(age, np.int64), np.asarray(gender, np.int64),
                   np.asarray(race, np.int64))


def split_indices(samples: Samples, seed: int = DEFAULT_SEED,
                  val_fraction: float = DEFAULT_VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/validation split stratified by age group and gender.

    Args:
        samples: From :func:`list_samples` (sorted by name, which makes the split reproducible).
        seed: Seed of the per-stratum shuffle.
        val_fraction: Share of each stratum sent to validation.

    Returns:
        ``(train, val)`` sorted int64 index arrays into ``samples``.

    Raises:
        ValueError: ``val_fraction`` outside ``(0, 1)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    strata = samples.group * 2 + samples.gender
    val = []
    for stratum in range(len(AGE_GROUPS) * 2):
        members = np.flatnonzero(strata == stratum)
        rng.shuffle(members)
        val.append(members[: int(round(val_fraction * len(members)))])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(samples)), val_idx).astype(np.int64)
    return train_idx, val_idx


def select_split(samples: Samples, split: str, seed: int = DEFAULT_SEED,
                 val_fraction: float = DEFAULT_VAL_FRACTION) -> Samples:
    """The ``"train"``, ``"val"`` or ``"all"`` part of ``samples``.

    Raises:
        ValueError: Unknown split name.
    """
    if split == "all":
        return samples
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    train_idx, val_idx = split_indices(samples, seed, val_fraction)
    return samples.subset(train_idx if split == "train" else val_idx)


def write_split_lists(samples: Samples, out_dir: str | Path, seed: int = DEFAULT_SEED,
                      val_fraction: float = DEFAULT_VAL_FRACTION) -> tuple[Path, Path]:
    """Write ``train.txt`` and ``val.txt`` (one file name a line) for the record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, idx in zip(("train", "val"), split_indices(samples, seed, val_fraction)):
        path = out / f"{name}.txt"
        path.write_text("".join(Path(p).name + "\n" for p in samples.paths[idx]), encoding="utf-8")
        written.append(path)
    return written[0], written[1]


def fallback_landmarks(height: int, width: int) -> np.ndarray:
    """``(5, 2)`` float32 landmarks for a face-centred crop: the ``utkface_crop`` template scaled to the image.

    Used when the detector finds no face in an already-cropped UTKFace image, so the image is still scored.
    """
    points = template_points(FALLBACK_TEMPLATE, 1)
    return (points * np.array([width, height], np.float32)).astype(np.float32)


def central_face(detector: object, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Box and landmarks of the face a face-centred crop is about, and whether the detector found it.

    Among the detections, the one whose box centre is nearest the image centre (ties: larger box) wins;
    with none, :func:`fallback_landmarks` is used, with the box that the seed app's crop would take
    (the central 80% of the crop, since UTKFace crops are face-centred).

    Args:
        detector: Anything with ``detect(image) -> stream.types.Faces``.
        image: ``(H, W, 3)`` uint8 BGR.

    Returns:
        ``(4,)`` float32 box ``xyxy``, ``(5, 2)`` float32 landmarks, and True if they come from the detector.
    """
    faces = detector.detect(image)  # type: ignore[attr-defined]
    height, width = image.shape[:2]
    ok = np.isfinite(faces.landmarks).all(axis=(1, 2)) if len(faces) else np.zeros(0, bool)
    if not ok.any():
        box = np.array([0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height], np.float32)
        return box, fallback_landmarks(height, width), False
    faces = faces[ok]
    centres = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
    offset = np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2) / max(height, width)
    best = int(np.argmin(offset - 0.05 * faces.size / max(height, width)))
    return faces.xyxy[best].astype(np.float32), faces.landmarks[best].astype(np.float32), True


def central_face_landmarks(detector: object, image: np.ndarray) -> tuple[np.ndarray, bool]:
    """Landmarks of :func:`central_face` and whether the detector found them."""
    _, landmarks, found = central_face(detector, image)
    return landmarks, found


def read_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR image.

    Raises:
        ValueError: The file cannot be decoded.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"path {str(path)!r} is not a readable image")
    return image


def detect_landmarks(detector: object, paths: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks for every image.

    Returns:
        ``(n, 5, 2)`` float32 landmarks and ``(n,)`` bool "detected" (False: fallback used).
    """
    landmarks = np.zeros((len(paths), 5, 2), np.float32)
    found = np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        landmarks[i], found[i] = central_face_landmarks(detector, read_image(path))
        if progress and (i + 1) % 500 == 0:
            logger.info("detected %d/%d images (%d misses)", i + 1, len(paths), int((~found[: i + 1]).sum()))
    return landmarks, found


def make_chips(paths: np.ndarray, landmarks: np.ndarray, template: str, size: int) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 BGR chips aligned by ``stream.align.align_faces``."""
    chips = np.zeros((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        chips[i] = align_faces(read_image(path), landmarks[i : i + 1], template, size)[0]
    return chips


def build_chip_cache(samples: Samples, cache: str | Path, detector_factory: object, template: str,
                     sizes: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Detect once, align at each size, and keep everything as ``.npy`` under ``cache``.

    Files: ``names.npy`` (file names, the cache key), ``landmarks.npy (n,5,2)``, ``detected.npy (n,)``,
    ``chips_{template}_{size}.npy (n,size,size,3)`` uint8 BGR. Existing files for the same names are reused.

    Args:
        samples: Images to cache.
        cache: Folder (outside the repo).
        detector_factory: Zero-argument callable returning a detector; only called when detection is needed.
        template: Alignment template name.
        sizes: Chip sides to cache.

    Returns:
        ``landmarks``, ``detected`` and ``chips{size}`` arrays, rows in ``samples`` order.
    """
    folder = Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    names = np.asarray([Path(p).name for p in samples.paths])
    same = (folder / "names.npy").is_file() and np.array_equal(np.load(folder / "names.npy"), names)
    if same and (folder / "landmarks.npy").is_file():
        landmarks, detected = np.load(folder / "landmarks.npy"), np.load(folder / "detected.npy")
    else:
        landmarks, detected = detect_landmarks(detector_factory(), samples.paths, progress=True)  # type: ignore[operator]
        np.save(folder / "names.npy", names)
        np.save(folder / "landmarks.npy", landmarks)
        np.save(folder / "detected.npy", detected)
        same = True
    out: dict[str, np.ndarray] = {"landmarks": landmarks, "detected": detected}
    for size in sizes:
        path = folder / f"chips_{template}_{size}.npy"
        if path.is_file() and same and len(np.load(path, mmap_mode="r")) == len(names):
            out[f"chips{size}"] = np.load(path)
        else:
            out[f"chips{size}"] = make_chips(samples.paths, landmarks, template, size)
            np.save(path, out[f"chips{size}"])
    return out
