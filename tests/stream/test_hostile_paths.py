"""More hostile inputs (issue 15): outputs onto the other files a run reads (the config file, the images of an input
folder, the model files), bad model names, decompression bombs, rotated clips, and the bad arguments of every
command line (stream.serve, stream.report, stream.aggregate, models). Each refusal is exit 2 and one ``error:``
line, and nothing that was there is changed. tests/stream/test_hostile_inputs.py has the first cases."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stream.config import SourceOptions
from tests.conftest import REPO, shared_file
from tests.stream.test_hostile_inputs import assert_refused_untouched
from tests.stream.test_permissions import as_unprivileged
from tests.support.cli_util import child_env, error_line

CLIP = "talking_man_512.mp4"
IMAGE = "multiface.jpg"

Case = Callable[[Path], tuple[list[str], dict[str, str]]]


def _clip() -> str:
    return str(shared_file("videos", CLIP))


def _config(tmp: Path, text: str = "detector:\n  interval: 1\n") -> Path:
    path = tmp / "cfg.yaml"
    path.write_text(text)
    return path


def _folder(tmp: Path) -> Path:
    folder = tmp / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(shared_file("videos", IMAGE), folder / name)
    return folder


def _onto_config(flag: str, via_link: bool) -> Case:
    def case(tmp: Path) -> tuple[list[str], dict[str, str]]:
        config = _config(tmp)
        target = config
        if via_link:
            (tmp / "here").symlink_to(tmp)
            target = tmp / "here" / config.name
        return ["--source", _clip(), "--config", str(config), flag, str(target)], {}

    return case


def _camera_events_onto_its_config(tmp: Path) -> tuple[list[str], dict[str, str]]:
    config = tmp / "cams.yaml"
    config.write_text(f"sources:\n  - name: a\n    url: {_clip()}\n    outputs: {{events: {config}}}\n")
    return ["--config", str(config)], {}


def _onto_folder_image(flag: str) -> Case:
    def case(tmp: Path) -> tuple[list[str], dict[str, str]]:
        folder = _folder(tmp)
        return ["--source", str(folder), flag, str(tmp / "images" / "." / "b.jpg")], {}

    return case


def _onto_model_file(flag: str, where: str) -> Case:
    def case(tmp: Path) -> tuple[list[str], dict[str, str]]:
        models = tmp / where
        models.mkdir()
        (models / "model.onnx").write_bytes(b"weights")  # refused before any model loads: its content is not read
        env = {"STREAM_MODELS_DIR": str(models)} if where == "cache" else {"STREAM_LOCAL_MODELS": str(models)}
        return ["--source", _clip(), flag, str(models / "model.onnx")], env

    return case


def _png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid PNG of ``side`` x ``side`` black pixels: a few hundred kB that decode to ``side**2 * 3`` bytes."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def _sparse_jpg(tmp: Path) -> tuple[list[str], dict[str, str]]:
    path = tmp / "huge.jpg"
    with open(path, "wb") as handle:
        handle.truncate(600 << 20)  # sparse: 600 MB long, no disk used
    return ["--source", str(path)], {}


def _nul_source(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return ["--config", str(_config(tmp, 'sources:\n  - url: "a\\0b.mp4"\n'))], {}


CASES: list[tuple[str, Case, str]] = [
    ("events onto the config", _onto_config("--events", False), r"--events .* is the config file"),
    ("summary onto the config via a linked folder", _onto_config("--summary", True), r"is the config file"),
    ("a camera's events onto the config", _camera_events_onto_its_config, r"a: events .* is the config file"),
    ("events onto an image of the input folder", _onto_folder_image("--events"), r"is an image of the input folder"),
    ("summary onto an image of the input folder", _onto_folder_image("--summary"), r"is an image of the input folder"),
    ("events onto a cached model", _onto_model_file("--events", "cache"), r"is a model file"),
    ("summary onto a local model", _onto_model_file("--summary", "local"), r"is a model file"),
    ("a NUL in a source", _nul_source, r"NUL character"),
    ("unknown embedding model", lambda tmp: (["--source", _clip(), "--set", "identity.embedding_model=nope"], {}),
     r"identity\.embedding_model: unknown model 'nope'"),
    ("a decompression bomb", lambda tmp: (["--source", str(_png_bomb(tmp / "bomb.png"))], {}), r"100 megapixels"),
    ("a 600 MB .jpg", _sparse_jpg, r"larger than 512 MiB"),
    ("summary to -", lambda tmp: (["--source", _clip(), "--summary", "-"], {}), r"--summary -: the summary is a file"),
    ("an empty --detector", lambda tmp: (["--source", _clip(), "--detector", ""], {}), r"detector\.name must be"),
    ("an RTSP output without a host", lambda tmp: (["--source", _clip(), "--output", "rtsp://u:pw@/x"], {}),
     r"--output 'rtsp://\*\*\*@/x' names no server"),
]


@pytest.mark.parametrize(("case", "expected"), [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_hostile_input_exits_2_with_one_error_line(tmp_path: Path, case: Case, expected: str) -> None:
    assert_refused_untouched(tmp_path, case, expected)


def _module(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["stream.serve", "--port", "0", "--set", "identity.embedding_model=nope"], r"unknown model 'nope'"),
        (["stream.serve", "--port", "0", "--detector", "nope"], r"unknown detector 'nope'"),
        (["stream.serve", "--set", "serve.port=" + "[" * 5000], r"nested more than"),
        (["stream.report", "/dev/zero"], r"/dev/zero is not a regular file"),
        (["stream.aggregate", "--broker", "mqtts://127.0.0.1:1/p", "--ca", "/nonexistent/ca.pem", "--timeout", "1"],
         r"--ca /nonexistent/ca\.pem: cannot load it as a CA certificate file"),
        (["stream.aggregate", "--broker", "mqtt://127.0.0.1:1/p", "--summary", "/tmp/x/s.json", "--store",
          "/tmp/x/../x/s.json", "--timeout", "1"], r"--summary and --store name the same file"),
        (["models", "list", "extra"], r"unrecognized arguments: extra"),
        (["models"], r"arguments are required"),
        (["models", "--config", "/", "list"], r"not a regular file"),
    ],
    ids=["serve-embedding", "serve-detector", "serve-deep-set", "report-device", "aggregate-ca",
         "aggregate-same-outputs", "models-extra",
         "models-no-command", "models-config-folder"],
)
def test_other_command_lines_refuse_in_one_line(args: list[str], expected: str) -> None:
    result = _module(*args)
    assert result.returncode == 2, result.stderr
    assert re.search(expected, error_line(result.stderr)), result.stderr


def test_aggregate_refuses_a_store_that_is_not_text(tmp_path: Path) -> None:
    store = tmp_path / "store.jsonl"
    shutil.copy(shared_file("videos", IMAGE), store)
    original = store.read_bytes()
    result = _module("stream.aggregate", "--broker", "mqtt://127.0.0.1:1/p", "--store", str(store), "--timeout", "1")
    assert result.returncode == 2, result.stderr
    assert re.search(r"--store .* is not a text \(JSON Lines\) file", error_line(result.stderr))
    assert store.read_bytes() == original


def test_report_refuses_to_write_over_its_input(tmp_path: Path) -> None:
    # `python -m stream.report counts.csv --out .` would replace the events it reads with the table.
    events = tmp_path / "counts.csv"
    events.write_text('{"type": "frame", "frame": 0, "timestamp": 0.0, "faces": []}\n')
    original = events.read_bytes()
    result = _module("stream.report", str(events), "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "is the input" in error_line(result.stderr)
    assert events.read_bytes() == original


# --------------------------------------------------------------------------------------------------
# Rotation metadata: frames come out as a player (FFmpeg) displays them, whatever the angle and container
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def landscape_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg CLI is not installed (apt-get install ffmpeg)")
    clip = tmp_path_factory.mktemp("rotation") / "base.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(shared_file("videos", "woman_1280x720.mp4")), "-t",
                    "0.2", "-an", "-c:v", "libx264", "-preset", "ultrafast", str(clip)], check=True, timeout=120)
    return clip


def _displayed_first_frame(path: Path) -> np.ndarray:
    import cv2

    ppm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "image2pipe", "-vcodec",
                          "ppm", "-"], capture_output=True, check=True, timeout=60).stdout
    return cv2.imdecode(np.frombuffer(ppm, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("container", ["mp4", "mov"])
@pytest.mark.parametrize("rotation", [90, 180, 270, -90])
def test_rotated_video_frames_are_as_displayed(landscape_clip: Path, tmp_path: Path, rotation: int,
                                               container: str) -> None:
    from stream.sources import open_source

    rotated = tmp_path / f"rotated.{container}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(landscape_clip), "-c", "copy", "-metadata:s:v",
                    f"rotate={rotation}", str(rotated)], check=True, timeout=60)
    displayed = _displayed_first_frame(rotated)
    with open_source(str(rotated), options=SourceOptions()) as source:
        image = next(iter(source)).image
    assert image.shape == displayed.shape
    assert image.shape[:2] == ((720, 1280) if rotation == 180 else (1280, 720))
    assert float(np.abs(image.astype(int) - displayed.astype(int)).mean()) < 2.0


# --------------------------------------------------------------------------------------------------
# Images a folder run skips (and counts) rather than stopping
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_an_unreadable_image_in_a_folder_is_skipped_and_counted() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="images-", dir="/tmp"))  # tmp_path sits under a root-only folder
    scratch.chmod(0o777)
    try:
        for name in ("1.jpg", "2.jpg", "3.jpg"):
            shutil.copy(shared_file("videos", IMAGE), scratch / name)
            os.chmod(scratch / name, 0o644)
        os.chmod(scratch / "2.jpg", 0o000)

        def check(folder: Path) -> None:
            from stream.sources import open_source

            with open_source(str(folder), options=SourceOptions()) as source:
                names = [frame.name for frame in source]
                assert names == ["1.jpg", "3.jpg"] and source.inputs_skipped == 1

        as_unprivileged(check, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
