"""The built-in demo source (``--source demo``): a camera moving over a public-domain portrait.

A bare machine has no camera and no clip, yet a newcomer's first command should show the whole product at
work: detection, a track that keeps its id, a label that appears after a few observations, a video and
events written. The demo renders a 1280x720, 25 fps clip from one photo fetched and verified like the
models (``demo_astronaut`` in the registry: NASA's portrait of Eileen Collins, public domain, carried in the
scikit-image wheel): the face drifts across the frame, comes closer and moves away again, so its width goes
from about 40 to 120 pixels. It is a file-like source: every frame, in order, then the end.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from models.fetch import ModelError, model_path
from stream.config import SourceOptions
from stream.sources.base import Source, SourceError
from stream.types import Frame

#: The spec that selects it on the command line.
DEMO_SPEC = "demo"
#: The registry entry of the photo.
DEMO_ASSET = "demo_astronaut"
WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 25.0, 12.0
_BACKDROP = (46, 42, 38)  # BGR: a dim, slightly warm room


class DemoSource(Source):
    """A ``SECONDS``-long clip rendered on the fly from the demo photo (see the module docstring).

    Raises:
        SourceError: The photo cannot be fetched or verified (one line saying how to get it).
    """

    kind = "video"

    def __init__(self, options: SourceOptions | None = None, *, download: bool = True) -> None:
        super().__init__("demo (NASA portrait, public domain)", fps=FPS, frame_count=int(SECONDS * FPS))
        try:
            path = model_path(DEMO_ASSET, download=download)
        except ModelError as error:
            raise SourceError(f"the demo source needs its photo: {error}") from None
        photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if photo is None:
            raise SourceError(f"the demo photo {path} cannot be decoded; delete it and run again to re-fetch it")
        self._photo = photo
        self._index = 0

    def _next_frame(self) -> Frame:
        if self._index >= (self.frame_count or 0):
            raise StopIteration
        t = self._index / FPS
        frame = Frame(self._index, t, render(self._photo, t), self.name)
        self._index += 1
        return frame


def render(photo: np.ndarray, t: float) -> np.ndarray:
    """The demo frame at ``t`` seconds: the photo scaled and placed by a smooth camera path.

    Args:
        photo: ``(h, w, 3)`` uint8 BGR photo.
        t: Seconds since the start.

    Returns:
        ``(HEIGHT, WIDTH, 3)`` uint8 BGR frame.
    """
    phase = 2 * math.pi * t / SECONDS
    # Closer in the middle of the clip, farther at its ends; a gentle left-right drift.
    scale = 0.45 + 0.9 * (0.5 - 0.5 * math.cos(phase))
    side = max(8, round(photo.shape[0] * scale))
    image = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    cx = WIDTH / 2 + 0.3 * WIDTH * math.sin(phase)
    cy = HEIGHT / 2 + 0.05 * HEIGHT * math.sin(2 * phase)
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[:] = _BACKDROP
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    # Paste the part of the scaled photo that falls inside the frame.
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(WIDTH, x0 + side), min(HEIGHT, y0 + side)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = image[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    return frame
