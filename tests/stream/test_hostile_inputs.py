"""Hostile inputs through the real CLI (issue 15): each is refused with exit 2 and one ``error:`` line, or
handled (a damaged image skipped, a rotated phone clip turned upright), and no input or output is harmed.

The network and disk faults (stalls, resets, full disks, kills) are in tests/faults/.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stream.redact import SecretFilter, has_credentials, redact_url, scrub, url_secrets
from tests.conftest import shared_file
from tests.support.cli_util import child_env, error_line, free_port, read_events, run_cli

CLIP = "talking_man_512.mp4"
IMAGE = "multiface.jpg"

Case = Callable[[Path], tuple[list[str], dict[str, str]]]


def _clip() -> str:
    return str(shared_file("videos", CLIP))


def _src(spec: str) -> Case:
    return lambda tmp: (["--source", spec], {})


def _long_name(tmp: Path) -> str:
    return str(tmp / ("a" * 300 + ".mp4"))


def _symlink_loop(tmp: Path) -> Path:
    (tmp / "loop_b").symlink_to(tmp / "loop_a")
    (tmp / "loop_a").symlink_to(tmp / "loop_b")
    return tmp / "loop_a"


def _dangling(tmp: Path) -> tuple[list[str], dict[str, str]]:
    (tmp / "gone.mp4").symlink_to(tmp / "nowhere.mp4")
    return ["--source", str(tmp / "gone.mp4")], {}


def _fifo(tmp: Path) -> tuple[list[str], dict[str, str]]:
    os.mkfifo(tmp / "pipe.mp4")
    return ["--source", str(tmp / "pipe.mp4")], {}


def _mkfifo(tmp: Path) -> str:
    os.mkfifo(tmp / "fifo")
    return str(tmp / "fifo")


def _copy(tmp: Path, name: str = "v.mp4", what: str = CLIP) -> Path:
    target = tmp / name
    shutil.copy(shared_file("videos", what), target)
    return target


def _same_as_input(option: str, how: str) -> Case:
    def case(tmp: Path) -> tuple[list[str], dict[str, str]]:
        source = _copy(tmp)
        target = source
        if how == "symlink":
            target = tmp / "link.mp4"
            target.symlink_to(source)
        elif how == "hardlink":
            target = tmp / "hard.mp4"
            os.link(source, target)
        elif how == "dots":
            target = tmp / "." / "sub" / ".." / source.name
            (tmp / "sub").mkdir()
        return ["--source", str(source), option, str(target)], {}

    return case


def _image_onto_itself(tmp: Path) -> tuple[list[str], dict[str, str]]:
    image = _copy(tmp, "face.jpg", IMAGE)
    return ["--source", str(image), "--output", str(image)], {}


def _image_into_its_folder(tmp: Path) -> tuple[list[str], dict[str, str]]:
    image = _copy(tmp, "face.jpg", IMAGE)
    return ["--source", str(image), "--output", str(tmp)], {}


def _image_into_its_folder_dots(tmp: Path) -> tuple[list[str], dict[str, str]]:
    image = _copy(tmp, "face.jpg", IMAGE)
    (tmp / "sub").mkdir()
    return ["--source", str(image), "--output", str(tmp / "sub" / "..")], {}


def _folder_onto_itself(tmp: Path) -> tuple[list[str], dict[str, str]]:
    folder = tmp / "images"
    folder.mkdir()
    _copy(folder, "face.jpg", IMAGE)
    return ["--source", str(folder), "--output", str(folder)], {}


def _summary_is_events(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return ["--source", _clip(), "--events", str(tmp / "x.json"), "--summary", str(tmp / "x.json")], {}


def _models_dir_is_a_file(tmp: Path) -> tuple[list[str], dict[str, str]]:
    blocker = tmp / "models_file"
    blocker.write_text("x")
    return ["--source", _clip()], {"STREAM_MODELS_DIR": str(blocker)}


CASES: list[tuple[str, Case, str]] = [
    ("empty source", _src(""), r"source must not be empty"),
    ("whitespace source", _src("   "), r"source must not be empty"),
    ("ftp scheme", _src("ftp://host/x.mp4"), r"unsupported URL scheme 'ftp'"),
    ("file scheme", _src("file:///tmp/x.mp4"), r"unsupported URL scheme 'file'"),
    ("udp scheme", _src("udp://239.0.0.1:5000"), r"unsupported URL scheme 'udp'"),
    ("over-long name", lambda tmp: (["--source", _long_name(tmp)], {}), r"name too long"),
    ("symlink loop", lambda tmp: (["--source", str(_symlink_loop(tmp))], {}), r"symbolic link loop"),
    ("dangling symlink", _dangling, r"symbolic link to a missing file"),
    ("fifo", _fifo, r"named pipe \(FIFO\)"),
    ("huge webcam index", _src("99999999999999999999999"), r"webcam index 9+\.\.\. is out of range"),
    ("webcam index over int32", _src("4294967296"), r"webcam index 4294967296 is out of range"),
    (
        "RTSP in capitals",
        lambda tmp: (["--source", f"RTSP://127.0.0.1:{free_port()}/x", "--set", "source.open_timeout_s=2"], {}),
        r"'rtsp://127\.0\.0\.1:\d+/x': connection refused",
    ),
    (
        "HTTP in capitals",
        lambda tmp: (["--source", f"HtTp://127.0.0.1:{free_port()}/x.mp4", "--set", "source.open_timeout_s=2"], {}),
        r"'http://127\.0\.0\.1:\d+/x\.mp4': connection refused",
    ),
    ("over-long output", lambda tmp: (["--source", _clip(), "--output", _long_name(tmp)], {}), r"name too long"),
    (
        "over-long events folder",
        lambda tmp: (["--source", _clip(), "--events", str(Path(_long_name(tmp)) / "e.jsonl")], {}),
        r"--events .* name too long",
    ),
    (
        "summary through a symlink loop",
        lambda tmp: (["--source", _clip(), "--summary", str(_symlink_loop(tmp) / "s.json")], {}),
        r"--summary .*symbolic link loop",
    ),
    ("output is the input", _same_as_input("--output", "same"), r"--output .* is the input itself"),
    ("output is the input via a symlink", _same_as_input("--output", "symlink"), r"is the input itself"),
    ("output is the input via a hard link", _same_as_input("--output", "hardlink"), r"is the input itself"),
    ("output is the input via ..", _same_as_input("--output", "dots"), r"is the input itself"),
    ("events are the input", _same_as_input("--events", "same"), r"--events .* is the input itself"),
    ("summary is the input", _same_as_input("--summary", "symlink"), r"--summary .* is the input itself"),
    ("image output is the input image", _image_onto_itself, r"is the input itself"),
    ("image folder output is the input folder", _folder_onto_itself, r"input"),
    ("image into its own folder", _image_into_its_folder, r"holds the input image .*would replace"),
    ("image into its own folder via ..", _image_into_its_folder_dots, r"holds the input image"),
    ("summary and events the same file", _summary_is_events, r"--events and --summary name the same file"),
    ("STREAM_MODELS_DIR is a file", _models_dir_is_a_file, r"cannot be used .*STREAM_MODELS_DIR"),
    ("http output", lambda tmp: (["--source", _clip(), "--output", "http://u:pw@h/x.mp4"], {}), r"http:// is not an"),
    ("file output URL", lambda tmp: (["--source", _clip(), "--output", "file:///x.mp4"], {}), r"file:// is not an"),
    ("config is a FIFO", lambda tmp: (["--source", _clip(), "--config", _mkfifo(tmp)], {}), r"not a regular file"),
    ("config is a device", lambda tmp: (["--source", _clip(), "--config", "/dev/zero"], {}), r"not a regular file"),
    ("events into a FIFO", lambda tmp: (["--source", _clip(), "--events", _mkfifo(tmp)], {}), r"named pipe"),
    ("summary into a FIFO", lambda tmp: (["--source", _clip(), "--summary", _mkfifo(tmp)], {}), r"named pipe"),
]


def assert_refused_untouched(tmp_path: Path, case: Case, expected: str) -> None:
    """The CLI run ``case`` makes exits 2 with one error line matching ``expected``; no file under ``tmp_path``
    (its inputs, and anything an output would have overwritten) is changed."""
    args, env = case(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    result = run_cli(*args, env=child_env(**env), timeout=90)
    assert result.returncode == 2, result.stderr
    line = error_line(result.stderr)
    assert re.search(expected, line), line
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} changed"


@pytest.mark.parametrize(("case", "expected"), [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_hostile_input_exits_2_with_one_error_line(tmp_path: Path, case: Case, expected: str) -> None:
    assert_refused_untouched(tmp_path, case, expected)


def test_readme_example_output_onto_the_input_keeps_the_input(tmp_path: Path) -> None:
    # cp clip v.mp4 && python -m stream --source v.mp4 --output v.mp4
    video = _copy(tmp_path)
    original = video.read_bytes()
    result = subprocess.run([sys.executable, "-m", "stream", "--source", "v.mp4", "--output", "v.mp4"],
                            cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 2, result.stderr
    assert "is the input itself" in error_line(result.stderr)
    assert video.read_bytes() == original


def test_models_fetch_into_an_unusable_cache_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "cache_file"
    blocker.write_text("x")
    result = subprocess.run([sys.executable, "-m", "models", "fetch", "cydral_age"],
                            cwd=Path(__file__).resolve().parents[2], env=child_env(STREAM_MODELS_DIR=str(blocker)),
                            capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 2, result.stderr
    assert "cannot be used" in error_line(result.stderr)


def test_a_damaged_image_in_a_folder_is_skipped_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    _copy(folder, "1_good.jpg", IMAGE)
    (folder / "2_damaged.jpg").write_bytes(shared_file("videos", IMAGE).read_bytes()[:500])
    (folder / "3_text.png").write_text("not an image")
    _copy(folder, "4_good.jpg", IMAGE)
    (folder / "5_animation.gif").write_bytes(b"GIF89a")  # not a still format: left out, and said so
    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    result = run_cli("--source", str(folder), "--events", str(events), "--summary", str(summary), timeout=120)
    assert result.returncode == 0, result.stderr
    assert [r["image"] for r in read_events(events)] == ["1_good.jpg", "4_good.jpg"]
    assert "skipped 2 unreadable image(s) of 4" in result.stderr
    assert "1 file(s) that are not bmp/jpeg/jpg/png/webp images left out (.gif)" in result.stderr
    import json

    assert json.loads(summary.read_text())["inputs_skipped"] == 2


def test_several_cameras_summarise_every_camera_s_skipped_images(tmp_path: Path) -> None:
    """With several sources the summary adds up the images each folder skipped (it used to say 0)."""
    folders = []
    for name, damaged in (("a", 1), ("b", 2)):
        folder = tmp_path / name
        folder.mkdir()
        _copy(folder, "0_good.jpg", IMAGE)
        for index in range(damaged):
            (folder / f"{index + 1}_damaged.jpg").write_bytes(b"not a jpeg")
        folders += ["--source", f"{name}={folder}"]
    summary = tmp_path / "s.json"
    result = run_cli(*folders, "--summary", str(summary), timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    assert json.loads(summary.read_text())["inputs_skipped"] == 3


def test_a_folder_of_only_damaged_images_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_text("not an image")
    result = run_cli("--source", str(folder), timeout=90)
    assert result.returncode == 2, result.stderr
    assert "no readable image" in error_line(result.stderr)


def test_a_rotated_phone_clip_is_processed_upright(tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("the ffmpeg CLI is not installed (apt-get install ffmpeg)")
    landscape = shared_file("videos", "woman_1280x720.mp4")
    sideways, phone = tmp_path / "sideways.mp4", tmp_path / "phone.mp4"
    # Stored turned 90 degrees clockwise, with a display matrix saying to turn it back, as phones record.
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(landscape), "-t", "1", "-vf", "transpose=1", "-c:v",
                    "libx264", "-preset", "ultrafast", str(sideways)], check=True, timeout=120)
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(sideways), "-c", "copy", "-metadata:s:v", "rotate=90",
                    str(phone)], check=True, timeout=60)
    out, events = tmp_path / "out.mp4", tmp_path / "e.jsonl"
    result = run_cli("--source", str(phone), "--output", str(out), "--events", str(events), timeout=120)
    assert result.returncode == 0, result.stderr
    import av

    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)  # upright, as displayed
    records = read_events(events)
    with_faces = sum(1 for r in records if r["faces"])
    assert with_faces >= 0.9 * len(records), f"faces on {with_faces} of {len(records)} frames"
    assert all(r["faces"][0]["box_xyxy"][2] > r["faces"][0]["box_xyxy"][0] for r in records if r["faces"])


# --------------------------------------------------------------------------------------------------
# Redaction: any password a camera accepts, raw or percent-encoded
# --------------------------------------------------------------------------------------------------

PASSWORDS = ["p@ss", "a:b:c", "sl/ash", "ha#sh", "que?ry", "per%cent", "p%40ss%2Fw%23d%3F", "all@:/#?%x", "x y"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("scheme", ["rtsp", "RTSPS", "http", "https"])
def test_redaction_hides_every_password(password: str, scheme: str) -> None:
    url = f"{scheme}://admin:{password}@cam.example:554/live?channel=1"
    shown = redact_url(url)
    assert shown.endswith("@cam.example:554/live?channel=1") and shown.startswith(f"{scheme}://***@")
    from urllib.parse import unquote

    message = f"backend says: {url} failed; user admin password {unquote(password)}"
    SecretFilter.add_url(url)
    cleaned = SecretFilter.scrub_text(message)
    for secret in url_secrets(url):
        assert secret not in cleaned
    assert password not in cleaned and unquote(password) not in cleaned


@contextmanager
def _filtered_log(name: str) -> Iterator[tuple[logging.Logger, list[str]]]:
    """A logger whose records are formatted through a handler carrying :class:`SecretFilter` (as the CLI's are)."""
    handler = logging.StreamHandler()
    records: list[str] = []
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    handler.addFilter(SecretFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, records
    finally:
        logger.removeHandler(handler)


def test_the_log_filter_scrubs_every_level() -> None:
    url = "rtsp://admin:Zq9@x/y#z@cam:554/s"
    SecretFilter.add_url(url)
    with _filtered_log("test.redaction") as (logger, records):
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            logger.log(level, "opening %s (password Zq9@x/y#z)", url)
    assert len(records) == 4
    assert all("Zq9" not in r and "y#z" not in r for r in records), records


def test_an_at_sign_in_the_path_is_not_user_info() -> None:
    assert redact_url("http://example.com/a@b.m3u8") == "http://example.com/a@b.m3u8"


def test_events_to_a_device_are_written_and_no_lock_file_is_left_there() -> None:
    result = run_cli("--source", _clip(), "--events", "/dev/null", "--max-frames", "3", timeout=90)
    assert result.returncode == 0, result.stderr
    assert not Path("/dev/.null.lock").exists()


def test_colons_in_file_names_are_files_not_protocols(tmp_path: Path) -> None:
    # FFmpeg reads 'clip:1.mp4' as protocol 'clip'; the CLI must read and write such names as files.
    source = _copy(tmp_path, "clip:1.mp4")
    out = tmp_path / "run:1.mp4"
    result = run_cli("--source", str(source), "--output", str(out), "--max-frames", "5", timeout=90)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob("http*")) and out.stat().st_size > 0


@pytest.mark.parametrize("command", [["-m", "models", "fetch", "cydral_age"], ["-m", "stream", "--source", "CLIP"]])
def test_a_read_only_model_cache_is_one_line(tmp_path: Path, command: list[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    cache = tmp_path / "ro"
    cache.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(cache)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        args = [_clip() if a == "CLIP" else a for a in command]
        result = subprocess.run([sys.executable, *args], cwd=Path(__file__).resolve().parents[2],
                                env=child_env(STREAM_MODELS_DIR=str(cache)), capture_output=True, text=True,
                                timeout=120, check=False)
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)
    assert result.returncode == 2, result.stderr
    assert "Read-only file system" in error_line(result.stderr)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:secret@cam/live", {"user:secret", "secret"}),  # the whole user info and the password
        ("rtsp://adm%40in:p%40ss@cam/live", {"adm%40in:p%40ss", "adm@in:p@ss", "p%40ss", "p@ss"}),  # raw, decoded
        ("rtsp://u:pw@cam/live", {"u:pw"}),  # a 2-character password alone would blank ordinary words
        # Secret query values of 3 characters and more; other parameters, short values and bare keys are not.
        ("rtsp://cam/live?channel=123&token=abc&pwd=ab&password#frag", {"abc"}),
        ("https://x/live?api_key=a%2Fb%3Dc", {"a%2Fb%3Dc", "a/b=c"}),
        ("rtsp://@cam/live", set()),  # an empty user info is nothing to hide (and "" would blank everything)
        ("videos/clip@2x.mp4", set()),  # not a URL
    ],
)
def test_url_secrets_are_exactly_the_strings_to_hide(url: str, expected: set[str]) -> None:
    assert url_secrets(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [("rtsp://u:p@cam/x", True), ("rtsp://token@cam/x", True), ("rtsp://cam/x", False), ("clips/a@b.mp4", False),
     ("http://example.com/a@b.m3u8", False)],
)
def test_has_credentials(url: str, expected: bool) -> None:
    assert has_credentials(url) is expected


