"""Overlay: box, track id, gender, age group and years, confidence; fps and face count in a corner."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from stream.config import AnnotateConfig, settings
from stream.labels import FEMALE, ShownLabel, face_labels, label_text
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
    """

    def __init__(self, config: AnnotateConfig | None = None, /, **overrides: Any) -> None:
        settings_ = settings(AnnotateConfig, config, overrides)
        self.draw_landmarks = settings_.draw_landmarks
        self.font_scale = settings_.font_scale
        self.show_stats = settings_.show_stats

    def draw(self, image: np.ndarray, faces: Faces, fps: float | None = None, *, in_place: bool = False) -> np.ndarray:
        """Draw the overlay.

        Args:
            image: ``(H, W, 3)`` uint8 BGR frame.
            faces: Faces with labels from the track book.
            fps: Processing rate to show, if known.
            in_place: Draw on ``image`` itself (the pipeline does: a 1080p copy costs ~3 ms a frame and
                nothing needs the clean frame afterwards); otherwise on a copy.

        Returns:
            ``(H, W, 3)`` uint8 BGR annotated image.
        """
        out = image if in_place else image.copy()
        h = out.shape[0]
        scale = self.font_scale or max(0.4, h / 1400)
        thick = max(1, round(scale * 2))
        for i, label in enumerate(face_labels(faces)):
            text, color = label_text(label, int(faces.track_id[i])), label_color(label)
            x1, y1, x2, y2 = (int(round(v)) for v in faces.xyxy[i])
            # Axis-aligned lines and 1-3 px dots gain nothing from anti-aliasing (only text keeps it): ~12% of
            # the overlay's cost with 32 faces.
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
            if self.draw_landmarks and np.isfinite(faces.landmarks[i]).all():
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
