"""Synthetic test scenes: real UTKFace faces composited over real, face-free video backgrounds.

Benchmarks need frames whose faces are known exactly, at chosen sizes, over realistic clutter. This
module makes them from the shared data (never copied into the repo):

* **Backgrounds** are crops of the clips in ``../shared/videos`` taken away from every face. Faces are
  found with the reference detector (the config's default) at a low threshold (0.1) on a few frames per
  clip; a crop must not touch any of those boxes grown by half their size plus 8 px. The crop is then
  resized to its tile and rejected if the reference detector fires on it at :data:`REJECT_THRESHOLD`
  (a tiny face far in the back can become detectable once the crop is upscaled). Crops are magnified at
  most 2x; frames larger than 640 px are tiled from several crops.
* **Faces** are UTKFace "aligned & cropped" images (200x200, the face fills the crop; the forehead is
  often cut). They are pasted with a soft elliptical alpha mask inscribed in the crop
  (:func:`face_mask`), scaled so that the face box's shorter side is the requested size.
* **The face box** inside a crop: the reference detector is run on the masked crop over mid-grey, as it
  would be pasted; its best box (score >= 0.5, IoU >= 0.5 with the fixed box) is kept in crop
  coordinates. Otherwise :data:`UTKFACE_FACE_BOX` is used: the median YuNet box over 300 random UTKFace
  crops (unmasked, over grey; x from 7% to 91% of the width, y from -11% to 99%: detectors extend the
  box above the cut forehead).

Everything is drawn from ``np.random.default_rng(seed)``: the same seed, data and detector give the
same pixels.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from stream.tracking import iou_xyxy
from stream.types import Faces

REPO = Path(__file__).resolve().parents[1]

#: Median reference-detector box in a 200x200 UTKFace crop, as fractions ``x1, y1, x2, y2`` of the crop
#: side (yunet_dynamic on 300 random unmasked crops over grey; yunet, retinaface agree within 0.01).
UTKFACE_FACE_BOX = (0.072, -0.107, 0.906, 0.991)
#: Elliptical paste mask in crop fractions: centre x, centre y, semi-axis x, semi-axis y.
MASK_ELLIPSE = (0.5, 0.5, 0.47, 0.5)
#: Fraction of the ellipse radius over which the mask fades from 1 to 0.
MASK_FEATHER = 0.3
#: Reference detections at or above this exclude a region from background crops.
EXCLUDE_THRESHOLD = 0.1
#: A background (tile or whole frame) is rejected when the reference detector reaches this score on it.
REJECT_THRESHOLD = 0.2
#: Frames between the clip frames backgrounds are cut from (0.5 s at 30 fps).
FRAME_STEP = 15
#: Widest tile a background crop is resized to; wider frames are tiled.
MAX_TILE_SIDE = 640
GREY = 128

_UTK_NAME = re.compile(r"^(\d+)_(\d)_(\d)_")


class _DetectorLike(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> Faces: ...


def shared_dir() -> Path:
    """The shared data folder: ``$STREAM_SHARED_DIR``, else ``../shared`` next to the repo."""
    return Path(os.environ.get("STREAM_SHARED_DIR", REPO.parent / "shared"))


@functools.lru_cache(maxsize=1)
def reference_detector() -> _DetectorLike:
    """The config's default detector with a 0.05 score threshold (callers filter higher)."""
    from stream.config import load_config, replace
    from stream.detectors import build_detector

    config = load_config()
    config = replace(config, "detector", score_threshold=0.05)
    return build_detector(config.detector, config.models, config.runtime)


def _size_arg(name: str, size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and 16 <= v <= 8192 for v in size):
        raise ValueError(f"{name} must be (width, height) integers in [16, 8192], got {size!r}")
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class FaceCrop:
    """One UTKFace image and where its face is.

    Attributes:
        image: ``(S, S, 3)`` uint8 BGR crop (200x200 for UTKFace).
        face_xyxy: ``(4,)`` float32 face box in crop pixels (may extend past the crop).
        age: Years, -1 when unknown.
        gender: 0 male, 1 female, -1 unknown.
        race: 0-4 (White, Black, Asian, Indian, Others), -1 unknown.
        file: File name the crop came from ("" for raw arrays).
        box_source: "detector" or "fixed" (:data:`UTKFACE_FACE_BOX`).
    """

    image: np.ndarray
    face_xyxy: np.ndarray
    age: int = -1
    gender: int = -1
    race: int = -1
    file: str = ""
    box_source: str = "fixed"

    @property
    def face_size(self) -> float:
        """Shorter side of the face box in crop pixels (as :attr:`Faces.size`)."""
        w, h = self.face_xyxy[2] - self.face_xyxy[0], self.face_xyxy[3] - self.face_xyxy[1]
        return float(min(w, h))


