"""Running the web application: uvicorn in the foreground or beside a pipeline run, and live cameras.

* ``python -m stream.serve`` runs uvicorn in the foreground; with ``--source`` a :class:`CameraRunner`
  drives that source through :func:`stream.pipeline.run` in a thread, into a :class:`CameraView`.
* ``python -m stream --source X --serve HOST:PORT`` runs the CLI's own pipeline as always and adds a
  :class:`CameraView` to its sinks; :func:`serve_beside` starts the server in a thread next to it. With
  several cameras (``--source a=X --source b=Y``) :func:`serve_cameras` gives each camera its own view.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import uvicorn

from stream.config import Config
from stream.serve import parse_address, with_env_token
from stream.serve.live import CameraView, Hub
from stream.signals import wait_for_worker

logger = logging.getLogger("stream.serve")


class Server:
    """uvicorn serving ``app`` on ``host:port``, in this thread (:meth:`run`) or a background one (:meth:`start`).

    The socket is bound here, so a port in use or a foreign address fails at once with an :class:`OSError`
    (uvicorn itself would log and exit).
    """

    def __init__(self, app: Any, host: str, port: int) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self._socket = socket.socket(family, kind, proto)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind(address)
        except OSError:
            self._socket.close()
            raise
        # timeout_graceful_shutdown: live-view streams never end by themselves; do not wait for them.
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1,
                                                     access_log=False))
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def run(self) -> None:
        """Serve until Ctrl-C/SIGTERM (uvicorn's own handlers)."""
        self._server.run(sockets=[self._socket])

    def start(self, timeout_s: float = 15.0) -> None:
        """Serve in a daemon thread; returns once the socket listens.

        Raises:
            OSError: The address cannot be bound (in use, not this machine's).
        """
        self._thread = threading.Thread(target=self.run, name="web-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the web server did not start on {self.host}:{self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._socket.close()


def new_hub(config: Config) -> Hub:
    """The server's cameras, counted over ``output.counts_window_s`` windows like the summary and ``--counts``."""
    return Hub(window_s=config.output.counts_window_s)


def source_status(source: Any) -> Any:
    """A callable giving the source's status, for sources that report one (live sources)."""
    return getattr(type(source), "status", None) and (lambda: source.status)


@contextmanager
def serve_beside(address: str, config: Config, source: Any) -> Iterator[CameraView]:
    """``python -m stream --serve``: the web server in a thread, and the sink the CLI adds to its run.

    The models for uploads load before the server listens; the server stops when the block ends (after
    the run and its sinks finish; the page then shows the camera as offline for the moment left).
    """
    from stream.serve.app import create_app

    host, port = parse_address(address)
    config = with_env_token(config)
    hub = new_hub(config)
    camera = config.sources[0].name if config.sources else ""
    view = hub.add(source.name, config.serve, key=camera)
    view.follow(source_status(source))
    server = Server(create_app(config, hub), host, port)
    server.start()
    logger.info("web page on %s%s", server.url, " (access token required)" if config.serve.token else "")
    try:
        yield view
    finally:
        view.close()
        server.stop()


#: A camera's status in :mod:`stream.cameras` as the page says it.
_CAMERA_STATUS = {"opening": "starting", "ended": "offline"}
# Stopping waits this long for the camera thread to finish its frame (a frame takes tens of ms; a source read
# blocked on a silent camera ends within its own timeout, and the exit does not wait for that reader).
_STOP_TIMEOUT_S = 10.0


def _camera_status(camera: Any) -> str:
    return _CAMERA_STATUS.get(camera.status, camera.status)


@contextmanager
def serve_cameras(address: str, config: Config, cameras: list[Any]) -> Iterator[dict[str, CameraView]]:
    """``python -m stream --source a=X --source b=Y --serve``: the web server in a thread, one view per camera.

    Args:
        address: ``HOST:PORT``.
        config: The run's configuration.
        cameras: The :class:`stream.cameras.Camera` objects, not started yet; each view follows its camera's
            status (starting, live, reconnecting, offline) and must be added to the camera's own outputs.

    Yields:
        The views by camera name.
    """
    from stream.serve.app import create_app
    from stream.sources import redact_url

    host, port = parse_address(address)
    config = with_env_token(config)
    hub = new_hub(config)
    views = {}
    for camera in cameras:
        view = hub.add(f"{camera.name} · {redact_url(camera.spec.url)}", config.serve, key=camera.name)
        view.follow(partial(_camera_status, camera))
        views[camera.name] = view
    server = Server(create_app(config, hub), host, port)
    server.start()
    logger.info("web page on %s (%d cameras%s)", server.url, len(views),
                ", access token required" if config.serve.token else "")
    try:
        yield views
    finally:
        for view in views.values():
            view.close()
        server.stop()


class CameraRunner:
    """``python -m stream.serve --source``: the CLI's pipeline over one source, into a camera view, in a thread.

    Args:
        spec: The source (``--source``): webcam index, URL, video file.
        config: The configuration.
        view: Where the annotated frames go.
        loop: Start a file source again when it ends (a demo clip that keeps playing).
        realtime: Pace file sources to their frame rate (a live view of a file looks like a camera).
    """

    def __init__(self, spec: str, config: Config, view: CameraView, *, loop: bool = False,
                 realtime: bool = True) -> None:
        self.spec, self.config, self.view, self.loop, self.realtime = spec, config, view, loop, realtime
        self.error: str | None = None
        self._stop = threading.Event()
        self._done = threading.Event()  # set as the thread ends (never read from is_alive(): see wait_for_worker)
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)

    def start(self) -> None:
        """Load the models and open the source here (their errors reach the command line), then run.

        Raises:
            SourceError: The source cannot be opened. ModelError, RuntimeUnavailable: as the CLI.
        """
        from stream.pipeline import Pipeline, describe_models
        from stream.sources import open_source

        self._models = Pipeline(self.config)
        for line in describe_models(self._models):
            logger.info("%s", line)
        self._first = open_source(self.spec, options=self.config.source)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the frame in flight; a second Ctrl-C meanwhile still lets the thread leave the models first
        (the interpreter must not shut down under it), and is then the outcome anyway."""
        self._stop.set()
        if self._thread.ident is not None:
            wait_for_worker(self._done, hurry=self._stop.set, timeout_s=_STOP_TIMEOUT_S)

    def _run(self) -> None:
        from stream.pipeline import Pipeline, run
        from stream.sources import SourceError, open_source

        source = self._first
        try:
            while True:
                with source:
                    # A fresh tracker and track book for each pass of a looped file; the same model sessions.
                    models = self._models
                    pipeline = Pipeline(self.config, detector=models.detector, classifiers=models.classifiers,
                                        camera=self.view.key)
                    self.view.follow(source_status(source))
                    pipeline.set_frame_rate(source.fps)
                    still = source.kind in ("image", "folder")
                    paced = self.realtime and not source.is_live and not still
                    frames = _paced(source, source.fps) if paced else source
                    run(pipeline, frames, [self.view], still_images=still, should_stop=self._stop.is_set)
                if not self.loop or source.is_live or still or self._stop.is_set():
                    break
                source = open_source(self.spec, options=self.config.source)
                self.view.new_pass()
        except SourceError as error:
            self.error = str(error)
            logger.error("camera %s: %s", self.view.name, error)
        finally:
            try:
                self.view.close()
            finally:
                self._done.set()


def _paced(frames: Any, fps: float | None) -> Iterator[Any]:
    """Yield a file's frames no faster than its frame rate."""
    interval = 1.0 / fps if fps else 0.04
    next_at = time.monotonic()
    for frame in frames:
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_at = max(next_at + interval, time.monotonic() - interval)
        yield frame
