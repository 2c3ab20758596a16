"""Where the model catalogue keeps its files: the user's model cache and its layout.

``<cache>/<file_name>`` holds fetched and exported models, ``<cache>/wheels/`` the PyPI archives they were
taken from (downloaded once), ``<cache>/manifests/<name>.json`` what each export wrote. The cache is
``$STREAM_MODELS_DIR``, else ``$XDG_CACHE_HOME/face-stream/models`` (``~/.cache`` when unset).

Both :mod:`models.registry` (export manifests) and :mod:`models.fetch` (downloads) read these paths, so they
live here, below both, and neither has to import the other for them.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Directory where fetched models are kept (created on demand by whoever writes into it)."""
    env = os.environ.get("STREAM_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "face-stream" / "models"


def wheels_dir() -> Path:
    """``<cache>/wheels``: PyPI wheels and source archives that models are read out of."""
    return cache_dir() / "wheels"


def manifests_dir() -> Path:
    """``<cache>/manifests``: where exports record what they wrote."""
    return cache_dir() / "manifests"
