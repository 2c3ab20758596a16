"""Advisory locks on output paths: two runs never write the same file at once.

Every local output (``--output``, ``--events``, ``--summary``) is locked for the whole run with ``flock`` on a
sidecar ``.NAME.lock`` beside it (by its resolved path, so symlinks meet) and on the file itself when it
already exists (so hard links meet too). A second run asking for a locked path is refused before it opens
anything, with one line naming the other run's pid; the first run's output stays whole. The kernel drops the
locks when the process ends, however it ends (kill -9 included), so a stale sidecar never blocks a later run.
Where ``fcntl`` is missing (Windows) outputs are not locked.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from stream.sinks.base import SinkError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputLock:
    """An exclusive advisory lock on one output path, held until :meth:`release` (or the process ends)."""

    def __init__(self, flag: str, target: str | os.PathLike[str]) -> None:
        self.flag = flag
        self.path = Path(target).expanduser().resolve()
        self.sidecar = self.path.parent / f".{self.path.name}.lock"
        self._fds: list[int] = []
        self._owns_sidecar = False

    def acquire(self) -> OutputLock:
        """Take the lock.

        Raises:
            SinkError: Another run holds it (the message names its pid).
        """
        if fcntl is None or (self.path.exists() and not (self.path.is_file() or self.path.is_dir())):
            return self  # no locks here; or a device such as /dev/null, which runs share harmlessly
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return self  # the sink's own checks report an unusable folder in its words
        try:
            self._lock_sidecar()
            if self.path.exists():
                self._lock(os.open(self.path, os.O_RDONLY))
        except BaseException:
            self.release()
            raise
        return self

    def _lock_sidecar(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.sidecar, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return  # a read-only folder: nobody can write the output there anyway
            self._lock(fd)
            # Another run may have removed the sidecar between our open and our lock: then the lock is on a
            # file nobody else will find, so take the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.sidecar))
            except OSError:
                same = False
            if same:
                self._owns_sidecar = True
                with contextlib.suppress(OSError):  # the pid only words the other run's error; a full disk is fine
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                return
            self._fds.remove(fd)
            os.close(fd)

    def _lock(self, fd: int) -> None:
        assert fcntl is not None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                pid = int(self.sidecar.read_text().strip() or 0)
                holder = f" (pid {pid})" if pid else ""
            os.close(fd)
            raise SinkError(f"{self.flag} {str(self.path)!r} is being written by another run{holder}; wait for it "
                            "to end or choose another path") from err
        self._fds.append(fd)

    def release(self) -> None:
        """Drop the lock (and the sidecar this run made); idempotent."""
        if self._owns_sidecar:
            with contextlib.suppress(OSError):
                self.sidecar.unlink()  # while still locked, so no other run is holding it
            self._owns_sidecar = False
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
