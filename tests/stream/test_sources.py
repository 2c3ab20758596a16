"""Tests of stream.sources: files, stills, folders, a fake webcam, bad inputs and URL redaction.

Real clips come from ``../shared/videos`` (or ``$STREAM_SHARED_DIR/videos``); tests that need them skip
when the folder is absent. Live-source behaviour is tested with a fake camera injected through
``capture_factory``; a real RTSP server is exercised in test_sources_rtsp.py.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stream.sources import SourceError, SourceOptions, open_source, redact_url
from stream.types import Frame
from tests.conftest import shared_file

CLIP = "talking_woman_512.mp4"  # 512x512, 30 fps, 354 frames, moov atom at the end
FASTSTART_CLIP = "woman_1280x720.mp4"  # moov atom first: a truncated copy still opens


def _videos_dir() -> Path:
    shared = os.environ.get("STREAM_SHARED_DIR")
    base = Path(shared) if shared else Path(__file__).resolve().parents[2].parent / "shared"
    return base / "videos"


@pytest.fixture(scope="module")
def videos() -> Path:
    folder = _videos_dir()
    if not (folder / CLIP).is_file():
        pytest.skip(f"test clips not found in {folder} (set STREAM_SHARED_DIR to the shared/ folder)")
    return folder


def _frame_signature(image: np.ndarray) -> int:
    """A cheap content fingerprint to compare frame order with an independent decode."""
    return int(image[::16, ::16].astype(np.int64).sum())


# --------------------------------------------------------------------------------------------------
# Video files
# --------------------------------------------------------------------------------------------------


def test_video_file_yields_every_frame_in_order(videos: Path) -> None:
    path = videos / CLIP
    with av.open(str(path)) as container:
        reference = [_frame_signature(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]

    with open_source(path) as source:
        assert (source.kind, source.is_live, source.name) == ("video", False, str(path))
        assert source.fps == pytest.approx(30.0)
        assert source.frame_count == len(reference) == 354
        frames = list(source)

    assert [f.index for f in frames] == list(range(len(reference)))
    assert [_frame_signature(f.image) for f in frames] == reference
    timestamps = np.array([f.timestamp for f in frames])
    assert timestamps[0] == 0.0
    assert np.all(np.diff(timestamps) > 0)
    assert timestamps[-1] == pytest.approx((len(frames) - 1) / 30.0, abs=1e-3)
    first = frames[0]
    assert first.image.shape == (512, 512, 3) and first.image.dtype == np.uint8
    assert (first.source, first.name) == (str(path), "")


def test_video_file_close_midway_stops_the_reader(videos: Path) -> None:
    path = str(videos / CLIP)
    source = open_source(path, queue_size=2)
    frames = [next(source) for _ in range(3)]
    assert [f.index for f in frames] == [0, 1, 2]
    time.sleep(0.1)  # the reader fills the bounded queue and blocks
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name == f"reader:{path}" and t.is_alive()]
    with pytest.raises(StopIteration):
        next(source)


def test_truncated_faststart_video_decodes_a_prefix_then_ends(
    videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = (videos / FASTSTART_CLIP).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="stream.sources"), open_source(path) as source:
        count = sum(1 for _ in source)
    assert 0 < count < source.frame_count
    assert "truncated" in caplog.text


# --------------------------------------------------------------------------------------------------
# Images and folders
# --------------------------------------------------------------------------------------------------


def test_image_file_is_one_frame_named_after_the_file(videos: Path) -> None:
    with open_source(videos / "multiface.jpg") as source:
        assert (source.kind, source.is_live, source.frame_count) == ("image", False, 1)
        frames = list(source)
    assert len(frames) == 1
    assert frames[0].name == "multiface.jpg" and frames[0].index == 0
    assert frames[0].height <= 1080


@pytest.mark.parametrize(
    ("shape", "max_height", "expected"),
    [
        ((2160, 3840), 1080, (1080, 1920)),
        ((2500, 1000), 1080, (1080, 432)),
        ((720, 1280), 1080, (720, 1280)),  # small images are left alone
        ((1000, 1000), 500, (500, 500)),
    ],
)
def test_tall_images_are_downscaled_keeping_aspect(
    tmp_path: Path, shape: tuple[int, int], max_height: int, expected: tuple[int, int]
) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    image[:, : shape[1] // 2] = (0, 0, 255)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), image)
    with open_source(path, max_image_height=max_height) as source:
        frame = next(source)
    assert frame.image.shape == (*expected, 3)
    assert frame.name == "big.png"


def test_folder_yields_images_in_natural_order_with_names(videos: Path, tmp_path: Path) -> None:
    with av.open(str(videos / CLIP)) as container:
        images = [f.to_ndarray(format="bgr24") for _, f in zip(range(4), container.decode(video=0), strict=False)]
    names = ["img_10.png", "img_2.png", "img_1.bmp", "IMG_3.PNG"]
    for name, image in zip(names, images, strict=True):
        cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # folders are not images, whatever their name

    with open_source(tmp_path) as source:
        assert (source.kind, source.frame_count, source.fps) == ("folder", 4, None)
        frames = list(source)

    assert [f.name for f in frames] == ["img_1.bmp", "img_2.png", "IMG_3.PNG", "img_10.png"]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    by_name = dict(zip(names, images, strict=True))
    for frame in frames:
        np.testing.assert_array_equal(frame.image, by_name[frame.name])  # lossless formats
        assert frame.source == str(tmp_path)


def test_folder_with_an_unreadable_image_skips_and_names_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((8, 8, 3), np.uint8))
    with open_source(tmp_path) as source:
        assert [frame.name for frame in source] == ["a.png", "c.png"]
        assert source.inputs_skipped == 1
    assert re.search(r"skipping cannot read image .*b\.jpg", caplog.text)


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


def _silent_server() -> tuple[socket.socket, int]:
    """A TCP server that accepts connections and never answers (an unresponsive camera)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


