"""The access token: every route but /healthz needs it, as a Bearer header or the cookie /login sets."""

from __future__ import annotations

import pytest

from tests.stream.serve.conftest import CLIP, PHOTO, TOKEN

ROUTES = ["/", "/live", "/dashboard", "/static/app.css", "/api/info", "/api/cameras", "/api/dashboard",
          "/api/people.csv", "/api/charts/ages.svg", "/openapi.json"]


def test_health_check_is_open(token_server):
    assert token_server.get("/healthz").status == 200


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_needs_the_token(token_server, path):
    assert token_server.get(path).status == 401
    assert token_server.get(path, Authorization="Bearer wrong").status == 401
    assert token_server.get(path, Authorization=f"Bearer {TOKEN}").status == 200


def test_upload_needs_the_token(token_server):
    assert token_server.upload("/api/analyze", PHOTO.read_bytes()).status == 401
    reply = token_server.upload("/api/analyze", PHOTO.read_bytes(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200 and len(reply.json()["faces"]) == 6


def test_login_sets_a_cookie_that_opens_the_pages(token_server):
    page = token_server.get("/")
    assert page.status == 401 and b"Access token" in page.body and TOKEN.encode() not in page.body
    assert token_server.get("/login?token=nope").status == 401
    login = token_server.get(f"/login?token={TOKEN}")
    assert login.status == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0]
    assert token_server.get("/", Cookie=session).status == 200
    assert token_server.get("/api/cameras", Cookie=session).status == 200
    assert token_server.get("/api/cameras", Cookie=session + "x").status == 401
    # ?token= on any page signs in too, and sends the browser to the same page without the token.
    direct = token_server.get(f"/dashboard?token={TOKEN}")
    assert direct.status == 303 and direct.headers["location"] == "/dashboard"


def test_clip_longer_than_the_limit_is_refused(token_server):
    reply = token_server.request("POST", "/api/analyze", CLIP.read_bytes(),
                                 {"Content-Type": "video/mp4", "Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 413 and "max_clip_s=2" in reply.json()["detail"]


def test_cli_serve_takes_the_token_from_the_environment():
    """``FACE_STREAM_TOKEN=... python -m stream --source X --serve``: the page beside a run needs the token too."""
    from tests.conftest import shared_file
    from tests.stream.serve.conftest import serve

    clip = shared_file("videos", "expressive_woman_480.mp4")
    with serve("--source", str(clip), "--set", "serve.workers=1", beside_run=True,
               env={"FACE_STREAM_TOKEN": TOKEN}) as client:
        assert client.get("/api/cameras").status == 401
        assert client.get("/").status == 401
        assert client.get("/api/cameras", Authorization=f"Bearer {TOKEN}").status == 200
    assert TOKEN not in client.stderr
