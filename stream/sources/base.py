"""What every source shares: :class:`SourceError`, the :class:`Source` base class, URL redaction, options.

Every source is a context manager and an iterator of :class:`stream.types.Frame` (BGR uint8 images);
:class:`CaptureLike` is the part of ``cv2.VideoCapture`` that live sources read through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, ClassVar, Protocol
from urllib.parse import unquote

import numpy as np

from stream.config import SourceOptions, section_values
from stream.types import Frame

KINDS: tuple[str, ...] = ("webcam", "stream", "video", "image", "folder")

# Query parameters that carry secrets in camera URLs (e.g. ``.../cam?user=admin&password=x``).
_SECRET_QUERY_KEYS = re.compile(r"(?i)^(pass(word|wd)?|pwd|token|access_token|auth|api_?key|key|secret|sig(nature)?)$")
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<netloc>[^/?#]*)(?P<rest>.*)$", re.DOTALL)
# The consumer polls at this period while waiting, so Ctrl-C and close() are noticed promptly.
_POLL_S = 0.2


class SourceError(Exception):
    """A source cannot be opened or read; the message names the problem and what to do."""


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the live sources use (the fake-camera seam for tests)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def isOpened(self) -> bool: ...  # noqa: N802 - cv2's spelling

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[Any], CaptureLike]


def _userinfo(text: str) -> tuple[str, str, str] | None:
    """``(scheme, userinfo, after)`` of a ``scheme://userinfo@after`` URL, else None.

    The userinfo ends at the *last* '@' of the whole URL: passwords hold unencoded '@', ':', '/', '#', '?'
    often enough (camera URLs are typed by hand), and hiding too much of a log line is harmless where hiding
    too little leaks a password. Only an '@' after a path with no ':' or '@' before it ('host/a@b.jpg') is
    taken for part of the path.
    """
    match = _URL_RE.match(text)
    if match is None:
        return None
    scheme, after_scheme = match["scheme"], text[len(match["scheme"]) + 3:]
    if "@" not in after_scheme:
        return None
    userinfo, _, after = after_scheme.rpartition("@")
    if not any(c in userinfo for c in "@:") and any(c in userinfo for c in "/?#"):
        return None  # 'host/a@b.jpg': an '@' in the path, no user info
    return scheme, userinfo, after


def redact_url(url: str) -> str:
    """Hide credentials in a URL so it can be logged.

    The user-info part (``user:password@``) becomes ``***@`` and secret-looking query parameters
    (``password=``, ``token=``, ...) get the value ``***``. Anything that is not a ``scheme://`` URL
    (a file path, a camera index) is returned unchanged.

    Args:
        url: A URL or any other source spec.

    Returns:
        The URL with credentials replaced by ``***``.
    """
    text = str(url)
    match = _URL_RE.match(text)
    if match is None:
        return text
    parts = _userinfo(text)
    if parts is not None:
        text = f"{parts[0]}://***@{parts[2]}"
        match = _URL_RE.match(text)
        assert match is not None
    netloc = match["netloc"]
    rest = match["rest"]
    query_start = rest.find("?")
    if query_start >= 0:
        fragment_start = rest.find("#", query_start)
        end = len(rest) if fragment_start < 0 else fragment_start
        params = rest[query_start + 1 : end].split("&")
        for i, param in enumerate(params):
            key, sep, _ = param.partition("=")
            if sep and _SECRET_QUERY_KEYS.match(unquote(key)):
                params[i] = f"{key}=***"
        rest = rest[: query_start + 1] + "&".join(params) + rest[end:]
    return f"{match['scheme']}://{netloc}{rest}"


def _has_credentials(url: str) -> bool:
    return _userinfo(str(url)) is not None


def url_secrets(url: str) -> set[str]:
    """The strings of ``url`` that must never be shown: its user info and password, raw and percent-decoded
    (backends quote either), and secret query values. Fragments shorter than 3 characters are left out of the
    password list (they would blank ordinary words); the whole user info always counts."""
    text = str(url)
    secrets: set[str] = set()
    parts = _userinfo(text)
    if parts is not None:
        userinfo = parts[1]
        secrets |= {userinfo, unquote(userinfo)}
        password = userinfo.partition(":")[2]
        for candidate in (password, unquote(password)):
            if len(candidate) >= 3:
                secrets.add(candidate)
    match = _URL_RE.match(text)
    if match is not None and "?" in match["rest"]:
        for param in match["rest"].partition("?")[2].split("#")[0].split("&"):
            key, sep, value = param.partition("=")
            if sep and _SECRET_QUERY_KEYS.match(unquote(key)) and len(value) >= 3:
                secrets |= {value, unquote(value)}
    secrets.discard("")
    return secrets


def scrub(text: str, url: str) -> str:
    """Remove the URL's secrets from a message (backend errors quote the URL verbatim, or decoded)."""
    text = text.replace(str(url), redact_url(url))
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


_scrub = scrub  # the name the capture backends import


class SecretFilter(logging.Filter):
    """A logging filter that blanks every registered secret out of every record, at every level.

    :meth:`add_url` registers a URL's secrets (sources and outputs do it when they open); :meth:`install` puts
    the filter on the root logger's handlers, so a message that quotes a password by any route (a backend's
    error text, an exception) is printed with ``***`` instead.
    """

    _secrets: ClassVar[set[str]] = set()

    @classmethod
    def add_url(cls, url: str) -> None:
        cls._secrets |= url_secrets(url)

    @classmethod
    def scrub_text(cls, text: str) -> str:
        for secret in sorted(cls._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    @classmethod
    def install(cls) -> None:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, cls) for f in handler.filters):
                handler.addFilter(cls())

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            cleaned = self.scrub_text(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_text:
                record.exc_text = self.scrub_text(record.exc_text)
        return True


class Source:
    """An open source of frames: an iterator of :class:`Frame` and a context manager.

    Attributes:
        name: Display name (credentials redacted); also ``Frame.source``.
        kind: One of ``"webcam"``, ``"stream"``, ``"video"``, ``"image"``, ``"folder"``.
        is_live: True for webcams and network streams (frames may be dropped, never queued).
        fps: Nominal frame rate, or None when unknown (stills, some streams).
        frame_count: Number of frames of a file (container metadata), None for live sources.
    """

    kind: str = ""
    is_live: bool = False

    def __init__(self, name: str, fps: float | None = None, frame_count: int | None = None) -> None:
        self.name = name
        self.fps = fps
        self.frame_count = frame_count
        self._closed = False

    @property
    def frames_dropped(self) -> int:
        """Frames read from the source but never delivered (always 0 for files)."""
        return 0

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> Frame:
        if self._closed:
            raise StopIteration
        return self._next_frame()

    def _next_frame(self) -> Frame:
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading and release the backend; idempotent. Iteration then stops."""
        self._closed = True

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, kind={self.kind!r}, fps={self.fps}, frames={self.frame_count})"


def _check_option_names(where: str, values: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(SourceOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"{where} got unknown option(s) {unknown}; valid: {sorted(known)}")


def _coerce_options(options: Any) -> SourceOptions:
    """Accept a SourceOptions (config's ``source`` section), a mapping, or another dataclass with its fields."""
    if options is None:
        return SourceOptions()
    if isinstance(options, SourceOptions):
        return options
    values = section_values(options, "SourceOptions")
    _check_option_names("options", values)
    return SourceOptions(**values)
