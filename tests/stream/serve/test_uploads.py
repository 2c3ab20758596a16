"""Recognising uploads from their bytes: kinds, declared image sizes (read without decoding)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from stream.serve.uploads import image_size, sniff


@pytest.mark.parametrize(("ext", "params", "fmt"), [
    (".jpg", [], "JPEG"), (".png", [], "PNG"), (".bmp", [], "BMP"), (".webp", [], "WebP"),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "WebP"),  # lossless: the VP8L header
])
def test_kind_and_size_are_read_from_the_header(ext, params, fmt):
    image = np.random.default_rng(0).integers(0, 255, (123, 457, 3), np.uint8)
    ok, encoded = cv2.imencode(ext, image, params)
    assert ok
    data = encoded.tobytes()
    assert sniff(data) == ("image", fmt)
    assert image_size(data) == (457, 123)


@pytest.mark.parametrize(("data", "expected"), [
    (b"\x00\x00\x00\x20ftypisom", ("video", "MP4/MOV")),
    (b"GIF89a", None),
    (b"<svg xmlns=", None),
    (b"", None),
])
def test_other_kinds(data, expected):
    assert sniff(data) == expected


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def test_a_decompression_bomb_is_refused_before_decoding(live_server):
    reply = live_server.request("POST", "/api/analyze", png_header(40000, 40000) + b"\x00" * 64,
                                {"Content-Type": "image/png"})
    assert reply.status == 413
    assert "40000x40000 pixels is larger than 100 megapixels" in reply.json()["detail"]


def test_uploads_are_never_written_to_disk(live_server, tmp_path):
    """Every file the server opens for writing while it takes a 2 MB photo (multipart: Starlette's own parser would
    spool it to a temporary file) and a clip, as the kernel sees it (strace on the server's threads): none."""
    import shutil
    import signal
    import subprocess
    import time

    from tests.stream.serve.conftest import CLIP, PHOTO

    strace = shutil.which("strace")
    if strace is None or live_server.pid is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    log = tmp_path / "strace.log"
    tracer = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=open,openat,creat,rename,renameat,renameat2,link,"
                               "linkat,mkdir,mkdirat", "-o", str(log), "-p", str(live_server.pid)],
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # attached to every thread
        if tracer.poll() is not None:
            pytest.skip(f"strace cannot attach here: {tracer.stderr.read().strip()}")
        photo = cv2.imread(str(PHOTO))
        ok, png = cv2.imencode(".png", photo)  # ~2 MB: over Starlette's 1 MB in-memory limit for form parts
        assert ok and png.nbytes > 1_100_000
        assert live_server.upload("/api/analyze", png.tobytes(), filename="big.png").status == 200
        assert live_server.request("POST", "/api/analyze", CLIP.read_bytes(), {"Content-Type": "video/mp4"}).status \
            == 200
    finally:
        tracer.send_signal(signal.SIGINT)  # detaches; the server goes on
        tracer.wait(timeout=10)
    calls = log.read_text().splitlines()
    writes = [line for line in calls if ("O_WRONLY" in line or "O_RDWR" in line or "O_CREAT" in line
                                         or "creat(" in line or "rename" in line or "link" in line or "mkdir" in line)
              and "/dev/" not in line and "/proc/" not in line]
    assert writes == [], writes[:10]
