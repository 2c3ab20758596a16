"""The web application: photo and clip upload with a JSON API, live view, dashboard (issue 17).

A client of the CLI's pipeline objects, not a second pipeline: uploads go through
:class:`stream.pipeline.Pipeline` (:mod:`stream.serve.analyze`), cameras through :func:`stream.pipeline.run`
into a :class:`~stream.serve.live.CameraView` sink. Run it with ``python -m stream.serve`` or beside a normal
run with ``python -m stream --source X --serve 127.0.0.1:8080``.
"""

from __future__ import annotations


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
