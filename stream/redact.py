"""Credentials never shown: URL redaction, and a logging filter that blanks registered secrets everywhere.

The one home of the rule "no credential is ever printed": sources and outputs register the URLs they open
(:meth:`SecretFilter.add_url`), the CLI installs the filter on its log handlers and passes its one-line
errors through :meth:`SecretFilter.scrub_text`, and display names come from :func:`redact_url`.
Imports nothing heavy, so the CLI can use it before OpenCV/PyAV are loaded.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar
from urllib.parse import unquote

# Query parameters that carry secrets in camera URLs (e.g. ``.../cam?user=admin&password=x``).
_SECRET_QUERY_KEYS = re.compile(r"(?i)^(pass(word|wd)?|pwd|token|access_token|auth|api_?key|key|secret|sig(nature)?)$")
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<netloc>[^/?#]*)(?P<rest>.*)$", re.DOTALL)


def userinfo(text: str) -> tuple[str, str, str] | None:
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


def credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without its user info, user, password)``, the user and password percent-decoded (None when absent).

    The user info is found by :func:`userinfo`'s rule (up to the last '@'), so a password holding raw '/', '?',
    '#', '[' or ']' neither breaks the URL apart (``urllib.parse.urlsplit`` reads them as the path, query,
    fragment or an IPv6 host) nor ends up in a host name, a path or a message.
    """
    parts = userinfo(str(url))
    if parts is None:
        return str(url), None, None
    scheme, info, after = parts
    user, sep, password = info.partition(":")
    return f"{scheme}://{after}", unquote(user), unquote(password) if sep else None


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
    parts = userinfo(text)
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


def has_credentials(url: str) -> bool:
    return userinfo(str(url)) is not None


def url_secrets(url: str) -> set[str]:
    """The strings of ``url`` that must never be shown: its user info and password, raw and percent-decoded
    (backends quote either), and secret query values. Fragments shorter than 3 characters are left out of the
    password list (they would blank ordinary words); the whole user info always counts."""
    text = str(url)
    secrets: set[str] = set()
    parts = userinfo(text)
    if parts is not None:
        info = parts[1]
        secrets |= {info, unquote(info)}
        password = info.partition(":")[2]
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
