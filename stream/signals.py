"""Ctrl-C and SIGTERM: a graceful stop after the frame in flight, a forced one when that takes too long.

After Ctrl-C/SIGTERM the frame in flight still reaches every sink (so the video and the events file hold the
same frames); a run that does not reach the end of its frame within :data:`STOP_GRACE_S` (e.g. blocked on a
live source that went silent) is interrupted where it is. A second signal interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

STOP_GRACE_S = 2.0


class Terminated(Exception):
    """SIGTERM arrived; unwinds the pipeline like Ctrl-C so every sink is finalized."""


class StopSignals:
    """SIGINT/SIGTERM handling: a graceful stop between frames, a forced one otherwise.

    While the frame loop runs (``graceful``), the first signal only records itself; the loop polls
    :attr:`signum` after each frame and ends there. An alarm after :data:`STOP_GRACE_S` and any second
    signal raise at once (``KeyboardInterrupt`` / :class:`Terminated`), as every signal does outside the loop.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.received: int | None = None  # the last signal, also one that raised (so an error it caused maps back)
        self.graceful = False
        self._has_timer = hasattr(signal, "setitimer")  # not on Windows: there a second Ctrl-C forces the stop

    def install(self) -> dict[int, Any]:
        """Install the handlers; returns the previous ones for :meth:`restore`."""
        previous: dict[int, Any] = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        if self._has_timer:
            previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        return previous

    def disarm(self) -> None:
        """Leave graceful mode (the frame loop is over): later signals raise at once."""
        self.graceful = False
        if self._has_timer:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def restore(self, previous: dict[int, Any]) -> None:
        """Disarm and put back the handlers :meth:`install` replaced."""
        self.disarm()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if self.graceful and self.signum is None:
            self.signum = signum
            if self._has_timer:
                signal.setitimer(signal.ITIMER_REAL, STOP_GRACE_S)
            return
        self._raise(signum)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            self._raise(self.signum)

    @staticmethod
    def _raise(signum: int) -> NoReturn:
        if signum == signal.SIGTERM:
            raise Terminated()
        raise KeyboardInterrupt


@contextmanager
def signals_set(event: threading.Event) -> Iterator[threading.Event]:
    """While the block runs, Ctrl-C and SIGTERM only set ``event`` (a loop that polls it ends cleanly, e.g.
    ``python -m stream.aggregate``); the previous handlers come back after it."""
    previous = {signum: signal.signal(signum, lambda *_: event.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
