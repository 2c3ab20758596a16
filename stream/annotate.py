"""Overlay: box, track id, gender, age group and years, confidence; fps and face count in a corner."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from stream.config import AnnotateConfig, settings
from stream.labels import FEMALE, ShownLabel, face_labels, label_text
from stream.privacy import obscure_faces
from stream.types import Faces

_FEMALE = (180, 90, 235)  # BGR
_MALE = (235, 160, 40)
_UNKNOWN = (170, 170, 170)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_color(label: ShownLabel) -> tuple[int, int, int]:
    """BGR colour of a face's box and label: by the gender shown, grey while there is none (not ready, or
    undecided)."""
    if not label.ready or label.gender is None:
        return _UNKNOWN
    return _FEMALE if label.gender == FEMALE else _MALE


class Annotator:
    """Draws faces and stats on a copy of the frame; the label text is :func:`stream.labels.label_text`.

    Built from a :class:`~stream.config.AnnotateConfig` (the ``annotate:`` section), with keyword overrides.

    Args:
        draw_landmarks: Draw the 5 landmarks as dots.
        font_scale: Label text scale; 0 picks one from the frame height.
        show_stats: Draw fps and face count in the top-left corner.
        privacy: ``"blur"`` or ``"pixelate"`` obscures every face before drawing (stream/privacy.py); ``"none"``.
    """

    def __init__(self, config: AnnotateConfig | None = None, /, **overrides: Any) -> None:
        settings_ = settings(AnnotateConfig, config, overrides)
        self.draw_landmarks = settings_.draw_landmarks
        self.font_scale = settings_.font_scale
        self.show_stats = settings_.show_stats
        self.privacy = settings_.privacy

    def draw(self, image: np.ndarray, faces: Faces, fps: float | None = None, *, in_place: bool = False,
             obscure: np.ndarray | None = None) -> np.ndarray:
        """Draw the overlay.

        Args:
            image: ``(H, W, 3)`` uint8 BGR frame.
            faces: Faces with labels from the track book.
            fps: Processing rate to show, if known.
            in_place: Draw on ``image`` itself (the pipeline does: a 1080p copy costs about as much as the
                drawing, and nothing needs the clean frame afterwards); otherwise on a copy.
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
        placed: list[tuple[int, int, int, int]] = []  # label boxes already drawn on this frame
        for i, label in enumerate(face_labels(faces)):
            text, color = label_text(label, int(faces.track_id[i])), label_color(label)
            x1, y1, x2, y2 = (int(round(v)) for v in faces.xyxy[i])
            # Axis-aligned lines and 1-3 px dots gain nothing from anti-aliasing (only text keeps it): ~12% of
            # the overlay's cost with 32 faces.
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
            if draw_landmarks and np.isfinite(faces.landmarks[i]).all():
                for x, y in faces.landmarks[i]:
                    cv2.circle(out, (int(round(x)), int(round(y))), max(1, thick), color, -1)
            (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
            box = _label_box(x1, y1, x2, y2, tw + 4, th + base + base // 2, out.shape[1], h, placed)
            placed.append(box)
            lx, top, right, bottom = box
            cv2.rectangle(out, (lx, top), (right, bottom), color, -1)
            cv2.putText(out, text, (lx + 2, bottom - base // 2 - base // 2), _FONT, scale, (20, 20, 20), thick,
                        cv2.LINE_AA)
        if self.show_stats:
            stats = f"faces {len(faces)}" + (f" | {fps:.1f} fps" if fps else "")
            (tw, th), base = cv2.getTextSize(stats, _FONT, scale, thick)
            cv2.rectangle(out, (0, 0), (tw + 12, th + base + 12), (0, 0, 0), -1)
            cv2.putText(out, stats, (6, th + 6), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        return out


def _label_box(x1: int, y1: int, x2: int, y2: int, width: int, height: int, frame_w: int, frame_h: int,
               placed: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """Where a face's label goes: ``(left, top, right, bottom)``.

    Above the face box (below it at the top of the frame), kept inside the frame; in a crowd, where that spot is
    taken by a label already drawn, the label is stacked higher (up to 3 rows), or put below the box, so that no
    label hides another's text. When every spot is taken, the first is used.
    """
    left = max(0, min(x1, frame_w - width))
    above = y1 - 4 - height
    candidates = [above - k * (height + 2) for k in range(4)] + [y2 + 4]
    tops = [t for t in candidates if t >= 0 and t + height <= frame_h] or [max(0, min(y2 + 4, frame_h - height))]

    def free(top: int) -> bool:
        return all(left >= r or left + width <= lft or top >= b or top + height <= t for lft, t, r, b in placed)

    top = next((t for t in tops if free(t)), tops[0])
    return left, top, left + width, top + height