@pytest.mark.parametrize(
    ("make_spec", "fragment"),
    [
        pytest.param(lambda tmp, videos: str(tmp / "missing.mp4"), "not found", id="missing-file"),
        pytest.param(
            lambda tmp, videos: _write(tmp / "notes.mp4", b"this is text, not a video\n" * 10),
            "not a video or unsupported codec",
            id="text-renamed-mp4",
        ),
        pytest.param(
            lambda tmp, videos: _write(tmp / "cut.mp4", _first_half(videos / CLIP)),
            "cannot open video file",
            id="truncated-mp4-without-index",
        ),
        pytest.param(lambda tmp, videos: _mkdir(tmp / "empty"), "has no images", id="empty-folder"),
        pytest.param(
            lambda tmp, videos: _write(tmp / "broken.jpg", b"\xff\xd8\xff garbage"), "cannot read image", id="bad-jpeg"
        ),
        pytest.param(lambda tmp, videos: _write(tmp / "empty.png", b""), "cannot read image", id="empty-png"),
    ],
)
def test_bad_inputs_raise_source_error(videos: Path, tmp_path: Path, make_spec, fragment: str) -> None:  # noqa: ANN001
    spec = make_spec(tmp_path, videos)
    started = time.monotonic()
    with pytest.raises(SourceError, match=fragment) as info:
        open_source(spec)
    assert time.monotonic() - started < 2.0
    assert "\n" not in str(info.value)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _first_half(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def _mkdir(path: Path) -> str:
    path.mkdir()
    return str(path)


def test_unreachable_rtsp_url_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="connection refused") as info:
        open_source("rtsp://admin:hunter2@127.0.0.1:1/x", open_timeout_s=2)
    assert time.monotonic() - started < 2 + 2
    assert "hunter2" not in str(info.value)
    assert "rtsp://***@127.0.0.1:1/x" in str(info.value)


def test_silent_rtsp_server_fails_within_open_timeout() -> None:
    server, port = _silent_server()
    try:
        started = time.monotonic()
        with pytest.raises(SourceError, match="open_timeout_s"):
            open_source(f"rtsp://127.0.0.1:{port}/x", open_timeout_s=1.0, read_timeout_s=1.0)
        assert time.monotonic() - started < 1.0 + 2
    finally:
        server.close()


class _HttpHandler(BaseHTTPRequestHandler):
    """/clip.mp4: a faststart clip; /private.mp4: 401 Basic; anything else: 404."""

    clip: Path

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        if self.path == "/clip.mp4":
            data = self.clip.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/private.mp4":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="cams"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture
def http_server(videos: Path) -> Iterator[str]:
    handler = type("Handler", (_HttpHandler,), {"clip": videos / FASTSTART_CLIP})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_file_is_read_as_a_file(http_server: str, videos: Path) -> None:
    # A URL serving a file of known duration: every frame once, in order, like the local file (issue 15).
    with open_source(f"{http_server}/clip.mp4", **FAST) as source:
        assert (source.kind, source.is_live, source.fps) == ("video", False, pytest.approx(30.0))
        frames = list(source)
    with open_source(videos / FASTSTART_CLIP) as local:
        expected = sum(1 for _ in local)
    assert [f.index for f in frames] == list(range(expected))
    assert frames[0].image.shape == (720, 1280, 3)


