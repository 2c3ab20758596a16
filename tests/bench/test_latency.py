"""The latency benchmark's pieces that need no camera: the stamp codec, the outage plan, the drift verdict."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from bench.latency import BLOCK, COLUMNS, MARGIN, ROWS, parse_outages, read_stamp, summarize_latency


def _stamped(value_ms: int, width: int = 1280, height: int = 720) -> np.ndarray:
    """A BGR frame stamped as bench/stamped_rtsp_server.py does (that module needs gi, so it is mirrored)."""
    check = (sum(value_ms.to_bytes(4, "big")) & 0xFF) ^ 0x5A
    word = (value_ms << 8) | check
    bits = [(word >> (39 - i)) & 1 for i in range(COLUMNS * ROWS)]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    x0, y0 = width - MARGIN - COLUMNS * BLOCK, height - MARGIN - ROWS * BLOCK
    for i, bit in enumerate(bits):
        row, column = divmod(i, COLUMNS)
        y, x = y0 + row * BLOCK, x0 + column * BLOCK
        image[y : y + BLOCK, x : x + BLOCK] = 235 if bit else 16
    return image


@pytest.mark.parametrize("value", [0, 1, 123_456_789, 0xFFFFFFFF])
def test_stamp_survives_lossy_compression(value: int) -> None:
    ok, jpeg = cv2.imencode(".jpg", _stamped(value), [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok
    assert read_stamp(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == value


def test_covered_or_missing_stamp_reads_as_none() -> None:
    image = _stamped(987_654)
    image[-40:-20, -200:-100] = 255  # a label drawn over part of it
    assert read_stamp(image) is None
    assert read_stamp(np.zeros((720, 1280, 3), np.uint8)) is None  # check byte 0x5A ^ 0 != 0
    assert read_stamp(np.zeros((20, 20, 3), np.uint8)) is None  # too small to hold one


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kill:3,freeze:12", [("kill", 3.0), ("freeze", 12.0)]),
        ("none", []),
        ("", []),
        ("freeze:0.5", [("freeze", 0.5)]),
        ("kill", ValueError),
        ("kill:0", ValueError),
        ("pause:3", ValueError),
        ("kill:x", ValueError),
    ],
)
def test_parse_outages(text: str, expected: object) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError, match="kill:SECONDS or freeze:SECONDS"):
            parse_outages(text)
    else:
        assert parse_outages(text) == expected


def _samples(
    latency_ms: Callable[[float], float], seconds: float = 300.0, fps: float = 10.0
) -> list[tuple[float, float, float]]:
    times = np.arange(0.0, seconds, 1.0 / fps)
    return [(float(t), latency_ms(float(t)), 40.0) for t in times]


def test_steady_latency_does_not_grow_and_warmup_is_apart() -> None:
    samples = _samples(lambda t: 1000.0 if t < 2 else 50.0)
    summary = summarize_latency(samples, started=0.0, ended=300.0, warmup_s=5.0)
    assert summary["window_s"] == 60.0
    assert summary["warmup"]["max_ms"] == 1000.0
    assert summary["first_window"]["p50_ms"] == summary["last_window"]["p50_ms"] == 50.0
    assert summary["first_window"]["process_p50_ms"] == 10.0
    assert summary["grows"] is False and abs(summary["drift_ms_per_min"]) < 0.1


def test_latency_that_builds_up_is_reported_as_growing() -> None:
    summary = summarize_latency(_samples(lambda t: 50.0 + t), started=0.0, ended=300.0, warmup_s=5.0)
    assert summary["grows"] is True
    assert summary["drift_ms_per_min"] == pytest.approx(60.0, abs=0.5)
    assert summary["last_window"]["p50_ms"] > summary["first_window"]["p50_ms"] + 200
