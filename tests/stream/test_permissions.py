"""Outputs in a folder the user may not write: a ``SinkError`` naming the path, before anything is processed.

Root ignores file permissions, and CI runs as root, so each check runs in a forked child that has dropped to the
unprivileged ``nobody`` account (uid/gid 65534) first; run as any other user, it runs in-process. The fork
happens after the imports, so the child needs no access to the repository or the virtual environment, only to
the world-writable scratch folder made here. (``test_sinks.py::test_read_only_folder_raises_sink_error`` is the
same check for non-root runs; it skips as root, which the CI skip gate allows because of this file.)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream.sinks import EventsSink, ImageFolderSink, SinkError, VideoSink
from stream.sinks.summary import SummarySink

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")

NOBODY = 65534


def as_unprivileged(check: Callable[[Path], None], folder: Path) -> None:
    """Run ``check(folder)`` as ``nobody`` (in a forked child when we are root); fail with the child's traceback."""
    if os.geteuid() != 0:
        check(folder)
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root for good, run the check, report, never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            assert os.geteuid() == NOBODY
            check(folder)
            os.write(write_end, b"ok")
            status = 0
        except BaseException:  # noqa: BLE001 - everything goes back to the parent as text
            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and report == "ok", f"as uid {NOBODY}:\n{report}"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder anyone may write (pytest's tmp_path sits under a root-only 0700 folder when run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="perm-", dir="/tmp"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _locked_folder_check(folder: Path) -> None:
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o500)  # ours, but read-only
    try:
        for make in (lambda: VideoSink(locked / "a.mp4", 25), lambda: ImageFolderSink(locked / "frames"),
                     lambda: EventsSink(locked / "e.jsonl"), lambda: SummarySink(locked / "s.json")):
            with pytest.raises(SinkError, match="locked"):
                make()
        assert sorted(p.name for p in locked.iterdir()) == []  # nothing half-made left behind
    finally:
        locked.chmod(0o700)


def _read_only_file_check(folder: Path) -> None:
    existing = folder / "summary.json"
    existing.write_text('{"kept": true}\n', encoding="utf-8")
    existing.chmod(0o444)
    with pytest.raises(SinkError, match="summary.json"):
        SummarySink(existing)
    assert existing.read_text(encoding="utf-8") == '{"kept": true}\n'


def test_read_only_folder_raises_sink_error_as_an_unprivileged_user(scratch):
    as_unprivileged(_locked_folder_check, scratch)


def test_read_only_existing_file_is_refused_and_kept(scratch):
    as_unprivileged(_read_only_file_check, scratch)