@pytest.mark.parametrize(
    ("path", "userinfo", "fragment"),
    [
        ("/missing.mp4", "", r"stream not found \(404\)"),
        ("/private.mp4", "", "requires authentication"),
        ("/private.mp4", "bob:Sekr1t-99", "authentication failed"),
    ],
)
def test_http_errors_are_explained(http_server: str, path: str, userinfo: str, fragment: str) -> None:
    url = http_server.replace("://", f"://{userinfo}@" if userinfo else "://") + path
    started = time.monotonic()
    with pytest.raises(SourceError, match=fragment) as info:
        open_source(url, **FAST)
    assert time.monotonic() - started < 2.0
    assert "Sekr1t-99" not in str(info.value)


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera at /dev/video0")
@pytest.mark.parametrize("spec", [0, "0"])
def test_missing_real_webcam_fails_fast(spec: int | str) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="no camera at index 0"):
        open_source(spec, open_timeout_s=2)
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    ("spec", "error", "fragment"),
    [
        ("ftp://host/x.mp4", ValueError, "unsupported URL scheme 'ftp'"),
        (True, TypeError, "got bool"),
        (3.5, TypeError, "got float"),
        (-1, ValueError, "must be >= 0"),
        ("", ValueError, "must not be empty"),
    ],
)
def test_bad_specs_raise_value_or_type_error(spec: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        open_source(spec)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("open_timeout_s", 0, ValueError),
        ("open_timeout_s", float("inf"), ValueError),
        ("read_timeout_s", -1.0, ValueError),
        ("read_timeout_s", "5", TypeError),
        ("rtsp_transport", "http", ValueError),
        ("reconnect_initial_s", 0.0, ValueError),
        ("reconnect_max_s", 0.1, ValueError),  # below reconnect_initial_s
        ("give_up_after_s", -1, ValueError),
        ("wait_for_source", 1, TypeError),
        ("queue_size", 0, ValueError),
        ("queue_size", 2.5, TypeError),
        ("max_image_height", 8, ValueError),
        ("max_image_height", True, TypeError),
    ],
)
def test_options_are_validated_naming_the_key(key: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=key):
        SourceOptions(**{key: value})


def test_options_defaults_and_overrides(tmp_path: Path) -> None:
    options = SourceOptions()
    assert (options.open_timeout_s, options.read_timeout_s, options.rtsp_transport) == (10.0, 5.0, "tcp")
    assert (options.reconnect_initial_s, options.reconnect_max_s, options.give_up_after_s) == (0.5, 2.0, 300.0)
    assert (options.wait_for_source, options.queue_size, options.max_image_height) == (False, 8, 1080)
    assert SourceOptions(give_up_after_s=float("inf")).give_up_after_s == float("inf")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 10, 3), np.uint8))
    with open_source(tmp_path / "a.png", SourceOptions(max_image_height=20), max_image_height=16) as source:
        assert next(source).image.shape == (16, 4, 3)
    with open_source(tmp_path / "a.png", {"max_image_height": 20}) as source:  # a mapping, as from YAML
        assert next(source).image.shape == (20, 5, 3)
    with pytest.raises(TypeError, match="unknown option"):
        open_source(tmp_path / "a.png", open_timeout=3)
    with pytest.raises(TypeError, match=r"unknown option.*'timeout'"):
        open_source(tmp_path / "a.png", {"timeout": 3})
    with pytest.raises(TypeError, match="options must be a SourceOptions"):
        open_source(tmp_path / "a.png", [3])  # type: ignore[arg-type]


def test_config_section_is_accepted_as_options(tmp_path: Path) -> None:
    from stream.config import load_config

    config = load_config(None, ["source.max_image_height=100"])
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((200, 100, 3), np.uint8))
    with open_source(tmp_path / "a.png", options=config.source) as source:
        assert next(source).image.shape == (100, 50, 3)


# --------------------------------------------------------------------------------------------------
# Live sources with a fake camera
# --------------------------------------------------------------------------------------------------


