"""Capture backends of live sources: webcams through OpenCV, network streams through PyAV.

Backends (chosen by testing, see the notes at :func:`_open_stream_container`):

* Webcams: ``cv2.VideoCapture`` (V4L2/DirectShow/AVFoundation); PyAV would need a per-OS device format.
* Files and network streams: PyAV. It takes per-open demuxer options and ``(open, read)`` timeouts
  without process-global environment variables (``OPENCV_FFMPEG_CAPTURE_OPTIONS``), reports *why* an open
  failed as typed errors (401 Unauthorized vs. connection refused vs. timeout, where
  ``cv2.VideoCapture`` only says "not opened"), gives each frame's presentation time, and lets the live
  grabber defer the YUV->BGR conversion to the consumer so dropped frames cost no conversion. Decoding
  speed is the same as OpenCV's FFmpeg backend (both wrap libavcodec; measured 0.9 s vs 1.0 s for 105
  1080p frames here).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import shutil
import ssl
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np

from stream.config import SourceOptions
from stream.redact import credentials, redact_url
from stream.sources.base import CaptureFactory, SourceError
from stream.sources.base import has_credentials as _has_credentials
from stream.sources.base import scrub as _scrub


class _ConnectError(Exception):
    """A live source could not be opened; ``fatal`` errors (bad credentials) are not retried."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def _open_webcam(spec: int | str) -> Any:
    """Default webcam factory: ``cv2.VideoCapture`` with the smallest driver buffer."""
    capture = cv2.VideoCapture(spec)
    if capture.isOpened():
        # The grabber drains the camera continuously; a 1-frame driver queue keeps what it reads fresh.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return capture


def _open_stream_container(url: str, options: SourceOptions) -> Any:
    """Open a network stream with PyAV; map failures to a :class:`_ConnectError` saying what to do.

    Why PyAV rather than ``cv2.VideoCapture(url, cv2.CAP_FFMPEG, [OPEN/READ_TIMEOUT_MSEC ...])``:
    both honour open/read timeouts (tested: a silent server fails after the open timeout in both), but
    only PyAV takes demuxer options per open (RTSP transport, low-latency flags; OpenCV reads them
    from the process-global ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` environment variable), and only PyAV tells
    a 401 Unauthorized from a refused connection or a timeout.
    """
    # Not set, although often recommended for low latency: ``fflags=nobuffer`` discards the packets read
    # while probing the stream, i.e. the first keyframe, so nothing decodes until the next one (8 s with
    # x264's default GOP, measured here); ``flags=low_delay`` breaks the output order of B-frame streams.
    # The grabber already keeps latency low by always handing out the newest frame.
    container_options: dict[str, str] = {}
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("rtsp"):
        container_options["rtsp_transport"] = options.rtsp_transport
        # Do not SETUP audio tracks we would discard anyway.
        container_options["allowed_media_types"] = "video"
        if options.rtsp_transport == "udp":
            # Larger socket buffer: UDP packets lost to a full buffer are lost for good.
            container_options["buffer_size"] = str(4 * 1024 * 1024)
    elif scheme.startswith("http"):
        # A dropped connection to a file resumes where it broke (a Range request) instead of ending the file
        # early; a server gone for good still fails after a few seconds.
        container_options.update({"reconnect": "1", "reconnect_on_network_error": "1", "reconnect_delay_max": "2"})
        if scheme == "https":
            container_options.update(_ffmpeg_tls_options(options))
    started = time.monotonic()
    try:
        container = av.open(
            url,
            mode="r",
            container_options=container_options,
            timeout=(options.open_timeout_s, options.read_timeout_s),
        )
    except av.error.HTTPUnauthorizedError as exc:
        if _has_credentials(url):
            raise _ConnectError(
                "authentication failed (401 Unauthorized): wrong user name or password in the URL "
                "(check the credentials)",
                fatal=True,
            ) from exc
        raise _ConnectError(
            "the server requires authentication (401 Unauthorized): put the credentials in the URL as "
            f"{scheme}://user:password@host/...",
            fatal=True,
        ) from exc
    except av.error.HTTPForbiddenError as exc:
        raise _ConnectError(
            "access forbidden (403): these credentials may not read this stream (check the user's rights)",
            fatal=True,
        ) from exc
    except av.error.HTTPNotFoundError as exc:
        raise _ConnectError("stream not found (404): check the path after the host in the URL") from exc
    except av.error.ConnectionRefusedError as exc:
        raise _ConnectError("connection refused (is the server/camera running? check the host and port)") from exc
    except av.error.ProtocolNotFoundError as exc:
        raise _ConnectError(f"this FFmpeg build cannot read {scheme}:// URLs", fatal=True) from exc
    except (av.error.FFmpegError, OSError) as exc:
        if scheme == "https" and options.tls_verify and getattr(exc, "errno", None) == errno.EIO:
            # FFmpeg's TLS layer says no more than "Input/output error" when the certificate check fails.
            raise _ConnectError(
                "the TLS handshake failed, most likely because this machine does not trust the server's "
                f"certificate: {_UNTRUSTED_HINT}",
                fatal=True,
            ) from exc
        elapsed = time.monotonic() - started
        if elapsed >= options.open_timeout_s * 0.95 or isinstance(exc, (av.error.ExitError, TimeoutError)):
            raise _ConnectError(
                f"no answer within open_timeout_s={options.open_timeout_s:g} s (is the host reachable? "
                "raise source.open_timeout_s for slow links)"
            ) from exc
        reason = _scrub(getattr(exc, "strerror", None) or str(exc), url)
        raise _ConnectError(f"{reason} (check the URL)") from exc
    if not container.streams.video:
        container.close()
        raise _ConnectError("the stream has no video track (check the URL's path)")
    return container


