"""The optional access token, and the headers every answer carries.

When ``serve.token`` is set, every route but ``/healthz`` needs it: as ``Authorization: Bearer TOKEN``
(scripts), or as the cookie a browser gets from ``/login?token=TOKEN`` (or any page opened with
``?token=TOKEN``). The cookie holds a digest of the token, not the token; it is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

COOKIE = "face_stream_session"
OPEN_PATHS = frozenset({"/healthz"})
# Pages load scripts, styles and images from this server only (users run it on closed networks);
# annotated images arrive as data: URLs, and the upload page's thumbnails read the user's own file through a
# blob: URL it made itself; no page may be framed by another site.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Face stream: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>Face stream</h1><p>{message}</p>
<form method="get" action="/login"><label>Access token <input type="password" name="token" autofocus></label>
<button type="submit">Open</button></form></body></html>"""


def session_value(token: str) -> str:
    """The cookie value for ``token`` (a digest, so the cookie never holds the token itself)."""
    return hashlib.sha256(f"face-stream session:{token}".encode()).hexdigest()


class TokenGate:
    """ASGI middleware: security headers on every answer; the token check when a token is set."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token) if token else ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if not self.token or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send_with_headers)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        offered = query.get("token", [""])[0]
        if offered:
            if hmac.compare_digest(offered.encode(), self.token.encode()):
                # Sign in: the cookie, then the same page without the token in its address (history, logs).
                target = "/" if scope["path"] == "/login" else scope["path"]
                await _respond(send_with_headers, 303, b"", b"text/plain", [
                    (b"location", target.encode()),
                    (b"set-cookie", f"{COOKIE}={self.session}; HttpOnly; SameSite=Strict; Path=/".encode())])
                return
            await self._refuse(scope, send_with_headers, "wrong access token")
            return
        if self._authorised(scope):
            await self.app(scope, receive, send_with_headers)
            return
        await self._refuse(scope, send_with_headers, "this server needs its access token")

    def _authorised(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, supplied = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), self.token.encode()):
                    return True
            elif name == b"cookie":
                for item in value.decode("latin-1").split(";"):
                    key, _, cookie = item.strip().partition("=")
                    if key == COOKIE and hmac.compare_digest(cookie.encode(), self.session.encode()):
                        return True
        return False

    @staticmethod
    async def _refuse(scope: dict[str, Any], send: Any, reason: str) -> None:
        if scope["path"].startswith("/api/") or scope["path"] == "/openapi.json":
            body = json.dumps({"detail": f"{reason}: send 'Authorization: Bearer TOKEN'"}).encode()
            await _respond(send, 401, body, b"application/json", [(b"www-authenticate", b"Bearer")])
        else:
            page = LOGIN_PAGE.format(message=f"{reason.capitalize()}: enter it to continue.").encode()
            await _respond(send, 401, page, b"text/html; charset=utf-8", [(b"www-authenticate", b"Bearer")])


async def _respond(send: Any, status: int, body: bytes, content_type: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": body})
