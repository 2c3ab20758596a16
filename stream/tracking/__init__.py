"""Tracking: ByteTrack association of faces over frames (``core``, ``kalman``, ``matching``), hard-cut detection
(``cuts``) and identity by appearance across tracks (``appearance``, ``identity``).

``from stream.tracking import ByteTracker, iou_xyxy`` is the public surface used by the pipeline and the benchmarks.
"""

from stream.tracking.core import ByteTracker
from stream.tracking.matching import iou_xyxy, linear_sum_assignment

__all__ = ["ByteTracker", "iou_xyxy", "linear_sum_assignment"]
