"""What cameras do to faces: small faces in big frames, blur, compression, low light, occlusion, turned heads.

UTKFace's faces are sharp, frontal, well lit and about 120 px tall; faces on video are rarely any of that. The
conditions here reproduce the common degradations so that ``python -m models.training.evaluate --conditions``
measures a model where it will run, and ``python -m models.training.train --camera-augment P`` trains on them.

A :class:`Condition` turns a face-centred image into a camera frame, in the order a camera works: the scene (a
hand or mask over the lower face, a turned head), then the optics (the face scaled to ``height`` pixels and
placed in a ``FRAME_SIZE`` frame, as a camera of that resolution would see it; motion and defocus blur), then the
sensor (dim light: fewer photons, noise, and the camera's gain bringing the brightness back up, with the noise),
then the encoder (JPEG at a quality; H.264's intra blocks degrade a still frame the same way: blocking and lost
high frequencies). The product's detector then runs on the whole frame, as it would on the camera's.

The same operations work on aligned training chips (:func:`degrade_chip`): there the "height" becomes a down-and-up
resize of the chip to that many pixels, and occlusion and yaw use the chip's known face layout.

Every operation is deterministic given its ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

#: The camera frame a scaled face is placed in (width, height): 720p, the commonest camera stream.
FRAME_SIZE = (1280, 720)
#: Grey of the frame around the face (the detector runs on the whole frame).
BACKGROUND = 114


@dataclass(frozen=True)
class Condition:
    """One camera condition.

    Attributes:
        name: Short name (``--conditions`` value).
        height: Face height in pixels in a :data:`FRAME_SIZE` frame (the detected box height); 0 keeps the image
            as it is (no frame).
        motion: Length in pixels (in the frame) of a horizontal motion blur; 0 none.
        defocus: Sigma in pixels (in the frame) of a Gaussian defocus blur; 0 none.
        light: Scene brightness as a share of normal (1 normal); below 1 the sensor sees fewer photons (shot and
            read noise) and the camera's gain restores half the lost brightness, amplifying the noise.
        jpeg: JPEG quality 1-100 of the frame; 0 none.
        occlusion: Share of the face's height covered from the chin up (a hand, a scarf, a mask); 0 none.
        yaw: Head turn in degrees (the face's front mapped on a cylinder and rotated); 0 none.
    """

    name: str
    height: int = 0
    motion: int = 0
    defocus: float = 0.0
    light: float = 1.0
    jpeg: int = 0
    occlusion: float = 0.0
    yaw: float = 0.0

    def describe(self) -> str:
        parts = [f"face {self.height} px in {FRAME_SIZE[0]}x{FRAME_SIZE[1]}" if self.height else "image as is"]
        if self.motion:
            parts.append(f"motion blur {self.motion} px")
        if self.defocus:
            parts.append(f"defocus sigma {self.defocus:g} px")
        if self.light < 1:
            parts.append(f"light x{self.light:g} + sensor noise")
        if self.jpeg:
            parts.append(f"JPEG q{self.jpeg}")
        if self.occlusion:
            parts.append(f"lower {self.occlusion:.0%} of the face covered")
        if self.yaw:
            parts.append(f"yaw {self.yaw:g} deg")
        return ", ".join(parts)


_H64 = Condition("h64", height=64)
#: The conditions ``--conditions all`` runs, in report order. The single degradations are at 64 px, so each row
#: compares with ``h64``; ``target`` is the issue's combined case (48 px, mild blur, dim light with noise, strong JPEG).
CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("clean"),
    Condition("h96", height=96),
    _H64,
    Condition("h48", height=48),
    Condition("h32", height=32),
    Condition("h24", height=24),
    replace(_H64, name="motion", motion=9),
    replace(_H64, name="defocus", defocus=2.0),
    replace(_H64, name="jpeg", jpeg=20),
    replace(_H64, name="lowlight", light=0.25),
    replace(_H64, name="occlusion", occlusion=0.4),
    replace(_H64, name="yaw30", yaw=30.0),
    replace(_H64, name="yaw50", yaw=50.0),
    Condition("target", height=48, defocus=1.0, light=0.3, jpeg=20),
)}


def parse_conditions(text: str) -> list[Condition]:
    """``--conditions`` value: ``all`` or comma-separated names of :data:`CONDITIONS`.

    Raises:
        ValueError: An unknown name (the message lists the valid ones).
    """
    names = list(CONDITIONS) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or not names:
        raise ValueError(f"unknown condition {', '.join(unknown) or repr(text)}; valid: all, {', '.join(CONDITIONS)}")
    return [CONDITIONS[n] for n in names]


# ------------------------------------------------------------------------------------------------ operations


def motion_blur(image: np.ndarray, length: int) -> np.ndarray:
    """Horizontal motion blur over ``length`` pixels (a line kernel)."""
    if length <= 1:
        return image
    kernel = np.full((1, length), 1.0 / length, np.float32)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def defocus_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels (an out-of-focus or cheap lens)."""
    return image if sigma <= 0 else cv2.GaussianBlur(image, (0, 0), sigma)


def low_light(image: np.ndarray, light: float, rng: np.random.Generator, read_noise: float = 2.0,
              photons_per_level: float = 4.0) -> np.ndarray:
    """A dim scene through a small sensor: ``light`` x the signal, shot noise (Poisson, ``photons_per_level``
    photons per grey level at normal light) and read noise (``read_noise`` levels), then the camera's gain
    restoring half the lost brightness (noise included)."""
    if light >= 1:
        return image
    signal = image.astype(np.float32) * light
    photons = rng.poisson(signal * photons_per_level).astype(np.float32) / photons_per_level
    noisy = photons + rng.normal(0.0, read_noise, image.shape).astype(np.float32)
    gain = 0.5 / light + 0.5
    return np.clip(noisy * gain, 0, 255).round().astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image JPEG-encoded at ``quality`` and decoded again."""
    if quality <= 0:
        return image
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def occlude(image: np.ndarray, box_xyxy: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """The lower ``share`` of the face box covered by a flat patch of a random dark-to-mid colour (a hand, a scarf)."""
    if share <= 0:
        return image
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    top = int(round(y2 - share * (y2 - y1)))
    out = image.copy()
    colour = rng.integers(20, 160, 3).tolist()
    cv2.rectangle(out, (int(round(x1)), top), (int(round(x2)), int(round(y2)) + 2), colour, -1)
    return out


def yaw_maps(width: int, height: int, box_xyxy: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps that turn the face in ``box_xyxy`` by ``degrees`` about a vertical axis.

    The face's front is taken as a half-cylinder as wide as the box: an output column at angle ``phi`` on the
    cylinder shows the input column at ``phi - yaw``; the near side widens, the far side narrows and part of it
    turns out of view (filled from the cylinder's edge). Outside the box nothing moves.
    """
    x1, _, x2, _ = (float(v) for v in box_xyxy)
    centre, radius = (x1 + x2) / 2, max((x2 - x1) / 2, 1.0)
    xs = np.arange(width, dtype=np.float32)
    rel = np.clip((xs - centre) / radius, -1.0, 1.0)
    phi = np.arcsin(rel) - math.radians(degrees)
    source = centre + radius * np.sin(np.clip(phi, -math.pi / 2, math.pi / 2))
    inside = np.abs(xs - centre) < radius
    map_x = np.where(inside, source, xs).astype(np.float32)
    return np.tile(map_x, (height, 1)), np.tile(np.arange(height, dtype=np.float32)[:, None], (1, width))


def turn(image: np.ndarray, box_xyxy: np.ndarray, degrees: float) -> np.ndarray:
    """The face in ``box_xyxy`` turned by ``degrees`` (:func:`yaw_maps`)."""
    if degrees == 0:
        return image
    map_x, map_y = yaw_maps(image.shape[1], image.shape[0], box_xyxy, degrees)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def turn_points(points: np.ndarray, box_xyxy: np.ndarray, degrees: float) -> np.ndarray:
    """Where points inside the box move when the face is turned (the inverse of :func:`yaw_maps`' mapping)."""
    x1, _, x2, _ = (float(v) for v in box_xyxy)
    centre, radius = (x1 + x2) / 2, max((x2 - x1) / 2, 1.0)
    out = np.array(points, np.float32, copy=True)
    rel = np.clip((out[..., 0] - centre) / radius, -1.0, 1.0)
    out[..., 0] = centre + radius * np.sin(np.clip(np.arcsin(rel) + math.radians(degrees), -math.pi / 2,
                                                   math.pi / 2))
    return out


def place(image: np.ndarray, box_xyxy: np.ndarray, height: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, float, np.ndarray]:
    """The image scaled so the face box is ``height`` pixels tall and pasted near the centre of a
    :data:`FRAME_SIZE` frame of grey with faint noise (a plain wall).

    Returns:
        ``(frame, scale, offset)``: frame pixels are ``image pixels * scale + offset``.
    """
    width, frame_h = FRAME_SIZE
    scale = height / max(float(box_xyxy[3] - box_xyxy[1]), 1.0)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.clip(BACKGROUND + rng.normal(0.0, 3.0, (frame_h, width, 3)), 0, 255).astype(np.uint8)
    centre = (np.asarray(box_xyxy[:2]) + np.asarray(box_xyxy[2:])) / 2 * scale
    jitter = rng.uniform(-0.05, 0.05, 2) * np.array([width, frame_h])
    offset = np.round(np.array([width / 2, frame_h / 2]) + jitter - centre).astype(np.int64)
    sh, sw = small.shape[:2]
    fx1, fy1 = max(offset[0], 0), max(offset[1], 0)
    fx2, fy2 = min(offset[0] + sw, width), min(offset[1] + sh, frame_h)
    frame[fy1:fy2, fx1:fx2] = small[fy1 - offset[1] : fy2 - offset[1], fx1 - offset[0] : fx2 - offset[0]]
    return frame, scale, offset.astype(np.float32)


def apply(condition: Condition, image: np.ndarray, box_xyxy: np.ndarray, landmarks: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A face-centred image as the camera of ``condition`` would deliver it.

    Args:
        condition: What the camera does.
        image: ``(H, W, 3)`` uint8 BGR face-centred image.
        box_xyxy: ``(4,)`` the face's box in ``image`` (from the detector on the clean image).
        landmarks: ``(5, 2)`` its landmarks in ``image``.
        rng: Noise, jitter and occluder colour.

    Returns:
        ``(frame, landmarks)``: the frame, and where the clean landmarks land in it (the reference to fall back
        on when the detector misses the degraded face).
    """
    box = np.asarray(box_xyxy, np.float32)
    points = np.asarray(landmarks, np.float32)
    out = turn(image, box, condition.yaw)
    points = turn_points(points, box, condition.yaw) if condition.yaw else points
    out = occlude(out, box, condition.occlusion, rng)
    if condition.height:
        out, scale, offset = place(out, box, condition.height, rng)
        points = points * scale + offset
    out = motion_blur(out, condition.motion)
    out = defocus_blur(out, condition.defocus)
    out = low_light(out, condition.light, rng)
    return jpeg(out, condition.jpeg), points


# --------------------------------------------------------------------------------------- training chips


#: Conditions :func:`degrade_chip` draws from (the single degradations and the combined target, not ``clean``).
AUGMENTATIONS = tuple(c for c in CONDITIONS.values() if c.name != "clean")


def degrade_chip(chip: np.ndarray, condition: Condition, rng: np.random.Generator,
                 face_height_share: float = 0.55) -> np.ndarray:
    """An aligned chip as if its face had been seen under ``condition``.

    The face fills about ``face_height_share`` of an aligned chip's height (dlib-style templates), so a face of
    ``condition.height`` pixels is a chip resized down to ``height / face_height_share`` pixels and back up, blur
    lengths are scaled the same way, and occlusion and yaw act on the chip's central face box.

    Args:
        chip: ``(S, S, 3)`` uint8 BGR aligned chip.
        condition: The camera condition.
        rng: Noise and occluder colour.
        face_height_share: Face height over chip side in the chip's alignment template.

    Returns:
        ``(S, S, 3)`` uint8 BGR.
    """
    side = chip.shape[0]
    margin = (1 - face_height_share) / 2 * side
    box = np.array([margin, margin, side - margin, side - margin], np.float32)
    out = turn(chip, box, condition.yaw)
    out = occlude(out, box, condition.occlusion, rng)
    seen = side
    if condition.height:
        seen = max(8, int(round(condition.height / face_height_share)))
        if seen < side:
            out = cv2.resize(out, (seen, seen), interpolation=cv2.INTER_AREA)
    # Blur lengths are in frame pixels at the condition's face height, i.e. at a chip side of ``seen``.
    factor = out.shape[0] / seen
    out = motion_blur(out, int(round(condition.motion * factor)))
    out = defocus_blur(out, condition.defocus * factor)
    out = low_light(out, condition.light, rng)
    out = jpeg(out, condition.jpeg)
    if out.shape[0] != side:
        out = cv2.resize(out, (side, side), interpolation=cv2.INTER_LINEAR)
    return out


def augment_chips(chips: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """``chips`` with a random ``share`` of them degraded by one random condition of :data:`AUGMENTATIONS` each.

    Args:
        chips: ``(n, S, S, 3)`` uint8 BGR aligned chips (not modified).
        share: Probability that a chip is degraded (0: none, 1: all).
        rng: Which chips, which conditions, and their noise.

    Returns:
        ``(n, S, S, 3)`` uint8 BGR.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    picked = np.flatnonzero(rng.random(len(chips)) < share)
    if not len(picked):
        return chips
    out = chips.copy()
    for i in picked:
        out[i] = degrade_chip(chips[i], AUGMENTATIONS[int(rng.integers(len(AUGMENTATIONS)))], rng)
    return out
