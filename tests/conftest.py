"""Shared fixtures: paths to ../shared (clips, UTKFace, detector files) and a ready config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAM_SHARED_DIR", REPO.parent / "shared"))
VIDEOS = SHARED / "videos"
UTKFACE = SHARED / "data" / "utkface" / "UTKFace"
# The detector files that exist only upstream are in ../shared/models here (the product's own config searches
# no development folder); subprocesses of the tests inherit this.
os.environ.setdefault("STREAM_LOCAL_MODELS", str(SHARED / "models"))


def shared_file(*parts: str) -> Path:
    """A file under ../shared, or skip the test naming what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (set STREAM_SHARED_DIR to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def config():
    from stream.config import load_config

    return load_config()


@pytest.fixture(scope="session")
def default_detector(config):
    from stream.detectors import build_detector

    return build_detector(config.detector, config.models, config.runtime)


@pytest.fixture(scope="session")
def default_classifiers(config):
    from stream.classify import build_classifiers

    return build_classifiers(config.classifier, config.models, config.runtime)


# ---------------------------------------------------------------------------------------------------------------
# The skip gate. With STREAM_STRICT_SKIPS=1 (set by .ci/run) any skip whose reason is not listed here fails the
# run: a missing clip, model, package or tool must not turn CI green while little runs.
# ---------------------------------------------------------------------------------------------------------------

#: Skip reasons CI accepts (matched at the start of the reason), each with why it cannot run there.
ALLOWED_SKIPS: dict[str, str] = {
    # CI runs as root; tests/stream/test_permissions.py runs the same checks as the unprivileged `nobody`.
    "root ignores file permissions": "covered as nobody by test_permissions.py",
    # The "no camera" error path cannot be provoked on a machine that has one.
    "this machine has a camera at /dev/video0": "machine-dependent",
    # Its export starts from a Hugging Face checkpoint, and model hubs are unreachable from CI; every other
    # registered age classifier runs there.
    "siglip_age is not available on this machine": "export needs a model hub",
}
_unexpected_skips: list[str] = []


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not any(reason.startswith(allowed) for allowed in ALLOWED_SKIPS):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 - pytest hook
    if os.environ.get("STREAM_STRICT_SKIPS") == "1" and _unexpected_skips:
        terminalreporter.section("skips not allowed on CI (tests/conftest.py ALLOWED_SKIPS)", red=True)
        for line in _unexpected_skips:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("STREAM_STRICT_SKIPS") == "1" and _unexpected_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