class FakeCamera:
    """``cv2.VideoCapture`` stand-in: ``frames`` frames at ``fps`` (None: endless), then read() fails.

    Pixel (0, 0) carries ``(camera_id, count % 256, count // 256)`` so tests can tell frames apart.
    """

    def __init__(self, camera_id: int, frames: int | None = None, fps: float = 200.0, opened: bool = True) -> None:
        self.camera_id = camera_id
        self.frames = frames
        self.fps = fps
        self.opened = opened
        self.count = 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - cv2's spelling
        return self.opened and not self.released

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.isOpened() or (self.frames is not None and self.count >= self.frames):
            return False, None
        time.sleep(1.0 / self.fps)
        image = np.zeros((24, 32, 3), np.uint8)
        image[0, 0] = (self.camera_id, self.count % 256, self.count // 256)
        self.count += 1
        return True, image

    def get(self, prop_id: int) -> float:
        return self.fps if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


class FakeFactory:
    """Hands out the planned cameras in order; the last plan repeats."""

    def __init__(self, *plans: FakeCamera | None) -> None:
        self.plans = list(plans)
        self.specs: list[object] = []
        self.created: list[FakeCamera] = []

    def __call__(self, spec: object) -> FakeCamera:
        self.specs.append(spec)
        plan = self.plans.pop(0) if len(self.plans) > 1 else self.plans[0]
        camera = plan if plan is not None else FakeCamera(camera_id=0, opened=False)
        if plan is not None and plan in self.created:  # a repeated plan: a fresh camera like it
            camera = FakeCamera(plan.camera_id, plan.frames, plan.fps, plan.opened)
        self.created.append(camera)
        return camera


FAST = {"open_timeout_s": 2.0, "read_timeout_s": 1.0, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2}


def test_fake_webcam_reconnects_and_keeps_only_the_newest_frame(caplog: pytest.LogCaptureFixture) -> None:
    factory = FakeFactory(FakeCamera(1, frames=30), None, FakeCamera(2))
    delivered: list[Frame] = []
    staleness: list[int] = []
    with (
        caplog.at_level(logging.DEBUG, logger="stream.sources"),
        open_source(0, capture_factory=factory, give_up_after_s=5, **FAST) as source,
    ):
        assert (source.kind, source.is_live, source.fps, source.name) == ("webcam", True, 200.0, "camera 0")
        assert source.frame_count is None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame = next(source)
            delivered.append(frame)
            camera = factory.created[-1]
            staleness.append(camera.count - 1 - int(frame.image[0, 0, 1]) - 256 * int(frame.image[0, 0, 2]))
            if frame.image[0, 0, 0] == 2 and len(delivered) > 20:
                break
            time.sleep(0.02)  # a slow consumer: 50 fps against a 200 fps camera
        dropped = source.frames_dropped
        assert source.outages == 1

    assert factory.specs[:3] == [0, 0, 0]
    cameras = [int(f.image[0, 0, 0]) for f in delivered]
    assert cameras[0] == 1 and cameras[-1] == 2 and cameras == sorted(cameras)
    indices = [f.index for f in delivered]
    assert all(b > a for a, b in zip(indices, indices[1:], strict=False)), (
        "indices keep increasing across the reconnection"
    )
    assert dropped > 10
    assert dropped + len(delivered) <= indices[-1] + 1
    # Newest frame only: when next() returns, the camera is at most a few frames further (a queue would
    # fall hundreds of frames behind at this rate).
    assert np.median([s for f, s in zip(delivered, staleness, strict=True) if f.image[0, 0, 0] == 2]) <= 3
    timestamps = [f.timestamp for f in delivered]
    assert all(b >= a for a, b in zip(timestamps, timestamps[1:], strict=False))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "lost" in warnings[0].getMessage()
    assert any("back after" in message for message in infos)


def test_fake_webcam_that_never_opens_raises() -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="no camera at index 3"):
        open_source(3, capture_factory=FakeFactory(None), **FAST)
    assert time.monotonic() - started < 1.0


def test_wait_for_source_retries_until_the_camera_appears(caplog: pytest.LogCaptureFixture) -> None:
    factory = FakeFactory(None, None, FakeCamera(5))
    with (
        caplog.at_level(logging.INFO, logger="stream.sources"),
        open_source(1, capture_factory=factory, wait_for_source=True, give_up_after_s=5, **FAST) as source,
    ):
        assert next(source).image[0, 0, 0] == 5
    assert len(factory.specs) >= 3
    assert [r.levelname for r in caplog.records].count("WARNING") == 1
    assert "available after" in caplog.text


def test_wait_for_source_gives_up() -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="giving up"):
        open_source(1, capture_factory=FakeFactory(None), wait_for_source=True, give_up_after_s=0.5, **FAST)
    assert time.monotonic() - started < 2.0


def test_live_source_gives_up_after_a_long_outage() -> None:
    factory = FakeFactory(FakeCamera(1, frames=3), None)
    with open_source(0, capture_factory=factory, give_up_after_s=0.6, **FAST) as source:
        started = time.monotonic()
        with pytest.raises(SourceError, match="giving up"):
            for _ in range(10):
                next(source)
        assert time.monotonic() - started < 0.6 + 1.5