# What to do about a server whose certificate is not trusted (FFmpeg's and urllib's errors alike).
_UNTRUSTED_HINT = ("give the CA that signed it as source.tls_ca_file (or, on a network you trust, set "
                   "source.tls_verify=false)")


def _ca_file(options: SourceOptions) -> str | None:
    """The CA bundle https:// servers are checked against: ``source.tls_ca_file``, else this machine's."""
    if options.tls_ca_file:
        return os.path.expanduser(options.tls_ca_file)
    paths = ssl.get_default_verify_paths()
    return next((path for path in (paths.cafile, paths.openssl_cafile) if path and os.path.isfile(path)), None)


def _ffmpeg_tls_options(options: SourceOptions) -> dict[str, str]:
    """FFmpeg's https options. It checks no certificate unless told to: without this, a URL's credentials would go
    to whoever answers for the host."""
    if not options.tls_verify:
        return {"tls_verify": "0"}
    ca_file = _ca_file(options)
    return {"tls_verify": "1", **({"ca_file": ca_file} if ca_file else {})}


def _ssl_context(options: SourceOptions) -> ssl.SSLContext:
    """The same check for downloads (urllib) as :func:`_ffmpeg_tls_options` gives FFmpeg."""
    if not options.tls_verify:
        return ssl._create_unverified_context()  # noqa: S323 (the user turned the check off: source.tls_verify)
    return ssl.create_default_context(cafile=_ca_file(options))


def open_remote_file(url: str, options: SourceOptions) -> Any | None:
    """The PyAV container of an http(s) URL that serves a *file* (a known duration, e.g. a clip on a web
    server), to be read like a local file: every frame, once. None for a live stream (no duration).

    Raises:
        _ConnectError: The URL cannot be opened (see :func:`_open_stream_container`).
    """
    container = _open_stream_container(url, options)
    if container.duration is not None and container.duration > 0:
        return container
    container.close()
    return None


def download_remote_file(url: str, options: SourceOptions) -> Path:
    """Download an http(s) file into a temporary file (the caller opens it, then removes it).

    For a file FFmpeg cannot read in place: an mp4 whose index (moov) comes after the media, served without
    Range requests (``python -m http.server``), cannot be seeked back to its start. Socket reads time out after
    ``read_timeout_s``; credentials in the URL are sent as HTTP Basic authentication.

    Raises:
        SourceError: The download failed (the message is free of credentials).
    """
    bare, user, password = credentials(url)
    request = urllib.request.Request(bare)
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    suffix = Path(urllib.parse.urlsplit(request.full_url).path).suffix[:10]
    handle = tempfile.NamedTemporaryFile(prefix="face-stream-", suffix=suffix, delete=False)  # noqa: SIM115
    try:
        with handle, urllib.request.urlopen(request, timeout=options.read_timeout_s,
                                            context=_ssl_context(options)) as response:
            shutil.copyfileobj(response, handle, 1 << 20)
    except (OSError, ValueError) as exc:
        Path(handle.name).unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise SourceError(f"cannot download '{redact_url(url)}': the server's TLS certificate is not trusted "
                              f"({reason.verify_message}); {_UNTRUSTED_HINT}") from None
        raise SourceError(f"cannot download '{redact_url(url)}': {_scrub(str(exc), url)}") from None
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return Path(handle.name)


