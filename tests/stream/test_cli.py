"""Bad inputs through the real CLI: exit code 2 and one ``error: ...`` line naming the problem, no traceback.

Each case runs ``python -m stream`` as a child process, as a user would. Warnings logged before the
error are allowed (``--log-level WARNING``); the ``error:`` line is the only one of its kind and the last.

Truncated videos: a file is processed as far as it decodes. When no frame decodes at all (an mp4
cut before its index, which sits at the end of most files, or cut right after it) the run fails with
exit 2; when a prefix decodes (a "faststart" mp4, index first, cut in the middle) the run processes
those frames, logs a ``truncated file?`` warning and exits 0: a damaged recording still yields the
analysis of what it holds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import shared_file
from tests.stream import test_sources_rtsp as rtsp
from tests.support.cli_util import child_env, error_line, free_port, read_events, run_cli

# The real RTSP test server (GStreamer) and its fixtures, shared with the live-source tests.
rtsp_ready = rtsp.rtsp_ready
start_server = rtsp.start_server

CLIP = "expressive_woman_480.mp4"
NO_MODELS = ("--set", "models.download=false", "--set", "models.local_dirs=[]")


def _clip() -> str:
    return str(shared_file("videos", CLIP))


def _faststart_prefix(tmp_path: Path, frames: int = 60) -> bytes:
    """The first ``frames`` frames of the clip remuxed with the mp4 index first (``movflags=faststart``)."""
    import av

    out = tmp_path / "faststart.mp4"
    with av.open(_clip()) as source, av.open(str(out), "w", options={"movflags": "faststart"}) as target:
        video = source.streams.video[0]
        stream = target.add_stream_from_template(video)
        muxed = 0
        for packet in source.demux(video):
            if packet.dts is None:  # the demuxer's final flush packet
                continue
            packet.stream = stream
            target.mux(packet)
            muxed += 1
            if muxed == frames:
                break
    return out.read_bytes()


# Each case: (tmp_path) -> (CLI arguments, extra environment); the run must exit 2 with an error matching.
Case = Callable[[Path], tuple[list[str], dict[str, str]]]


def _write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _missing_file(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return ["--source", str(tmp / "nope.mp4")], {}


def _text_as_mp4(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return ["--source", str(_write(tmp / "notes.mp4", "these are notes, not a video\n"))], {}


def _first_half(tmp: Path) -> tuple[list[str], dict[str, str]]:
    data = Path(_clip()).read_bytes()
    return ["--source", str(_write(tmp / "half.mp4", data[: len(data) // 2]))], {}


def _index_only(tmp: Path) -> tuple[list[str], dict[str, str]]:
    data = _faststart_prefix(tmp)
    cut = data.index(b"mdat") + 200  # the whole index, 200 bytes of the first frame
    return ["--source", str(_write(tmp / "index_only.mp4", data[:cut]))], {}


def _clip_with(*args: str) -> Case:
    def case(tmp: Path) -> tuple[list[str], dict[str, str]]:
        return ["--source", _clip(), *args], {}

    return case


def _no_models(tmp: Path) -> tuple[list[str], dict[str, str]]:
    empty = tmp / "models"
    empty.mkdir()
    return ["--source", _clip(), *NO_MODELS], {"STREAM_MODELS_DIR": str(empty)}


def _corrupt_model(tmp: Path) -> tuple[list[str], dict[str, str]]:
    from models.registry import get_spec

    cache = tmp / "models"
    cache.mkdir()
    # Any bytes under the model's file name: the registry's sha256 cannot match.
    _write(cache / get_spec("retinaface").file_name, b"\x08\x07 not the onnx file you are looking for" * 100)
    return ["--source", _clip(), "--detector", "retinaface", *NO_MODELS], {"STREAM_MODELS_DIR": str(cache)}


def _output_under_a_file(option: str, name: str) -> Case:
    def case(tmp: Path) -> tuple[list[str], dict[str, str]]:
        blocker = _write(tmp / "a_file", "x")  # a folder path through a file: unwritable, even for root
        return ["--source", _clip(), option, str(blocker / name), "--max-frames", "2"], {}

    return case


def _webcam(tmp: Path) -> tuple[list[str], dict[str, str]]:
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera at /dev/video0")
    return ["--source", "0"], {}


CASES: list[tuple[str, Case, str]] = [
    ("missing file", _missing_file, r"source '.*nope\.mp4' not found"),
    ("text file named .mp4", _text_as_mp4, r"cannot open video file '.*notes\.mp4': not a video"),
    ("truncated mp4, index lost", _first_half, r"cannot open video file '.*half\.mp4'"),
    ("truncated mp4, no frame", _index_only, r"cannot decode any frame of video file '.*index_only\.mp4'.*truncated"),
    (
        "unreachable rtsp",
        lambda tmp: (["--source", f"rtsp://127.0.0.1:{free_port()}/x", "--set", "source.open_timeout_s=2"], {}),
        r"cannot open stream 'rtsp://127\.0\.0\.1:\d+/x': connection refused",
    ),
    ("unknown detector", _clip_with("--detector", "nope"), r"unknown detector 'nope'; valid detectors: auto, "),
    (
        "unknown classifier",
        _clip_with("--set", "classifier.age_model=nope"),
        r"classifier: unknown model 'nope'; known models: ",
    ),
    (
        "a detector as classifier",
        _clip_with("--set", "classifier.age_model=retinaface"),
        r"model 'retinaface' is a face_detector model, not a classifier; classifiers: cydral_age, cydral_gender, ",
    ),
    ("unknown config section", _clip_with("--set", "nope.x=1"), r"unknown config section 'nope'; valid sections"),
    ("unknown config key", _clip_with("--set", "detector.nope=1"), r"unknown key detector\.nope; valid keys"),
    (
        "config value out of range",
        _clip_with("--set", "detector.score_threshold=5"),
        r"detector\.score_threshold must be in \[0\.0, 1\.0\], got 5",
    ),
    (
        "config value of the wrong type",
        _clip_with("--set", "scheduler.max_faces_per_frame=many"),
        r"scheduler\.max_faces_per_frame must be an integer",
    ),
    (
        "missing config file",
        lambda tmp: (["--source", _clip(), "--config", str(tmp / "c.yaml")], {}),
        r"config file .*c\.yaml not found",
    ),
    ("missing model", _no_models, r"model '\w+' is not cached; run `python -m models fetch \w+`"),
    ("corrupt model", _corrupt_model, r"model 'retinaface': cached file .* has sha256 \w+…, expected \w+…"),
    ("unwritable video output", _output_under_a_file("--output", "x.mp4"), r"video output '.*a_file/x\.mp4'"),
    ("unwritable events output", _output_under_a_file("--events", "e.jsonl"), r"events output '.*a_file/e\.jsonl'"),
    ("unwritable summary", _output_under_a_file("--summary", "s.json"), r"summary output '.*a_file/s\.json'"),
    ("output of the wrong kind", _clip_with("--output", "out.txt"), r"--output 'out\.txt': for a video source"),
    ("--show without a display", _clip_with("--show"), r"--show needs a display: none found \(DISPLAY is unset\)"),
    ("no camera", _webcam, r"cannot open webcam 'camera 0': no camera at index 0"),
    ("--max-frames 0", _clip_with("--max-frames", "0"), r"--max-frames must be >= 1, got 0"),
    ("unknown option", _clip_with("--frobnicate"), r"unrecognized arguments: --frobnicate \(see .*--help"),
    ("bad --device", _clip_with("--device", "tpu"), r"argument --device: invalid choice: 'tpu'"),
    (
        "commercial profile, non-commercial classifier",
        _clip_with("--profile", "commercial", "--set", "classifier.age_model=utk_multihead"),
        r"^error: model 'utk_multihead' is not licensed for commercial use \(Project weights; non-commercial .*\); "
        r"the commercial profile refuses it",
    ),
    (
        "default profile, non-commercial detector",
        _clip_with("--detector", "scrfd_500m"),
        r"^error: model 'scrfd_500m' is not licensed for commercial use \(InsightFace model zoo: non-commercial",
    ),
    ("bad --profile", _clip_with("--profile", "cheap"), r"argument --profile: invalid choice: 'cheap'"),
]


@pytest.mark.parametrize(("case", "expected"), [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_bad_input_exits_2_with_one_error_line(tmp_path: Path, case: Case, expected: str) -> None:
    args, env = case(tmp_path)
    result = run_cli(*args, env=child_env(**env))
    assert result.returncode == 2, result.stderr
    line = error_line(result.stderr)
    assert re.search(expected, line), line
    assert result.stdout == ""


def test_nothing_is_left_behind_by_a_failed_run(tmp_path: Path) -> None:
    # Outputs are probed before the models load; a run that then fails removes the files it created.
    out, summary = tmp_path / "out.mp4", tmp_path / "summary.json"
    result = run_cli(
        "--source",
        _clip(),
        "--output",
        str(out),
        "--summary",
        str(summary),
        "--detector",
        "retinaface",
        *NO_MODELS,
        env=child_env(STREAM_MODELS_DIR=str(tmp_path)),
    )
    assert result.returncode == 2 and "not cached" in error_line(result.stderr)
    assert not out.exists() and not summary.exists()


def test_truncated_video_with_a_decodable_prefix_is_processed(tmp_path: Path) -> None:
    data = _faststart_prefix(tmp_path, frames=60)
    source = _write(tmp_path / "cut.mp4", data[: len(data) // 2])
    events = tmp_path / "events.jsonl"
    result = run_cli("--source", str(source), "--events", str(events))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    assert re.search(r"ended after \d+ of 60 frames \(truncated file\?\)", result.stderr), result.stderr
    decoded = len(read_events(events))
    assert 0 < decoded < 60


def test_wrong_rtsp_credentials_fail_fast_without_leaking_the_password(
    start_server: Callable[..., rtsp.RtspServer], tmp_path: Path
) -> None:
    server = start_server(user="alice", password="Right-Pw-71")
    started = time.monotonic()
    # DEBUG: every log line the run writes is checked for the password, not only the error.
    result = run_cli(
        "--source",
        server.url("alice:Wr0ng-Pw-42"),
        "--set",
        "source.open_timeout_s=2",
        "--events",
        str(tmp_path / "e.jsonl"),
        log_level="DEBUG",
    )
    assert time.monotonic() - started < 15
    assert result.returncode == 2, result.stderr
    line = error_line(result.stderr)
    assert re.search(r"cannot open stream 'rtsp://\*\*\*@127\.0\.0\.1:\d+/stream': authentication failed", line), line
    assert "Wr0ng-Pw-42" not in result.stderr + result.stdout
    assert "Right-Pw-71" not in result.stderr + result.stdout


def test_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m stream")
    for option in ("--source", "--output", "--events", "--summary", "--show", "--set", "--max-frames"):
        assert option in result.stdout
    assert "130" in result.stdout and "143" in result.stdout  # the exit codes are documented
