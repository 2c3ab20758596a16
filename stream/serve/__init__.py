"""The web application: photo and clip upload with a JSON API, live view, dashboard (issue 17).

A client of the CLI's pipeline objects, not a second pipeline: uploads go through
:class:`stream.pipeline.Pipeline` (:mod:`stream.serve.analyze`), cameras through :func:`stream.pipeline.run`
into a :class:`~stream.serve.live.CameraView` sink. Run it with ``python -m stream.serve`` or beside a normal
run with ``python -m stream --source X --serve 127.0.0.1:8080``.
"""

from __future__ import annotations

import os
from typing import Any

#: The access token from the environment (keeps it out of the process list); it wins over ``serve.token``.
TOKEN_ENV = "FACE_STREAM_TOKEN"


def with_env_token(config: Any) -> Any:
    """``config`` with ``serve.token`` from ``$FACE_STREAM_TOKEN`` when that is set (the rule of both
    ``python -m stream.serve`` and ``python -m stream --serve``)."""
    from stream.config import replace

    token = os.environ.get(TOKEN_ENV)
    return replace(config, "serve", token=token) if token else config


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``PORT``: 127.0.0.1) → ``(host, port)``; light, for argument checks.

    Raises:
        ValueError: Not of that form, or the port is not 0-65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--serve expects HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return host, int(port)