class _PyAVStreamCapture:
    """A network stream read through PyAV behind the ``cv2.VideoCapture`` interface.

    Besides ``read()``, :meth:`read_frame` returns the undecoded-to-BGR ``av.VideoFrame`` so the grabber
    converts only the frames that the consumer actually takes.
    """

    def __init__(self, url: str, options: SourceOptions) -> None:
        self._read_timeout_s = options.read_timeout_s
        self._container = _open_stream_container(url, options)
        self._stream = self._container.streams.video[0]
        self._packets = self._container.demux(self._stream)
        self._pending: list[Any] = []
        self.last_error = ""  # why the last read_frame() returned None

    @staticmethod
    def factory(options: SourceOptions) -> CaptureFactory:
        """A capture factory bound to ``options``."""

        def create(url: str) -> _PyAVStreamCapture:
            return _PyAVStreamCapture(url, options)

        return create

    def read_frame(self) -> Any:
        """Next decoded ``av.VideoFrame``; None when the stream ended, failed or stalled (see ``last_error``)."""
        # PyAV's read timeout bounds each blocking socket read; this deadline also bounds a stream that
        # keeps sending packets that decode to nothing.
        deadline = time.monotonic() + self._read_timeout_s
        while not self._pending:
            if self._container is None:
                self.last_error = "released"
                return None
            if time.monotonic() > deadline:
                self.last_error = f"no decodable frame for read_timeout_s={self._read_timeout_s:g} s"
                return None
            try:
                packet = next(self._packets)
            except StopIteration:
                self.last_error = "the server ended the stream"
                return None
            except (av.error.ExitError, TimeoutError):
                self.last_error = f"no data for read_timeout_s={self._read_timeout_s:g} s (stalled)"
                return None
            except (av.error.FFmpegError, OSError) as exc:
                self.last_error = f"read error: {exc.strerror or type(exc).__name__}"
                return None
            try:
                self._pending.extend(packet.decode())
            except av.error.FFmpegError:
                continue  # a damaged packet (lost UDP data): skip it, the stream goes on
        return self._pending.pop(0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        frame = self.read_frame()
        if frame is None:
            return False, None
        return True, upright_bgr(frame)

    def isOpened(self) -> bool:  # noqa: N802 - cv2's spelling
        return self._container is not None

    def get(self, prop_id: int) -> float:
        context = self._stream.codec_context
        if prop_id == cv2.CAP_PROP_FPS:
            rate = self._stream.average_rate or self._stream.guessed_rate
            return float(rate) if rate else 0.0
        if prop_id == cv2.CAP_PROP_FRAME_WIDTH:
            return float(context.width)
        if prop_id == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(context.height)
        return 0.0

    def release(self) -> None:
        if self._container is not None:
            # Closing a dead connection may fail; it is closed either way.
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()
            self._container = None


def upright_bgr(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as ``(H, W, 3)`` uint8 BGR, turned upright by its display rotation (phone clips store
    sideways pictures with a display matrix saying how to turn them; players, and so the detector, must)."""
    image = frame.to_ndarray(format="bgr24")
    # PyAV's rotation is the display matrix's counterclockwise angle in degrees; np.rot90 turns counterclockwise.
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _to_bgr(payload: Any) -> np.ndarray:
    """Convert what a capture returned to an ``(H, W, 3)`` uint8 BGR image."""
    if isinstance(payload, av.VideoFrame):
        return upright_bgr(payload)
    image = np.asarray(payload)
    if image.dtype != np.uint8:
        raise SourceError(f"capture returned a {image.dtype} image; expected uint8")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