def test_scrub_hides_the_url_and_the_whole_user_info_before_its_parts() -> None:
    url = "rtsp://viewer:s3cret@cam.example/live"
    message = f"open {url} failed; login viewer:s3cret refused; password s3cret"
    # The longest secret first: replacing the password first would leave "viewer:***", naming the user.
    assert scrub(message, url) == "open rtsp://***@cam.example/live failed; login *** refused; password ***"
    assert scrub("camera said no", "rtsp://@cam/live") == "camera said no"
    SecretFilter.add_url("rtsp://watcher:Qw3rty@cam/x")
    assert SecretFilter.scrub_text("login watcher:Qw3rty refused") == "login *** refused"


def test_the_log_filter_scrubs_a_logged_exception() -> None:
    url = "rtsp://viewer:Kx7-tr@cam.example/live"
    SecretFilter.add_url(url)
    with _filtered_log("test.redaction.exception") as (logger, records):
        try:
            raise ConnectionError(f"cannot open {url}")
        except ConnectionError:
            logger.exception("camera down")
    assert len(records) == 1
    assert "camera down" in records[0] and "ConnectionError: cannot open" in records[0]  # the traceback is there
    assert "Kx7-tr" not in records[0] and "viewer" not in records[0]


def test_install_puts_one_redaction_filter_on_each_root_handler() -> None:
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        SecretFilter.install()
        SecretFilter.install()  # the CLI may install it more than once: still one filter per handler
        assert sum(isinstance(f, SecretFilter) for f in handler.filters) == 1
    finally:
        root.removeHandler(handler)


