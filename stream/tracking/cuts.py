"""Hard-cut detection: has the camera's picture been replaced between two consecutive frames?

An edited clip, a PTZ preset change, a camera wall that cycles or recorded TV replaces the whole picture from one
frame to the next. Boxes of different people can then overlap across the cut, and an IoU tracker would carry one
person's track (and fused age/gender) over to another. A cut is cheap to see: both the colour content and the
layout of the picture change at once, while within a shot they change little between consecutive frames.

Two statistics of a ~64-pixel-wide thumbnail (every k-th pixel of the frame: no resize, so even a 1080p frame costs
little; figures: README, ``python -m bench.identity``):

* the colour histogram's change: total variation distance (half the L1 distance, 0..1) between the 8x4x4-bin HSV
  histograms of consecutive frames. On the shared clips, consecutive frames within a shot differ by at most 0.063
  (crowd_1080p, a moving crowd), the last and first frames of two different clips by at least 0.55;
* the layout's change: the mean absolute difference of the grey thumbnails (0..1); at most 0.05 within the shared
  clips' shots, at least 0.18 across clips. It catches a cut between two shots of similar colours.

A frame is a cut when either exceeds its threshold. A false cut is cheap (tracks end and appearance re-identifies
their people, :mod:`stream.tracking.identity`); a missed one is what the appearance check on each classification
catches.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Thumbnail width in pixels (frames are sampled every ``width // THUMB_WIDTH`` pixels).
THUMB_WIDTH = 64
#: HSV histogram bins (hue, saturation, value): coarse, so lighting noise and small motion stay in their bins.
_BINS = (8, 4, 4)
_RANGES = (0, 180, 0, 256, 0, 256)


class CutDetector:
    """Says whether each frame starts a new shot, from the previous frame it was shown.

    Args:
        histogram_threshold: Colour histogram change (total variation, in ``[0, 1]``) above which a frame is a cut;
            1 turns this test off.
        difference_threshold: Mean absolute grey difference of the thumbnails (in ``[0, 1]``) above which a frame
            is a cut; 1 turns this test off.
    """

    def __init__(self, histogram_threshold: float, difference_threshold: float) -> None:
        self.histogram_threshold = float(histogram_threshold)
        self.difference_threshold = float(difference_threshold)
        self.last_histogram_change = 0.0
        self.last_difference = 0.0
        self.reset()

    @property
    def enabled(self) -> bool:
        return self.histogram_threshold < 1.0 or self.difference_threshold < 1.0

    def reset(self) -> None:
        """Forget the previous frame (the next one is never a cut)."""
        self._histogram: np.ndarray | None = None
        self._grey: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        """Whether ``image`` (``(H, W, 3)`` uint8 BGR) starts a new shot after the previous call's image.

        The first image is not a cut (there is nothing to compare it with); an image of another size than the
        previous one is (the stream changed: boxes of the old size mean nothing in it).
        """
        if not self.enabled:
            return False
        step = max(1, image.shape[1] // THUMB_WIDTH)
        thumb = np.ascontiguousarray(image[::step, ::step])
        hsv = cv2.cvtColor(thumb, cv2.COLOR_BGR2HSV)
        counts = cv2.calcHist([hsv], [0, 1, 2], None, list(_BINS), list(_RANGES)).ravel()
        histogram = counts.astype(np.float32) / max(float(counts.sum()), 1.0)
        grey = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY).astype(np.float32) * (1.0 / 255.0)
        previous_histogram, previous_grey = self._histogram, self._grey
        self._histogram, self._grey = histogram, grey
        if previous_histogram is None or previous_grey is None:
            self.last_histogram_change = self.last_difference = 0.0
            return False
        if previous_grey.shape != grey.shape:
            self.last_histogram_change = self.last_difference = 1.0
            return True
        self.last_histogram_change = 0.5 * float(np.abs(histogram - previous_histogram).sum())
        self.last_difference = float(np.abs(grey - previous_grey).mean())
        return bool(self.last_histogram_change > self.histogram_threshold
                    or self.last_difference > self.difference_threshold)
