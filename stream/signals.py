"""Ctrl-C and SIGTERM: a graceful stop after the frame in flight, a forced one when that takes too long.

After Ctrl-C/SIGTERM the frame in flight still reaches every sink (so the video and the events file hold the
same frames); a run that does not reach the end of its frame within :data:`STOP_GRACE_S` (e.g. blocked on a
live source that went silent) is interrupted where it is. A second signal interrupts at once.

An exception raised by a signal handler lands wherever the main thread is, and Python ignores exceptions in a
finalizer or weakref callback (it prints "Exception ignored in ..." and goes on). A forced stop that lands there
is raised again a moment later instead (:meth:`StopSignals._on_unraisable`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

STOP_GRACE_S = 2.0
# A forced stop that Python ignored (raised inside a finalizer) is raised again after this long.
_RERAISE_S = 0.05
# A worker told to stop at once (a second signal) gets this long to leave what it is doing (an encode, a spool
# write: milliseconds normally; the bound only covers a wedged one); waits poll at _WAIT_STEP_S.
_SETTLE_S = 10.0
_WAIT_STEP_S = 0.2


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
        self._swallowed: int | None = None  # a forced stop Python ignored (raised in a finalizer), to raise again
        self._previous_hook: Callable[[Any], Any] | None = None

    def install(self) -> dict[int, Any]:
        """Install the handlers; returns the previous ones for :meth:`restore`."""
        previous: dict[int, Any] = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        if self._has_timer:
            previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._on_unraisable
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
        if self._previous_hook is not None:
            sys.unraisablehook, self._previous_hook = self._previous_hook, None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if self.graceful and self.signum is None:
            self.signum = signum
            if self._has_timer:
                signal.setitimer(signal.ITIMER_REAL, STOP_GRACE_S)
            return
        self._raise(signum)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        swallowed, self._swallowed = self._swallowed, None
        if swallowed is not None or self.signum is not None:
            self._raise(swallowed if swallowed is not None else self.signum)  # type: ignore[arg-type]

    def _on_unraisable(self, unraisable: Any) -> None:
        """``sys.unraisablehook``: a forced stop raised inside a finalizer or weakref callback was ignored by Python;
        raise it again in a moment, where it unwinds the run (silently: it is no error). Anything else is
        reported as before."""
        if isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)) and self.received is not None:
            self._swallowed = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
            signal.setitimer(signal.ITIMER_REAL, _RERAISE_S)
            return
        assert self._previous_hook is not None
        self._previous_hook(unraisable)

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


def wait_for_worker(
    done: threading.Event, *, hurry: Callable[[], None], start: Callable[[], None] | None = None,
    timeout_s: float | None = None,
) -> BaseException | None:
    """Wait for a sink's worker thread to end (``done`` is set as its target returns) before its resources go.

    Closing what a worker still uses (a libav container, a spool file) under it crashes or corrupts, so a
    Ctrl-C/SIGTERM that cuts the wait short (a second signal, while outputs are finalized) calls ``hurry``
    (stop now, dropping what is queued) and waits for the worker to leave, holding off further signals, for
    at most a few seconds. Never ``Thread.join``: on Python 3.11 a join cut short by a signal marks the still
    running thread as stopped.

    Args:
        done: Set by the worker when it has ended.
        hurry: Tells the worker to stop at once.
        start: Asks the worker to finish (e.g. queues its end marker); may block, and is interruptible too.
        timeout_s: Give up waiting after this long (the worker is left running); None: no limit.

    Returns:
        The exception of the signal that cut the wait short, for the caller to raise once it has released the
        worker's resources; None when the wait ended on its own.
    """
    try:
        if start is not None:
            start()
        deadline = float("inf") if timeout_s is None else time.monotonic() + timeout_s
        while not done.wait(max(0.0, min(_WAIT_STEP_S, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
        return None
    except (KeyboardInterrupt, Terminated) as signalled:
        hurry()
        settle_until = time.monotonic() + _SETTLE_S
        while not done.is_set() and time.monotonic() < settle_until:
            with contextlib.suppress(KeyboardInterrupt, Terminated):
                done.wait(_WAIT_STEP_S)
        return signalled