class ClipCamera:
    """A live camera that hands over decoded ``av.VideoFrame`` objects (``read_frame``), as the RTSP capture does:
    the frames of a real clip, at ``fps``."""

    def __init__(self, clip: Path, fps: float = 100.0) -> None:
        self.container = av.open(str(clip))
        self.frames = self.container.decode(video=0)
        self.fps = fps

    def read_frame(self) -> av.VideoFrame | None:
        time.sleep(1.0 / self.fps)
        return next(self.frames, None)

    def read(self) -> tuple[bool, np.ndarray | None]:  # pragma: no cover - read_frame() is used
        raise AssertionError("the grabber reads PyAV captures through read_frame()")

    def isOpened(self) -> bool:  # noqa: N802 - cv2's spelling
        return True

    def get(self, prop_id: int) -> float:
        return self.fps if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.container.close()


def test_a_live_frame_converted_later_in_another_thread_is_the_frame_read() -> None:
    clip = shared_file("videos", "talking_man_512.mp4")
    with open_source(clip) as file_source:
        reference = [frame.image for _, frame in zip(range(40), file_source)]
    with open_source(0, capture_factory=lambda _spec: ClipCamera(clip), give_up_after_s=5, **FAST) as source:
        taken = []
        while len(taken) < 3:
            read = source.read_unconverted(timeout_s=2.0)
            assert read is not None
            frame, convert = read
            assert frame.image.shape == (0, 0, 3)  # nothing converted yet
            taken.append((frame.index, convert))
            time.sleep(0.03)  # slower than the camera: frames are dropped in between
        images: dict[int, np.ndarray] = {}
        workers = [threading.Thread(target=lambda k=k, c=c: images.__setitem__(k, c())) for k, c in taken]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert len(images) == 3 and max(images) < len(reference)
    for index, image in images.items():
        np.testing.assert_array_equal(image, reference[index])


def test_read_with_timeout_returns_none_while_no_frame_comes() -> None:
    factory = FakeFactory(FakeCamera(1, frames=1), None)
    with open_source(0, capture_factory=factory, give_up_after_s=30, **FAST) as source:
        assert source.read(timeout_s=1.0) is not None
        started = time.monotonic()
        assert source.read(timeout_s=0.3) is None
        assert 0.25 < time.monotonic() - started < 0.8
    # Closed: iteration ends.
    with pytest.raises(StopIteration):
        next(source)


def test_stream_url_with_injected_capture_is_redacted_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    url = "rtsp://admin:hunter2@10.0.0.7:554/live?token=abc123"
    factory = FakeFactory(FakeCamera(1))
    with (
        caplog.at_level(logging.DEBUG, logger="stream.sources"),
        open_source(url, capture_factory=factory, **FAST) as source,
    ):
        frame = next(source)
    assert factory.specs == [url]
    assert source.kind == "stream"
    assert source.name == frame.source == "rtsp://***@10.0.0.7:554/live?token=***"
    assert "hunter2" not in caplog.text and "abc123" not in caplog.text


def test_grabber_thread_stops_and_releases_the_camera_on_close() -> None:
    factory = FakeFactory(FakeCamera(1))
    with open_source(7, capture_factory=factory, **FAST) as source:
        next(source)
    assert not [t for t in threading.enumerate() if t.name == "grabber:camera 7" and t.is_alive()]
    assert factory.created[0].released


# --------------------------------------------------------------------------------------------------
# URL redaction
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:pass@192.168.1.10:554/stream1", "rtsp://***@192.168.1.10:554/stream1"),
        ("rtsps://admin:p@ss:w0rd@cam.local/h264", "rtsps://***@cam.local/h264"),
        ("http://token@example.com/live.m3u8", "http://***@example.com/live.m3u8"),
        (
            "https://example.com/live.m3u8?user=bob&password=secret#t",
            "https://example.com/live.m3u8?user=bob&password=***#t",
        ),
        ("rtsp://cam.local/onvif?channel=1&pwd=x&token=y", "rtsp://cam.local/onvif?channel=1&pwd=***&token=***"),
        ("rtsp://192.168.1.10:554/stream1", "rtsp://192.168.1.10:554/stream1"),
        # A query right after the host (no path): the query starts at the first character after it.
        ("rtsp://u:p@cam.local?password=y#frag", "rtsp://***@cam.local?password=***#frag"),
        ("http://example.com/a@b.m3u8", "http://example.com/a@b.m3u8"),  # '@' in the path is not user info
        ("videos/clip.mp4", "videos/clip.mp4"),
        ("0", "0"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
