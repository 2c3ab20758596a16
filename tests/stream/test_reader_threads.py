"""Reader threads blocked in native code, and the CLI's exit past them.

A reader blocked on a stalled server cannot be joined; if the interpreter shuts down under it, PyAV's timeout
callback takes the GIL after finalization and the process dies of SIGSEGV after its outputs were finalized.
On Python 3.11 a ``Thread.join(timeout)`` cut short by a signal handler's exception marks a thread that is
still running as stopped, so ``is_alive()`` cannot tell whether a reader is stuck; these tests interrupt the
wait the way Ctrl-C/SIGTERM does and check that the reader is still known to be running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from stream.sources import _off_the_main_thread
from stream.sources.base import ReaderThread
from tests.support.cli_util import child_env
from tests.support.interrupts import raised_after

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")


def test_a_reader_whose_wait_a_signal_cut_short_is_still_known_to_run() -> None:
    release = threading.Event()
    with raised_after(0.3), pytest.raises(KeyboardInterrupt):
        _off_the_main_thread(release.wait, 30.0, name="stalled-server")
    try:
        assert "reader:open stalled-server" in ReaderThread.unfinished()
    finally:
        release.set()
    readers = [t for t in threading.enumerate() if t.name == "reader:open stalled-server"]
    assert readers and all(isinstance(t, ReaderThread) and t.wait(5.0) for t in readers)
    assert "reader:open stalled-server" not in ReaderThread.unfinished()


_EXIT_SCRIPT = """
    import atexit, signal, sys, threading
    from stream.sources import _off_the_main_thread
    from stream.sources.base import exit_past_stuck_readers

    class Interrupted(Exception):
        pass

    def interrupt(signum, frame):
        raise Interrupted

    atexit.register(lambda: print("interpreter teardown", flush=True))
    release = threading.Event()
    if sys.argv[1] == "stuck":
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        try:
            _off_the_main_thread(release.wait, 30.0, name="stalled-server")
        except Interrupted:
            print("interrupted", flush=True)
    else:
        _off_the_main_thread(lambda: None, name="answered")
        print("opened", flush=True)
    sys.exit(exit_past_stuck_readers(143))
"""


@pytest.mark.parametrize(("case", "printed"), [
    # A reader still blocked: the process ends at once, skipping the interpreter's teardown (and its crash).
    ("stuck", ["interrupted"]),
    # Every reader done: the ordinary exit, teardown and all.
    ("done", ["opened", "interpreter teardown"]),
])
def test_the_cli_exit_skips_teardown_only_past_a_stuck_reader(case: str, printed: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_EXIT_SCRIPT), case], env=child_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 143, result.stderr
    assert result.stdout.splitlines() == printed, result.stderr
