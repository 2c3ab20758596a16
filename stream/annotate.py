"""Overlay: box, track id, gender, age group and years, confidence; fps and face count in a corner."""

from __future__ import annotations

import cv2
import numpy as np

from stream.config import PRIVACY_MODES
from stream.privacy import obscure_faces
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

_FEMALE = (180, 90, 235)  # BGR
_MALE = (235, 160, 40)
_UNKNOWN = (170, 170, 170)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_label(faces: Faces, i: int) -> tuple[str, tuple[int, int, int]]:
    """Text and colour for face ``i``: ``#3 F 31-40 34y 87%`` or ``#3 estimating...``."""
    prefix = f"#{faces.track_id[i]}" if faces.track_id[i] >= 0 else ""
    ready = faces.data.get(LABEL_READY)
    if ready is None or not ready[i]:
        n_obs = faces.data.get(N_OBS)
        progress = f" ({int(n_obs[i])})" if n_obs is not None and n_obs[i] > 0 else ""
        return f"{prefix} estimating...{progress}".strip(), _UNKNOWN
    probs = faces.data[AGE_GROUP_PROBS][i]
    shown = faces.data.get(SHOWN_GROUP)
    group = int(shown[i]) if shown is not None and shown[i] >= 0 else int(np.argmax(probs))
    parts = [prefix]
    p_female = float(faces.data[P_FEMALE][i]) if P_FEMALE in faces.data else float("nan")
    color = _UNKNOWN
    if np.isfinite(p_female):
        shown_female = faces.data.get(SHOWN_FEMALE)
        female = bool(shown_female[i]) if shown_female is not None and shown_female[i] >= 0 else p_female >= 0.5
        parts.append("F" if female else "M")
        color = _FEMALE if female else _MALE
    parts.append(AGE_GROUPS[group])
    age = float(faces.data[AGE_YEARS][i]) if AGE_YEARS in faces.data else float("nan")
    if np.isfinite(age):
        parts.append(f"{age:.0f}y")
    parts.append(f"{probs[group] * 100:.0f}%")
    return " ".join(p for p in parts if p), color


class Annotator:
    """Draws faces and stats on a copy of the frame.

    Args:
        draw_landmarks: Draw the 5 landmarks as dots.
        font_scale: Label text scale; 0 picks one from the frame height.
        show_stats: Draw fps and face count in the top-left corner.
        privacy: ``"blur"`` or ``"pixelate"`` obscures every face before drawing (stream/privacy.py); ``"none"``.
    """

    def __init__(
        self, *, draw_landmarks: bool = True, font_scale: float = 0.0, show_stats: bool = True, privacy: str = "none"
    ) -> None:
        if font_scale < 0:
            raise ValueError(f"font_scale must be >= 0, got {font_scale}")
        self.draw_landmarks = draw_landmarks
        self.font_scale = font_scale
        self.show_stats = show_stats
        if privacy not in PRIVACY_MODES:
            raise ValueError(f"privacy must be one of {', '.join(PRIVACY_MODES)}, got {privacy!r}")
        self.privacy = privacy

    def draw(self, image: np.ndarray, faces: Faces, fps: float | None = None, *, in_place: bool = False,
             obscure: np.ndarray | None = None) -> np.ndarray:
        """Draw the overlay.

        Args:
            image: ``(H, W, 3)`` uint8 BGR frame.
            faces: Faces with labels from the track book.
            fps: Processing rate to show, if known.
            in_place: Draw on ``image`` itself (the pipeline does: a 1080p copy costs ~3 ms a frame and
                nothing needs the clean frame afterwards); otherwise on a copy.
            obscure: ``(m, 4)`` more boxes for privacy mode to obscure besides the faces' (detections the tracker
                has not confirmed yet).

        Returns:
            ``(H, W, 3)`` uint8 BGR annotated image.
        """
        out = image if in_place else image.copy()
        # Privacy first, so boxes and labels stay readable; landmarks would show where the eyes are.
        if self.privacy != "none":
            obscure_faces(out, faces.xyxy if obscure is None else np.concatenate([faces.xyxy, obscure]), self.privacy)
        draw_landmarks = self.draw_landmarks and self.privacy == "none"
        h = out.shape[0]
        scale = self.font_scale or max(0.4, h / 1400)
        thick = max(1, round(scale * 2))
        for i in range(len(faces)):
            text, color = face_label(faces, i)
            x1, y1, x2, y2 = (int(round(v)) for v in faces.xyxy[i])
            # Axis-aligned lines and 1-3 px dots gain nothing from anti-aliasing (only text keeps it): ~12% of
            # the overlay's cost with 32 faces.
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
            if draw_landmarks and np.isfinite(faces.landmarks[i]).all():
                for x, y in faces.landmarks[i]:
                    cv2.circle(out, (int(round(x)), int(round(y))), max(1, thick), color, -1)
            (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
            ty = y1 - 4 if y1 - th - base - 4 >= 0 else y2 + th + 4
            cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + base // 2), color, -1)
            cv2.putText(out, text, (x1 + 2, ty - base // 2), _FONT, scale, (20, 20, 20), thick, cv2.LINE_AA)
        if self.show_stats:
            stats = f"faces {len(faces)}" + (f" | {fps:.1f} fps" if fps else "")
            (tw, th), base = cv2.getTextSize(stats, _FONT, scale, thick)
            cv2.rectangle(out, (0, 0), (tw + 12, th + base + 12), (0, 0, 0), -1)
            cv2.putText(out, stats, (6, th + 6), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        return out
