"""Network faults against the real CLI: refused, accept-and-stall, drip-feed, reset mid-stream, 401.

Each test asserts the exit code, the one-line error (for failures), a bounded time and that every output
written so far is readable. The servers are real (tests/support/faulty_servers.py, the GStreamer RTSP server).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import shared_file
from tests.faults.conftest import HTTP_CLIP, LONG_CLIP, STARTUP_S, Run, decodable_frames
from tests.stream import test_sources_rtsp as rtsp
from tests.support.cli_util import free_port, read_events
from tests.support.faulty_servers import FaultyHttpServer, StallingListener

rtsp_ready = rtsp.rtsp_ready
start_server = rtsp.start_server
# Reserved characters in a password, raw and percent-encoded: none may be printed anywhere.
PASSWORD = "p@ss:w/rd#?%"
ENCODED = "p%40ss%3Aw%2Frd%23%3F%25"


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (PASSWORD, ENCODED, "p@ss", "w/rd", "rd#?", "%3Aw%2F"):
            assert secret not in text, f"{secret!r} leaked:\n{text}"


# --------------------------------------------------------------------------------------------------
# RTSP output
# --------------------------------------------------------------------------------------------------


def test_rtsp_output_to_a_silent_receiver_never_stops_the_analysis(
    run_cli_bg: Callable[..., Run], stalling_listener: StallingListener, tmp_path
) -> None:
    events = tmp_path / "e.jsonl"
    url = f"rtsp://cam:{ENCODED}@127.0.0.1:{stalling_listener.port}/live"
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--output", url, "--events", str(events),
                     "--max-frames", "500", "--set", "output.rtsp_timeout_s=1", "--set",
                     "output.rtsp_reconnect_max_s=0.5", log_level="DEBUG")
    code, _ = run.finish(STARTUP_S + 90)
    assert code == 0, run.stderr
    assert len(read_events(events)) == 500  # every frame, although the receiver never answered
    assert stalling_listener.accepted, "the publisher never connected"
    assert "no progress for output.rtsp_timeout_s=1 s" in run.stderr
    assert "Traceback" not in run.stderr
    _assert_no_secret(run.stderr, events.read_text())


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_end_a_run_whose_rtsp_receiver_is_stalled(
    run_cli_bg: Callable[..., Run], stalling_listener: StallingListener, tmp_path, signum: int, code: int
) -> None:
    events = tmp_path / "e.jsonl"
    # rtsp_timeout_s=30: the publisher stays stalled in the handshake for the whole test.
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--output",
                     f"rtsp://127.0.0.1:{stalling_listener.port}/live", "--events", str(events),
                     "--set", "output.rtsp_timeout_s=30")
    run.wait_for_lines(events, 30)
    deadline = time.monotonic() + 20
    while not stalling_listener.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stalling_listener.accepted, "the publisher never connected"
    before = events.read_bytes().count(b"\n")
    time.sleep(1.0)
    during = events.read_bytes().count(b"\n")
    run.signal(signum)
    exit_code, waited = run.finish(20)  # 2 s publisher grace + the frame in flight, with a wide margin
    assert exit_code == code, run.stderr
    assert during > before, "the frame loop stopped while the receiver was stalled"
    assert len(read_events(events)) >= during
    assert "Traceback" not in run.stderr


def test_rtsp_output_refused_keeps_the_run_going(run_cli_bg: Callable[..., Run], tmp_path) -> None:
    events = tmp_path / "e.jsonl"
    url = f"rtsp://cam:{PASSWORD}@127.0.0.1:{free_port()}/live"
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--output", url, "--events", str(events),
                     "--max-frames", "200", log_level="DEBUG")
    code, _ = run.finish(STARTUP_S + 60)
    assert code == 0, run.stderr
    assert len(read_events(events)) == 200
    assert "cannot publish to the server" in run.stderr or "never connected" in run.stderr
    _assert_no_secret(run.stderr)


# --------------------------------------------------------------------------------------------------
# RTSP source
# --------------------------------------------------------------------------------------------------


def test_rtsp_camera_that_accepts_and_stalls_fails_within_the_open_timeout(
    run_cli_bg: Callable[..., Run], stalling_listener: StallingListener, tmp_path
) -> None:
    events = tmp_path / "e.jsonl"
    run = run_cli_bg("--source", f"rtsp://cam:{ENCODED}@127.0.0.1:{stalling_listener.port}/cam", "--events",
                     str(events), "--set", "source.open_timeout_s=1.5", log_level="DEBUG")
    code, _ = run.finish(STARTUP_S)
    assert code == 2, run.stderr
    assert "1.5 s" in run.error()
    _assert_no_secret(run.stderr)
    assert not events.exists() or read_events(events) == []


def test_rtsp_camera_killed_mid_stream_gives_up_with_one_line(
    run_cli_bg: Callable[..., Run], start_server: Callable[..., rtsp.RtspServer], tmp_path
) -> None:
    server = start_server()
    events, video = tmp_path / "e.jsonl", tmp_path / "v.mp4"
    run = run_cli_bg("--source", server.url(), "--events", str(events), "--output", str(video),
                     "--set", "source.give_up_after_s=2", "--set", "source.read_timeout_s=1")
    run.wait_for_lines(events, 20)
    server.kill()  # the connection is reset mid-stream and nothing answers again
    code, _ = run.finish(30)
    assert code == 2, run.stderr
    assert "giving up" in run.error()
    frames = len(read_events(events))
    assert frames >= 20
    assert decodable_frames(video) == frames


# --------------------------------------------------------------------------------------------------
# HTTP source
# --------------------------------------------------------------------------------------------------


def test_http_file_is_read_as_a_file(run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer, tmp_path) -> None:
    events = tmp_path / "e.jsonl"
    run = run_cli_bg("--source", http_server.url("clip.mp4"), "--events", str(events))
    code, _ = run.finish(STARTUP_S + 60)
    assert code == 0, run.stderr
    records = read_events(events)
    assert [r["frame"] for r in records] == list(range(decodable_frames(shared_file("videos", HTTP_CLIP))))
    assert "reconnecting" not in run.stderr


@pytest.mark.parametrize("userinfo", ["", f"cam:{ENCODED}x"], ids=["no-credentials", "wrong-password"])
def test_http_401_is_one_line_without_the_password(
    run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer, userinfo: str
) -> None:
    run = run_cli_bg("--source", http_server.url("auth.mp4", userinfo), log_level="DEBUG")
    code, _ = run.finish(STARTUP_S)
    assert code == 2, run.stderr
    assert "401" in run.error()
    _assert_no_secret(run.stderr)


def test_http_with_the_right_reserved_character_password_reads_and_never_shows_it(
    run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer, tmp_path
) -> None:
    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    run = run_cli_bg("--source", http_server.url("auth.mp4", f"cam:{ENCODED}"), "--events", str(events),
                     "--summary", str(summary), "--max-frames", "20", log_level="DEBUG")
    code, _ = run.finish(STARTUP_S + 30)
    assert code == 0, run.stderr
    assert len(read_events(events)) == 20
    _assert_no_secret(run.stderr, events.read_text(), summary.read_text())


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[FaultyHttpServer, Path]]:
    """The clip over https with a certificate signed by a throwaway CA (the CA file is returned beside it)."""
    import ssl

    from tests.support.mosquitto import make_tls_files

    files = make_tls_files(tmp_path / "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    server = FaultyHttpServer(shared_file("videos", HTTP_CLIP), user="cam", password="p@ss:w/rd#?%", tls=context)
    yield server, files.ca
    server.close()


def test_https_server_this_machine_does_not_trust_gets_no_credentials(
    run_cli_bg: Callable[..., Run], https_server: tuple[FaultyHttpServer, Path]
) -> None:
    """FFmpeg checks no certificate unless told to: the URL's password would go to whoever answers. The check is on
    by default; an untrusted server gets no request at all, and the run says what to do in one line."""
    server, _ = https_server
    run = run_cli_bg("--source", server.url("auth.mp4", f"cam:{ENCODED}"), log_level="DEBUG")
    code, _ = run.finish(STARTUP_S)
    assert code == 2, run.stderr
    assert "tls_ca_file" in run.error() and "certificate" in run.error()
    assert server.requests == []  # not one HTTP request (and so no credentials) reached the server
    _assert_no_secret(run.stderr)


@pytest.mark.parametrize("trust", ["ca_file", "no_check"])
def test_https_server_trusted_through_its_ca_or_unchecked_reads_every_frame(
    run_cli_bg: Callable[..., Run], https_server: tuple[FaultyHttpServer, Path], tmp_path: Path, trust: str
) -> None:
    server, ca = https_server
    setting = f"source.tls_ca_file={ca}" if trust == "ca_file" else "source.tls_verify=false"
    events = tmp_path / "e.jsonl"
    run = run_cli_bg("--source", server.url("auth.mp4", f"cam:{ENCODED}"), "--events", str(events),
                     "--set", setting)
    code, _ = run.finish(STARTUP_S + 60)
    assert code == 0, run.stderr
    expected = decodable_frames(shared_file("videos", HTTP_CLIP))
    assert [r["frame"] for r in read_events(events)] == list(range(expected))  # a file: every frame, once


def test_http_server_that_never_answers_fails_within_the_open_timeout(
    run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer
) -> None:
    run = run_cli_bg("--source", http_server.url("stall.mp4"), "--set", "source.open_timeout_s=1.5")
    code, _ = run.finish(STARTUP_S)
    assert code == 2, run.stderr
    assert "1.5 s" in run.error()


def test_http_drip_feed_still_stops_on_ctrl_c(
    run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer, tmp_path
) -> None:
    events = tmp_path / "e.jsonl"
    run = run_cli_bg("--source", http_server.url("drip.mp4"), "--events", str(events))
    run.wait_for_lines(events, 1, timeout_s=STARTUP_S + 30)
    run.signal(signal.SIGINT)
    code, _ = run.finish(15)
    assert code == 130, run.stderr
    assert read_events(events)


@pytest.mark.parametrize(("path", "video_name", "extra", "says"), [
    ("reset.mp4", "v.mp4", (), "lost"),  # the connection reset for good
    ("stall-half.mp4", "v.mkv", ("--set", "source.read_timeout_s=1.5"), "stalled"),  # silent mid-body
])
def test_http_file_lost_mid_stream_ends_with_one_line_and_readable_outputs(
    run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer, tmp_path, path, video_name, extra, says
) -> None:
    events, video = tmp_path / "e.jsonl", tmp_path / video_name
    run = run_cli_bg("--source", http_server.url(path), "--events", str(events), "--output", str(video), *extra)
    code, _ = run.finish(STARTUP_S + 60)
    assert code == 2, run.stderr
    assert says in run.error()
    frames = len(read_events(events))
    assert 0 < frames < decodable_frames(shared_file("videos", HTTP_CLIP))
    assert decodable_frames(video) == frames  # the outputs hold exactly the frames read


# --------------------------------------------------------------------------------------------------
# MQTT events outlet
# --------------------------------------------------------------------------------------------------


def test_mqtt_broker_that_accepts_and_stalls_is_one_line_without_the_password(
    run_cli_bg: Callable[..., Run], stalling_listener: StallingListener
) -> None:
    url = f"mqtt://cam:{ENCODED}@127.0.0.1:{stalling_listener.port}/faces"
    run = run_cli_bg("--source", str(shared_file("videos", LONG_CLIP)), "--events", url, log_level="DEBUG")
    code, _ = run.finish(STARTUP_S + 30)
    assert code == 2, run.stderr
    assert "did not answer" in run.error()
    _assert_no_secret(run.stderr)


def test_http_reset_once_resumes_and_reads_every_frame(
    run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer, tmp_path
) -> None:
    events = tmp_path / "e.jsonl"
    run = run_cli_bg("--source", http_server.url("reset-once.mp4"), "--events", str(events))
    code, _ = run.finish(STARTUP_S + 60)
    assert code == 0, run.stderr
    expected = decodable_frames(shared_file("videos", HTTP_CLIP))
    assert [r["frame"] for r in read_events(events)] == list(range(expected))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_end_a_run_whose_http_server_stalls_in_the_open(
    run_cli_bg: Callable[..., Run], http_server: FaultyHttpServer, signum: int, code: int
) -> None:
    # open_timeout_s=60: only the signal can end the open within the test's bound (FFmpeg's open blocks in
    # native code, where a main thread would not run the handler until the timeout).
    run = run_cli_bg("--source", http_server.url("stall.mp4"), "--set", "source.open_timeout_s=60")
    deadline = time.monotonic() + STARTUP_S
    while "/stall.mp4" not in http_server.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "/stall.mp4" in http_server.requests, "the source was never opened"
    time.sleep(0.5)
    run.signal(signum)
    exit_code, _ = run.finish(15)
    assert exit_code == code, run.stderr
    assert "Traceback" not in run.stderr


def test_mqtt_password_with_raw_reserved_characters_connects_and_is_never_shown(
    run_cli_bg: Callable[..., Run], tmp_path
) -> None:
    from tests.support.mosquitto import Mosquitto, Subscriber, mosquitto_binary

    mosquitto_binary()
    password = "Kw3[#/?]@ :Vx8"  # raw: urlsplit reads '[' as an IPv6 host, '#' '?' '/' as the URL's later parts
    broker = Mosquitto(tmp_path / "broker", users={"cam": password}).start()
    subscriber = Subscriber(broker.port, "faces/#", username="cam", password=password)
    try:
        run = run_cli_bg("--source", str(shared_file("videos", "talking_man_512.mp4")), "--events",
                         f"mqtt://cam:{password}@127.0.0.1:{broker.port}/faces?spool={tmp_path / 'spool'}",
                         log_level="DEBUG")
        code, _ = run.finish(STARTUP_S + 30)
        assert code == 0, run.stderr
        messages = subscriber.wait_for(lambda got: any(m.topic.endswith("/status") for m in got))
    finally:
        subscriber.close()
        broker.stop()
    assert messages
    for secret in ("Kw3", "Vx8"):
        assert secret not in run.stderr
        assert all(secret not in m.payload.decode(errors="replace") for m in messages)


# --------------------------------------------------------------------------------------------------
# HTTP files served in other ways: still files (every frame once, exit 0)
# --------------------------------------------------------------------------------------------------


def _hls_vod(clip: Path, folder: Path) -> None:
    """Remux ``clip`` into an HLS VOD playlist (``#EXT-X-ENDLIST``) of 1 s segments, as ``ffmpeg -f hls`` does."""
    import av

    with av.open(str(clip)) as source, av.open(str(folder / "vod.m3u8"), "w", format="hls",
                                                options={"hls_time": "1", "hls_playlist_type": "vod"}) as out:
        video = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video
                out.mux(packet)


@pytest.mark.parametrize("how", ["no-range", "chunked", "redirect", "hls-vod"])
def test_http_file_served_without_range_chunked_redirected_or_as_hls_is_a_file(
    run_cli_bg: Callable[..., Run], tmp_path: Path, how: str
) -> None:
    import http.server
    import threading
    from functools import partial

    clip = shared_file("videos", "talking_man_512.mp4")  # its index (moov) is at the end: needs seeking or a download
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    if how == "hls-vod":
        _hls_vod(clip, folder)
    data = clip.read_bytes()

    class Handler(http.server.SimpleHTTPRequestHandler):  # python -m http.server: no Range requests
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
            if self.path == "/chunked.mp4":
                self.protocol_version = "HTTP/1.1"
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")  # no Content-Length
                self.end_headers()
                for i in range(0, len(data), 65536):
                    part = data[i : i + 65536]
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif self.path == "/moved.mp4":
                self.send_response(302)
                self.send_header("Location", "/clip.mp4?from=redirect")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = {"no-range": "clip.mp4", "chunked": "chunked.mp4", "redirect": "moved.mp4", "hls-vod": "vod.m3u8"}[how]
    events = tmp_path / "e.jsonl"
    try:
        run = run_cli_bg("--source", f"http://127.0.0.1:{server.server_address[1]}/{path}", "--events", str(events))
        code, _ = run.finish(STARTUP_S + 60)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, run.stderr
    assert [r["frame"] for r in read_events(events)] == list(range(decodable_frames(clip)))
    assert "reconnecting" not in run.stderr
