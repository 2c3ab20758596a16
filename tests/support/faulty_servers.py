"""Real servers on loopback that misbehave on purpose, for the fault-injection tests.

* :class:`StallingListener`: a TCP listener that accepts every connection and never says a word (an RTSP
  receiver or camera that hangs in the handshake).
* :class:`FaultyHttpServer`: ``http.server`` serving one clip under several paths, each with its fault:
  ``/clip.mp4`` (served whole, with Range requests), ``/drip.mp4`` (a few hundred bytes a second),
  ``/reset.mp4`` (the connection is reset half-way, every time), ``/reset-once.mp4`` (reset half-way the first
  time only, then served with Range requests, so a client that resumes gets it all), ``/auth.mp4`` (401 unless the Basic
  credentials match), ``/stall.mp4`` (the request is read, no answer ever comes) and ``/stall-half.mp4``
  (served, with Range requests, up to half of the clip; then the connection stays open and silent).

``requests`` lists the paths asked for, in order (a test can wait until the client is inside its open).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class StallingListener:
    """Accepts TCP connections on 127.0.0.1 and holds them open without ever answering."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._sock.accept()
                self.accepted.append(connection)

    def close(self) -> None:
        for connection in self.accepted:
            connection.close()
        self._sock.close()


class FaultyHttpServer:
    """An HTTP server on 127.0.0.1 serving ``clip`` with the faults listed in the module docstring."""

    def __init__(self, clip: Path, user: str = "", password: str = "", drip_bytes_per_s: int = 20000,
                 tls: ssl.SSLContext | None = None) -> None:
        data = clip.read_bytes()
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        served_once: list[bool] = []
        lock = threading.Lock()
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass

            def _headers(self, status: int, length: int, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
                path = self.path.split("?")[0]
                requests.append(path)
                if path == "/stall.mp4":
                    time.sleep(3600)
                    return
                if path == "/auth.mp4" and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = 0, len(data) - 1
                if path == "/reset-once.mp4":
                    with lock:
                        first_time = not served_once
                        served_once.append(True)
                    path = "/reset.mp4" if first_time else "/clip.mp4"
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes=") and path != "/reset.mp4":
                    first, _, last = ranged[6:].partition("-")
                    start = int(first or 0)
                    end = int(last) if last else end
                    self._headers(206, end - start + 1, {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
                else:
                    self._headers(200, len(data))
                body = data[start : end + 1]
                try:
                    if path == "/drip.mp4":
                        step = max(1, drip_bytes_per_s // 10)
                        for i in range(0, len(body), step):
                            self.wfile.write(body[i : i + step])
                            self.wfile.flush()
                            time.sleep(0.1)
                    elif path == "/stall-half.mp4":
                        self.wfile.write(body[: max(0, len(data) // 2 - start)])
                        self.wfile.flush()
                        time.sleep(3600)
                    elif path == "/reset.mp4":
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        # SO_LINGER 0: close() sends a RST, a connection reset mid-stream.
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:  # https: a client that refuses the certificate never gets as far as a request
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str, userinfo: str = "") -> str:
        return f"{self.scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