def fixed_face_box(side: int) -> np.ndarray:
    """``(4,)`` float32 :data:`UTKFACE_FACE_BOX` in pixels of a ``side`` x ``side`` crop."""
    return np.asarray(UTKFACE_FACE_BOX, np.float32) * side


def utkface_files(root: str | Path | None = None) -> list[Path]:
    """UTKFace images with parseable labels, sorted by name.

    Args:
        root: The ``UTKFace`` folder; default ``<shared>/data/utkface/UTKFace``.

    Raises:
        ValueError: ``root`` holds no UTKFace images.
    """
    folder = Path(root) if root is not None else shared_dir() / "data" / "utkface" / "UTKFace"
    files = sorted(p for p in folder.glob("*.jpg") if _UTK_NAME.match(p.name))
    if not files:
        raise ValueError(f"root {folder} holds no UTKFace images (AGE_GENDER_RACE_*.jpg)")
    return files


def face_mask(height: int, width: int) -> np.ndarray:
    """Soft elliptical alpha of a crop rendered at ``width`` x ``height`` pixels.

    Returns:
        ``(height, width)`` float32 in ``[0, 1]``: 1 inside the ellipse, smoothly 0 at its rim.
    """
    cx, cy, ax, ay = MASK_ELLIPSE
    # Pixel centres in crop fractions, so the mask is the same shape at every paste size.
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    radius = np.sqrt(((xs[None, :] - cx) / ax) ** 2 + ((ys[:, None] - cy) / ay) ** 2)
    t = np.clip((1.0 - radius) / MASK_FEATHER, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep: no visible edge for detectors to key on


def reference_canvas(crop: np.ndarray) -> tuple[np.ndarray, int]:
    """The masked crop over mid-grey at native size, with room around it for boxes that overhang.

    Returns:
        ``(2S, 2S, 3)`` uint8 image and the offset (pixels) of the crop's top-left corner.
    """
    side = crop.shape[0]
    offset = side // 2
    canvas = np.full((2 * side, 2 * side, 3), GREY, np.uint8)
    alpha = face_mask(side, side)[..., None]
    patch = canvas[offset : offset + side, offset : offset + side].astype(np.float32)
    canvas[offset : offset + side, offset : offset + side] = np.round(
        patch * (1 - alpha) + crop.astype(np.float32) * alpha
    ).astype(np.uint8)
    return canvas, offset


def box_on_crop(detector: _DetectorLike, crop: np.ndarray, min_score: float = 0.5) -> np.ndarray | None:
    """A detector's own box for the face of a crop, as it would be pasted.

    Runs ``detector`` on :func:`reference_canvas` and keeps the best detection that scores at least
    ``min_score`` and overlaps the fixed box with IoU >= 0.5.

    Returns:
        ``(4,)`` float32 box in crop pixels, or None when the detector finds no such face.
    """
    canvas, offset = reference_canvas(crop)
    faces = detector.detect(canvas)
    faces = faces[faces.score >= min_score]
    if len(faces) == 0:
        return None
    boxes = faces.xyxy - offset
    ious = iou_xyxy(boxes, fixed_face_box(crop.shape[0])[None])[:, 0]
    good = np.flatnonzero(ious >= 0.5)
    if len(good) == 0:
        return None
    return boxes[good[np.argmax(faces.score[good])]].astype(np.float32)


def load_face(path: str | Path, detector: _DetectorLike | None = None) -> FaceCrop:
    """A UTKFace image with its labels and face box (see the module doc for how the box is found).

    Args:
        path: A UTKFace ``AGE_GENDER_RACE_*.jpg`` file.
        detector: Detector that places the box; default :func:`reference_detector`.

    Raises:
        ValueError: ``path`` is unreadable or not square.
    """
    path = Path(path)
    return _load_face(str(path), detector if detector is not None else reference_detector())


@functools.lru_cache(maxsize=4096)
def _read_square(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.shape[0] != image.shape[1]:
        raise ValueError(f"path {path} is not a readable square image")
    image.setflags(write=False)
    return image


_FACE_CACHE: dict[tuple[str, str], FaceCrop] = {}


def _load_face(path: str, detector: _DetectorLike) -> FaceCrop:
    key = (path, getattr(detector, "name", type(detector).__name__))
    if key in _FACE_CACHE:
        return _FACE_CACHE[key]
    image = _read_square(path)
    box = box_on_crop(detector, image)
    match = _UTK_NAME.match(Path(path).name)
    age, gender, race = (int(g) for g in match.groups()) if match else (-1, -1, -1)
    face = FaceCrop(
        image=image,
        face_xyxy=box if box is not None else fixed_face_box(image.shape[0]),
        age=age,
        gender=gender,
        race=race,
        file=Path(path).name,
        box_source="detector" if box is not None else "fixed",
    )
    _FACE_CACHE[key] = face
    return face


def sample_faces(
    n: int, seed: int, root: str | Path | None = None, detector: _DetectorLike | None = None
) -> list[FaceCrop]:
    """``n`` distinct UTKFace faces drawn with ``seed`` (boxes from ``detector``, see :func:`load_face`).

    Raises:
        ValueError: ``n`` is not in ``[1, number of images]``.
    """
    files = utkface_files(root)
    if not 1 <= n <= len(files):
        raise ValueError(f"n must be in [1, {len(files)}], got {n}")
    picks = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    return [load_face(files[i], detector) for i in picks]


# ----------------------------------------------------------------------------------------- compositing


@dataclass(frozen=True)
class PastedFaces:
    """What :func:`composite` pasted: labels and the crop → frame mapping, one row per face.

    Attributes:
        age: ``(k,)`` int32 years (-1 unknown).
        gender: ``(k,)`` int32, 0 male, 1 female (-1 unknown).
        race: ``(k,)`` int32 UTKFace race code (-1 unknown).
        file: ``k`` source file names.
        scale: ``(k,)`` float32 frame pixels per crop pixel.
        offset: ``(k, 2)`` float32 frame position of crop pixel ``(0, 0)``: ``frame = crop * scale + offset``.
    """

    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    file: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray

    def __len__(self) -> int:
        return len(self.scale)

    def to_frame(self, xyxy_crop: np.ndarray) -> np.ndarray:
        """Map one box per face from crop to frame pixels.

        Args:
            xyxy_crop: ``(k, 4)`` boxes in each face's crop pixels.

        Returns:
            ``(k, 4)`` float32 boxes in frame pixels.
        """
        xyxy_crop = np.asarray(xyxy_crop, np.float32).reshape(-1, 4)
        if len(xyxy_crop) != len(self):
            raise ValueError(f"xyxy_crop must have {len(self)} rows, got {len(xyxy_crop)}")
        return xyxy_crop * self.scale[:, None] + np.tile(self.offset, 2)


def _as_face(face: FaceCrop | np.ndarray, index: int) -> FaceCrop:
    if isinstance(face, FaceCrop):
        return face
    image = np.asarray(face)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"faces[{index}] image must be a square (S, S, 3) uint8 array, got {image.shape}")
    return FaceCrop(image=image, face_xyxy=fixed_face_box(image.shape[0]))


def composite(
    background: np.ndarray, faces: Sequence[tuple[FaceCrop | np.ndarray, float, tuple[float, float]]]
) -> tuple[np.ndarray, np.ndarray, PastedFaces]:
    """Paste faces onto a copy of ``background``, later faces over earlier ones.

    Args:
        background: ``(H, W, 3)`` uint8 BGR.
        faces: ``(face, size_px, (x, y))`` per face: a :class:`FaceCrop` (or a bare square crop, which
            gets :data:`UTKFACE_FACE_BOX`), the shorter side of its face box in the frame, and the frame
            position of the face box's top-left corner. The face box must lie inside the frame; the
            rest of the crop is clipped at the frame edge.

    Returns:
        ``(image (H, W, 3) uint8, gt_xyxy (k, 4) float32 face boxes in frame pixels, PastedFaces)``.

    Raises:
        ValueError: Bad ``background``, or a face whose size is not positive or whose box leaves the frame.
    """
    if not isinstance(background, np.ndarray) or background.dtype != np.uint8 or background.ndim != 3:
        raise ValueError(f"background must be an (H, W, 3) uint8 array, got {getattr(background, 'shape', None)}")
    out = background.copy()
    height, width = out.shape[:2]
    rows: list[tuple[FaceCrop, float, np.ndarray]] = []
    for i, (face_in, size_px, (x, y)) in enumerate(faces):
        face = _as_face(face_in, i)
        if not size_px > 0:
            raise ValueError(f"faces[{i}] size_px must be > 0, got {size_px}")
        side = face.image.shape[0]
        new_side = max(1, round(side * size_px / face.face_size))
        scale = new_side / side  # exact scale of the rendered crop, so GT boxes match its pixels
        ox, oy = round(x - face.face_xyxy[0] * scale), round(y - face.face_xyxy[1] * scale)
        gt = face.face_xyxy * scale + np.asarray([ox, oy, ox, oy], np.float32)
        if gt[0] < -0.5 or gt[1] < -0.5 or gt[2] > width + 0.5 or gt[3] > height + 0.5:
            raise ValueError(f"faces[{i}] box {np.round(gt, 1).tolist()} leaves the {width}x{height} frame")
        interpolation = cv2.INTER_AREA if new_side < side else cv2.INTER_LINEAR
        crop = cv2.resize(face.image, (new_side, new_side), interpolation=interpolation).astype(np.float32)
        alpha = face_mask(new_side, new_side)[..., None]
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + new_side, width), min(oy + new_side, height)
        if x1 > x0 and y1 > y0:
            patch = out[y0:y1, x0:x1].astype(np.float32)
            a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            src = crop[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            out[y0:y1, x0:x1] = np.clip(np.round(patch * (1 - a) + src * a), 0, 255).astype(np.uint8)
        rows.append((face, scale, np.asarray([ox, oy], np.float32)))
    gt_xyxy = np.asarray([f.face_xyxy * s + np.tile(o, 2) for f, s, o in rows], np.float32).reshape(-1, 4)
    pasted = PastedFaces(
        age=np.asarray([f.age for f, _, _ in rows], np.int32),
        gender=np.asarray([f.gender for f, _, _ in rows], np.int32),
        race=np.asarray([f.race for f, _, _ in rows], np.int32),
        file=tuple(f.file for f, _, _ in rows),
        scale=np.asarray([s for _, s, _ in rows], np.float32),
        offset=np.asarray([o for _, _, o in rows], np.float32).reshape(-1, 2),
    )
    return out, gt_xyxy, pasted


def layout(
    rng: np.random.Generator,
    face_boxes_wh: Sequence[tuple[float, float]],
    frame_size: tuple[int, int],
    spacing: float = 0.3,
    tries: int = 200,
) -> list[tuple[int, tuple[float, float]]]:
    """Non-overlapping top-left positions for face boxes, by seeded rejection sampling.

    Args:
        rng: Random generator (advanced).
        face_boxes_wh: ``(w, h)`` of each face box in frame pixels, placed largest first.
        frame_size: ``(width, height)``.
        spacing: Boxes grown by this fraction of their size on every side must not intersect.
        tries: Positions tried per face before it is left out.

    Returns:
        ``(index into face_boxes_wh, (x, y))`` for the faces that fit, in placement order.
    """
    width, height = frame_size
    placed: list[np.ndarray] = []
    result: list[tuple[int, tuple[float, float]]] = []
    for index in sorted(range(len(face_boxes_wh)), key=lambda k: -face_boxes_wh[k][0] * face_boxes_wh[k][1]):
        w, h = face_boxes_wh[index]
        if w > width or h > height:
            continue
        pad_w, pad_h = spacing * w, spacing * h
        for _ in range(tries):
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            grown = np.asarray([x - pad_w, y - pad_h, x + w + pad_w, y + h + pad_h])
            if all(grown[0] >= p[2] or grown[2] <= p[0] or grown[1] >= p[3] or grown[3] <= p[1] for p in placed):
                placed.append(grown)
                result.append((index, (float(x), float(y))))
                break
    return result


def scene(
    n_faces: int,
    frame_size: tuple[int, int] = (640, 360),
    face_size_range: tuple[float, float] = (16, 256),
    seed: int = 0,
    *,
    background: np.ndarray | None = None,
    faces: Sequence[FaceCrop] | None = None,
    detector: _DetectorLike | None = None,
) -> tuple[np.ndarray, np.ndarray, PastedFaces]:
    """A frame with up to ``n_faces`` random UTKFace faces over a face-free background.

    Face sizes are log-uniform in ``face_size_range``; faces that cannot be placed without overlapping
    are left out (so a few large faces in a small frame give fewer than ``n_faces``).

    Args:
        n_faces: Faces asked for (>= 0).
        frame_size: ``(width, height)`` of the frame; ignored when ``background`` is given.
        face_size_range: ``(min, max)`` shorter side of the face boxes, pixels.
        seed: Seeds every random choice.
        background: Use this ``(H, W, 3)`` uint8 image instead of :func:`make_backgrounds`.
        faces: Draw faces from this pool instead of all of UTKFace.
        detector: Reference detector for backgrounds and face boxes; default :func:`reference_detector`.

    Returns:
        ``(image (H, W, 3) uint8, gt_xyxy (k, 4) float32, PastedFaces)`` with ``k <= n_faces``.

    Raises:
        ValueError: ``n_faces`` negative, or a bad ``face_size_range`` or ``frame_size``.
    """
    if n_faces < 0:
        raise ValueError(f"n_faces must be >= 0, got {n_faces}")
    low, high = face_size_range
    if not 0 < low <= high:
        raise ValueError(f"face_size_range must be (min, max) with 0 < min <= max, got {face_size_range!r}")
    rng = np.random.default_rng(seed)
    if background is None:
        background = make_backgrounds(1, frame_size, seed=int(rng.integers(2**31)), detector=detector)[0]
    height, width = background.shape[:2]
    if faces is None:
        files = utkface_files()
        picks: list[int] = rng.choice(len(files), size=n_faces, replace=False).tolist() if n_faces else []
        chosen = [load_face(files[i], detector) for i in picks]
    else:
        if n_faces and not faces:
            raise ValueError("faces must not be empty when n_faces > 0")
        chosen = [faces[i] for i in rng.integers(len(faces), size=n_faces)] if n_faces else []
    sizes = np.exp(rng.uniform(math.log(low), math.log(high), size=n_faces))
    boxes_wh = []
    for face, size in zip(chosen, sizes, strict=True):
        x1, y1, x2, y2 = face.face_xyxy * (size / face.face_size)
        boxes_wh.append((float(x2 - x1), float(y2 - y1)))
    placement = layout(rng, boxes_wh, (width, height))
    return composite(background, [(chosen[i], float(sizes[i]), xy) for i, xy in placement])


# ----------------------------------------------------------------------------------------- backgrounds


@dataclass(frozen=True)
class _ClipFrame:
    clip: str
    index: int
    image: np.ndarray  # (H, W, 3) uint8 BGR
    keep_out: np.ndarray  # (m, 4) float32 grown face boxes no crop may touch


def background_clips(videos_dir: str | Path | None = None) -> list[Path]:
    """The clips backgrounds are cut from: every ``*.mp4`` in ``<shared>/videos``, sorted.

    Raises:
        ValueError: No clips in ``videos_dir``.
    """
    folder = Path(videos_dir) if videos_dir is not None else shared_dir() / "videos"
    clips = sorted(folder.glob("*.mp4"))
    if not clips:
        raise ValueError(f"videos_dir {folder} holds no .mp4 clips")
    return clips


def read_frames(path: str | Path, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Decode the given frames of a clip (in order, without seeking: exact on every container).

    Returns:
        ``(H, W, 3)`` uint8 BGR frames, one per index that exists.
    """
    wanted = sorted(set(int(i) for i in indices))
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        index = 0
        for target in wanted:
            while index < target:
                if not capture.grab():
                    return frames
                index += 1
            ok, frame = capture.read()
            index += 1
            if not ok:
                return frames
            frames.append(frame)
    finally:
        capture.release()
    return frames


def _clip_frames(clips: tuple[str, ...], frames_per_clip: int, detector: _DetectorLike) -> list[_ClipFrame]:
    key = (clips, frames_per_clip, getattr(detector, "name", type(detector).__name__))
    if key in _FRAME_CACHE:
        return _FRAME_CACHE[key]
    result = []
    for clip in clips:
        capture = cv2.VideoCapture(clip)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or frames_per_clip * FRAME_STEP
        capture.release()
        # Every FRAME_STEP-th frame from the start: decoding is sequential, so this bounds the cost.
        indices = np.arange(frames_per_clip) * FRAME_STEP % max(count, 1)
        for index, frame in zip(indices, read_frames(clip, indices), strict=False):
            faces = detector.detect(frame)
            faces = faces[faces.score >= EXCLUDE_THRESHOLD]
            size = np.maximum(faces.width, faces.height)[:, None]
            # Grown by half the face size plus 8 px: hair, ears and a missed neighbour stay out too.
            grow = 0.5 * size + 8
            keep_out = np.hstack([faces.xyxy[:, :2] - grow, faces.xyxy[:, 2:] + grow]).astype(np.float32)
            frame.setflags(write=False)
            result.append(_ClipFrame(Path(clip).name, int(index), frame, keep_out))
    _FRAME_CACHE[key] = result
    return result


_FRAME_CACHE: dict[tuple[Any, ...], list[_ClipFrame]] = {}


def _is_face_free(detector: _DetectorLike, image: np.ndarray) -> bool:
    faces = detector.detect(image)
    return not bool((faces.score >= REJECT_THRESHOLD).any())


def _tile(
    rng: np.random.Generator, frames: list[_ClipFrame], tile_w: int, tile_h: int, detector: _DetectorLike
) -> np.ndarray:
    aspect = tile_w / tile_h
    for _ in range(400):
        source = frames[int(rng.integers(len(frames)))]
        fh, fw = source.image.shape[:2]
        max_h = min(fh, fw / aspect)
        min_h = min(max_h, max(64.0, tile_h / 2))  # at most 2x upscaling: blur would make FPs too rare
        crop_h = rng.uniform(min_h, max_h)
        crop_w = crop_h * aspect
        x, y = rng.uniform(0, fw - crop_w), rng.uniform(0, fh - crop_h)
        k = source.keep_out
        touches = (x < k[:, 2]) & (x + crop_w > k[:, 0]) & (y < k[:, 3]) & (y + crop_h > k[:, 1])
        if touches.any():
            continue
        x0, y0 = int(x), int(y)
        x1, y1 = min(fw, x0 + max(1, round(crop_w))), min(fh, y0 + max(1, round(crop_h)))
        crop = source.image[y0:y1, x0:x1]
        interpolation = cv2.INTER_AREA if x1 - x0 > tile_w else cv2.INTER_LINEAR
        tile = cv2.resize(crop, (tile_w, tile_h), interpolation=interpolation)
        if rng.random() < 0.5:
            tile = np.ascontiguousarray(tile[:, ::-1])
        if _is_face_free(detector, tile):
            return tile
    raise ValueError("no face-free background crop found in 400 tries; give more clips (videos_dir)")


def make_backgrounds(
    n: int,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    *,
    videos_dir: str | Path | None = None,
    frames_per_clip: int = 6,
    detector: _DetectorLike | None = None,
) -> list[np.ndarray]:
    """``n`` face-free backgrounds cut from the shared clips (see the module doc).

    Args:
        n: How many (>= 0).
        size: ``(width, height)`` of each background.
        seed: Seeds every crop choice.
        videos_dir: Folder of ``.mp4`` clips; default ``<shared>/videos``.
        frames_per_clip: Frames sampled from each clip (every :data:`FRAME_STEP`-th from the start).
        detector: Reference detector; default :func:`reference_detector`.

    Returns:
        ``n`` ``(height, width, 3)`` uint8 BGR images on which the reference detector scores below
        :data:`REJECT_THRESHOLD` everywhere.

    Raises:
        ValueError: Bad ``n``, ``size`` or ``frames_per_clip``, or no face-free crop could be found.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if frames_per_clip < 1:
        raise ValueError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
    width, height = _size_arg("size", size)
    detector = detector if detector is not None else reference_detector()
    clips = tuple(str(p) for p in background_clips(videos_dir))
    frames = _clip_frames(clips, frames_per_clip, detector)
    # One tile per MAX_TILE_SIDE of the long side, so crops are never magnified more than a few times.
    grid = max(1, math.ceil(max(width, height) / MAX_TILE_SIDE))
    xs = np.linspace(0, width, grid + 1).round().astype(int)
    ys = np.linspace(0, height, grid + 1).round().astype(int)
    rng = np.random.default_rng(seed)
    backgrounds: list[np.ndarray] = []
    for _ in range(20 * n):
        if len(backgrounds) == n:
            break
        image = np.empty((height, width, 3), np.uint8)
        for r in range(grid):
            for c in range(grid):
                image[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = _tile(
                    rng, frames, int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]), detector
                )
        # Tiles are checked alone; the whole frame is checked at its own scale too (seams, downscaling).
        if grid == 1 or _is_face_free(detector, image):
            backgrounds.append(image)
    if len(backgrounds) < n:
        raise ValueError(f"size {width}x{height}: only {len(backgrounds)} of {n} tiled backgrounds were face-free")
    return backgrounds
