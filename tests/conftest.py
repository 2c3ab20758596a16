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
