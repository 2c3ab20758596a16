"""Is a detection a face worth classifying? Two cheap checks on the detector's own boxes and landmarks.

Detectors fire on things that are not faces, or not the face: the top of a bowed head above the face itself, a
hand, a patterned shirt. Such a box is tracked like any other, and once classified it gets a label ("66-80 61y" on
the hair of a boy looking down in ``crowd_1080p.mp4``) and an embedding that can be mistaken for somebody's. The
checks below decide which detections may be classified (:class:`stream.scheduler.Scheduler`); they are still
tracked, so nothing about the tracks' motion changes.

* **A box stacked on a face**: a detection overlapping a more confident one that lies below it (its centre lower by
  more than :data:`STACK_DROP` of this box's height, horizontally within half that box's width, the two boxes
  sharing more than :data:`STACK_OVERLAP` of this box's area) is the top of that person's head. On
  ``crowd_1080p.mp4`` this marks 35 of the 42 classifiable detections of the four false-positive tracks, and none
  of the 591 of its real faces nor of the 694 of the five single-person clips (every third frame).
* **Landmarks in a face's order**: in the frame of the eye line, the nose lies below the eyes by
  :data:`NOSE_DROP` inter-ocular distances, and the mouth below the nose by at least :data:`MOUTH_BELOW_NOSE`. A
  pattern the detector reads as a face squeezes its "nose" and "mouth" up against the "eyes" (the shirt in
  ``crowd_1080p.mp4``: nose 0.20-0.32, mouth 0.12-0.17 below it; the hair of a bowed head: mouth 0.1-0.2 below
  the nose). Turned and tilted real faces stay inside the bounds (YuNet: 2 of 591 real detections of the crowd
  fall outside, none of the single-person clips'; RetinaFace: 1 of 120 on the crowd, a profile whose "mouth" is
  above its "nose").
"""

from __future__ import annotations

import numpy as np

from stream.types import Faces

#: A box counts as stacked on a more confident one below it when they share this fraction of its own area...
STACK_OVERLAP = 0.1
#: ...and that box's centre is lower by this fraction of its height.
STACK_DROP = 0.3
#: Least drop of the nose below the eye line, in inter-ocular distances (frontal faces ~0.5-0.8; a bowed head
#: lowers it, a turned one raises it: the eyes come together, up to 8 on RetinaFace's profiles, so no upper bound).
NOSE_DROP = 0.35
#: Mouth (centre of its corners) below the nose, in inter-ocular distances (frontal faces ~0.4-0.6).
MOUTH_BELOW_NOSE = 0.25


def landmarks_in_face_order(faces: Faces) -> np.ndarray:
    """``(n,)`` bool: eyes above nose above mouth in the eye line's frame, at face-like distances.

    Faces without landmarks (NaN) pass: there is nothing to judge them by, and nothing to align them with either
    (the scheduler skips them for that).
    """
    lm = faces.landmarks.astype(np.float64)
    eyes = lm[:, 1] - lm[:, 0]
    iod = np.maximum(np.linalg.norm(eyes, axis=1), 1e-6)
    along = eyes / iod[:, None]
    down = np.stack([-along[:, 1], along[:, 0]], axis=1)  # image y grows downwards
    eye_mid = (lm[:, 0] + lm[:, 1]) / 2
    nose = np.einsum("nk,nk->n", lm[:, 2] - eye_mid, down) / iod
    mouth = np.einsum("nk,nk->n", (lm[:, 3] + lm[:, 4]) / 2 - eye_mid, down) / iod
    ok = (nose >= NOSE_DROP) & (mouth - nose >= MOUTH_BELOW_NOSE)
    return ok | ~np.isfinite(lm).all(axis=(1, 2))


def stacked_on_a_face(faces: Faces) -> np.ndarray:
    """``(n,)`` bool: the box sits on top of a more confident detection (the top of that person's head)."""
    n = len(faces)
    if n < 2:
        return np.zeros(n, bool)
    xyxy = faces.xyxy.astype(np.float64)
    w = np.maximum(xyxy[:, 2] - xyxy[:, 0], 1e-6)
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-6)
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    low, high = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2]), np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    ix, iy = np.moveaxis(np.clip(high - low, 0, None), 2, 0)
    # Row i, column j: is box i stacked on box j?
    stacked = ((ix * iy / (w * h)[:, None] > STACK_OVERLAP)
               & (cy[None, :] - cy[:, None] > STACK_DROP * h[:, None])
               & (np.abs(cx[None, :] - cx[:, None]) < 0.5 * w[None, :])
               & (faces.score[None, :] > faces.score[:, None]))
    return stacked.any(axis=1)


def plausible_faces(faces: Faces) -> np.ndarray:
    """``(n,)`` bool: detections of one frame (all of them, before tracking) that may be classified."""
    return landmarks_in_face_order(faces) & ~stacked_on_a_face(faces)