# Raw reserved characters that split a URL early ('/', '?', '#') or make urlsplit fail ('[', ']').
RAW_PASSWORDS = ["Kw3/Vx8", "Kw3?Vx8", "Kw3#Vx8", "Kw3[Vx8", "Kw3]Vx8", "Kw3@Vx8", "Kw3 Vx8", "Kw3%Vx8", "Kw3äVx8"]


@pytest.mark.parametrize("password", RAW_PASSWORDS)
@pytest.mark.parametrize("path", ["/cam", ""])
def test_a_camera_named_after_its_url_never_holds_the_password(password: str, path: str) -> None:
    from stream.config import camera_name

    name = camera_name(f"rtsp://admin:{password}@10.0.0.5:554{path}")
    assert name == ("cam" if path else "10.0.0.5")


@pytest.mark.parametrize("password", RAW_PASSWORDS)
def test_an_mqtt_url_with_a_raw_reserved_character_password_parses(password: str) -> None:
    from stream.sinks.mqtt import parse_mqtt_url

    settings = parse_mqtt_url(f"mqtt://cam:{password}@broker.local:1884/faces")
    assert (settings.host, settings.port, settings.prefix) == ("broker.local", 1884, "faces")
    assert (settings.username, settings.password) == ("cam", password)


def test_a_config_file_camera_password_is_never_shown(tmp_path: Path) -> None:
    config = tmp_path / "cameras.yaml"
    url = "rtsp://admin:Kw3#/?Vx8@127.0.0.1:9/cam"
    config.write_text(f"sources:\n  - url: '{url}'\n  - url: '{url}'\n")  # the same camera twice: refused
    result = run_cli("--config", str(config), log_level="DEBUG")
    assert result.returncode == 2, result.stderr
    assert "listed twice" in error_line(result.stderr)
    assert "Kw3" not in result.stderr and "Vx8" not in result.stderr
