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
