"""An on-screen window (``--show``) through ``cv2.imshow``.

OpenCV's Qt backend aborts the whole process (uncatchably) when it cannot reach a
display, so the display is checked before any HighGUI call: on Linux an X11
``DISPLAY`` must be set and its server must accept a connection.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

import cv2

from stream.config import SinkOptions
from stream.sinks.base import Sink, SinkContext, SinkError
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

# Keys that stop the pipeline: q, Q, Esc.
QUIT_KEYS: frozenset[int] = frozenset({ord("q"), ord("Q"), 27})
# A first window no larger than this (it stays resizable); 4K frames would not fit a laptop screen.
_MAX_INITIAL_SIZE = (1600, 900)


def _gui_backend() -> str:
    """The HighGUI backend of this OpenCV build, e.g. "QT5", "GTK3", "WIN32UI", "NONE"."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return match.group(1).upper() if match else "UNKNOWN"


def _x11_reachable(display: str, timeout_s: float = 1.0) -> bool:
    """Whether the X server named by a ``DISPLAY`` value accepts a connection.

    Handles ``:N``, ``:N.S``, ``unix:N`` (local socket) and ``host:N`` (TCP port 6000+N, e.g.
    ssh X forwarding). Unrecognised forms are assumed reachable rather than refused.
    """
    match = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display)
    if match is None:
        return True
    host, number = match.group("host"), int(match.group("num"))
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        # The filesystem socket first, then Linux's abstract one (Xorg listens on both).
        for address in (path, "\0" + path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                try:
                    sock.connect(address)
                except OSError:
                    continue
                return True
        return False
    try:
        with socket.create_connection((host, 6000 + number), timeout=timeout_s):
            return True
    except OSError:
        return False


def display_problem() -> str | None:
    """Why no window can be opened in this process, or None when one can.

    Returns:
        A short reason (to complete "--show needs a display: ..."), or None.
    """
    backend = _gui_backend()
    if backend == "NONE":
        return "this OpenCV build has no GUI support (opencv-python-headless?); install opencv-python"
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return None  # macOS and Windows always have a window system
    display = os.environ.get("DISPLAY", "")
    wayland = os.environ.get("WAYLAND_DISPLAY", "")
    if not display:
        if wayland and not backend.startswith("QT"):
            return None  # GTK draws on Wayland natively
        if wayland:
            # opencv-python's Qt ships only the X11 (xcb) platform plugin.
            return "WAYLAND_DISPLAY is set, but this OpenCV build needs X11 and DISPLAY is unset (start XWayland)"
        return "none found (DISPLAY is unset)"
    if not _x11_reachable(display):
        return f"DISPLAY={display} is set but no X server answers there"
    return None


class WindowSink(Sink, kind="window"):
    """Show annotated frames in a window; ``q`` or Esc (or closing the window) requests a stop.

    Args:
        options: Supplies ``window_name``.

    Raises:
        SinkError: No display is available (checked before any HighGUI call) or the window
            cannot be created.
    """

    @classmethod
    def open(cls, target: str, context: SinkContext) -> WindowSink:
        return cls(context.options)

    def __init__(self, options: SinkOptions | None = None) -> None:
        super().__init__()
        self.options = options if options is not None else SinkOptions()
        self.name = self.options.window_name
        problem = display_problem()
        if problem is not None:
            raise SinkError(f"--show needs a display: {problem}; use --output instead")
        try:
            cv2.namedWindow(self.name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as err:
            raise SinkError(f"--show could not open a window: {err}; use --output instead") from err
        self._quit = False
        self._sized = False
        self._shown = 0

    @property
    def quit_requested(self) -> bool:
        """True once the user pressed q/Esc in the window or closed it."""
        return self._quit

    @property
    def frames_shown(self) -> int:
        """Frames shown so far."""
        return self._shown

    def write(self, frame: Frame, faces: Faces) -> None:
        """Show ``frame.image`` and poll the keyboard for 1 ms.

        Args:
            frame: The frame; ``frame.image`` is ``(H, W, 3)`` uint8 BGR.
            faces: Unused (the annotations are already drawn).
        """
        self._check_open()
        if not self._sized:
            scale = min(1.0, _MAX_INITIAL_SIZE[0] / frame.width, _MAX_INITIAL_SIZE[1] / frame.height)
            cv2.resizeWindow(self.name, max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
            self._sized = True
        cv2.imshow(self.name, frame.image)
        self._shown += 1
        self.poll()

    def poll(self, delay_ms: int = 1) -> bool:
        """Process window events for ``delay_ms`` and record a quit request.

        Args:
            delay_ms: How long to wait for a key, in milliseconds (>= 1).

        Returns:
            :attr:`quit_requested`.
        """
        key = cv2.waitKey(max(1, int(delay_ms)))
        if key != -1 and key & 0xFF in QUIT_KEYS:
            logger.info("window %r: quit key pressed", self.name)
            self._quit = True
        elif cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1:
            # The user closed the window: treat it as a request to stop (imshow would reopen it).
            logger.info("window %r closed", self.name)
            self._quit = True
        return self._quit

    def _close(self) -> None:
        try:
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)  # let the GUI process the destroy event
        except cv2.error as err:
            logger.debug("closing window %r: %s", self.name, err)
