"""Real web servers for the serve tests: ``python -m stream.serve`` children on free loopback ports."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import REPO, VIDEOS
from tests.support.cli_util import child_env, cli_command, free_port

CLIP = VIDEOS / "talking_man_512.mp4"
PHOTO = VIDEOS / "multiface.jpg"
TOKEN = "s3cret-token-for-tests"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Plain HTTP/1.1 requests to one server (http.client: nothing between the test and the socket)."""

    def __init__(self, host: str, port: int, pid: int | None = None) -> None:
        self.host, self.port = host, port
        self.pid = pid  # the server's process, when the test started it
        self.process: subprocess.Popen[str] | None = None  # the same, when serve() started it
        self.returncode: int | None = None  # how serve()'s child ended (set when its block ends)
        self.stderr = ""
        self.base = f"http://{host}:{port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 120.0) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, headers=headers)

    def upload(self, path: str, data: bytes, *, field: str = "file", filename: str = "upload.jpg",
               headers: dict[str, str] | None = None) -> Reply:
        body, content_type = multipart(field, filename, data)
        return self.request("POST", path, body, {"Content-Type": content_type, **(headers or {})})

    def mjpeg_frames(self, camera: str, count: int, timeout: float = 60.0, headers: dict[str, str] | None = None,
                     into: list[tuple[float, bytes]] | None = None, stop: threading.Event | None = None
                     ) -> list[tuple[float, bytes]]:
        """The first ``count`` JPEG parts of a camera's MJPEG stream with their arrival times (appended to
        ``into`` as they arrive; ``stop`` ends the reading early)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        frames: list[tuple[float, bytes]] = [] if into is None else into
        try:
            connection.request("GET", f"/api/cameras/{camera}/stream.mjpg", headers=headers or {})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            assert response.getheader("content-type").startswith("multipart/x-mixed-replace; boundary=frame")
            while len(frames) < count and not (stop is not None and stop.is_set()):
                line = response.fp.readline()
                if not line:
                    break
                if line.strip() != b"--frame":
                    continue
                part_headers = {}
                while (header := response.fp.readline().strip()):
                    name, _, value = header.decode().partition(":")
                    part_headers[name.strip().lower()] = value.strip()
                assert part_headers["content-type"] == "image/jpeg"
                frames.append((time.monotonic(), response.fp.read(int(part_headers["content-length"]))))
        finally:
            connection.close()
        return frames


def multipart(field: str, filename: str, data: bytes, content_type: str = "application/octet-stream"
              ) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@contextmanager
def serve(*args: str, startup_s: float = 120.0, env: dict[str, str] | None = None,
          beside_run: bool = False) -> Iterator[Client]:
    """``python -m stream.serve ARGS`` (``beside_run``: ``python -m stream ARGS --serve``) on a free port until the
    block ends, then SIGTERM; it must end without a traceback. ``client.process`` is the child, and after the block
    ``client.returncode``/``client.stderr`` say how it ended. ``env``: extra variables."""
    port = free_port()
    if beside_run:
        command = cli_command(*args, "--serve", f"127.0.0.1:{port}")
    else:
        command = [sys.executable, "-m", "stream.serve", "--port", str(port), "--log-level", "WARNING", *args]
    process = subprocess.Popen(command, cwd=REPO, env=child_env(**(env or {})), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    client = Client("127.0.0.1", port, process.pid)
    client.process = process
    deadline = time.monotonic() + startup_s
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {process.communicate()[1]}")
            try:
                if client.get("/healthz").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not answer /healthz in time")
            time.sleep(0.3)
        yield client
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        client.returncode, client.stderr = process.returncode, stderr
        assert "Traceback" not in stderr, stderr


def wait_for(predicate: Any, timeout_s: float = 60.0, interval_s: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"condition not met within {timeout_s} s")


@pytest.fixture(scope="session")
def live_server() -> Iterator[Client]:
    """A server with the clip looping as a live camera, and two upload workers."""
    for path in (CLIP, PHOTO):
        if not path.exists():
            pytest.skip(f"{path} not present (set STREAM_SHARED_DIR to the shared data folder)")
    with serve("--source", str(CLIP), "--loop", "--set", "serve.workers=2", "--set", "serve.max_upload_mb=4") as client:
        yield client


@pytest.fixture(scope="session")
def token_server() -> Iterator[Client]:
    if not PHOTO.exists():
        pytest.skip(f"{PHOTO} not present")
    with serve("--token", TOKEN, "--set", "serve.workers=1", "--set", "serve.max_clip_s=2") as client:
        yield client


def path_with_query(path: str, **query: str) -> str:
    return f"{path}?{urllib.parse.urlencode(query)}"
