"""Load OpenCV's own X11 (xcb) extension libraries before PyAV's, so ``--show`` windows open.

The opencv-python and av wheels both bundle ``libxcb-shm``, ``libxcb-shape`` and ``libxcb-xfixes`` under the
*same* mangled file names but built against different ``libxcb`` copies (OpenCV's use the system ``libxcb.so.1``,
PyAV's its own). The dynamic linker loads a name once: when ``import av`` comes first, OpenCV's Qt later binds
to PyAV's copies, two ``libxcb`` instances share one X connection, and the first ``cv2.namedWindow`` spins
forever inside ``xcb_wait_for_reply``. Loading OpenCV's copies first makes both wheels use them (PyAV only
needs them for ``x11grab``, which this project never uses). Called once, from :mod:`stream`'s ``__init__``,
before anything imports av; a no-op where there is nothing to load (headless OpenCV, no system libxcb, not
Linux).
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path

#: The libraries both wheels ship under one name (PyAV 18.1.0, opencv-python 5.0.0.93).
_SHARED_NAMES = ("libxcb-shm-", "libxcb-shape-", "libxcb-xfixes-")


def prefer_opencv_xcb() -> None:
    if not sys.platform.startswith("linux") or "av" in sys.modules:
        return
    spec = importlib.util.find_spec("cv2")
    if spec is None or spec.origin is None:
        return
    libs = Path(spec.origin).resolve().parent.parent / "opencv_python.libs"
    if not libs.is_dir():
        return  # opencv-python-headless: no Qt, no windows, nothing to clash
    for path in sorted(libs.iterdir()):
        if path.name.startswith(_SHARED_NAMES):
            try:
                ctypes.CDLL(str(path))
            except OSError:
                return  # no system libxcb.so.1: OpenCV cannot open windows here anyway
