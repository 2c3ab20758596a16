"""A signal handler's exception at a chosen moment, as Ctrl-C/SIGTERM raise it in the CLI."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def raised_after(seconds: float, exception: type[BaseException] = KeyboardInterrupt) -> Iterator[None]:
    """Within the block, ``exception`` is raised in the main thread after ``seconds``, wherever it then is (a
    wait, a join, a callback): what the CLI's handler does on a second Ctrl-C. The alarm and the previous
    handler are put back after the block."""

    def interrupt(signum: int, frame: object) -> None:
        raise exception

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
