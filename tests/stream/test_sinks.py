"""Sinks: real encoding and decoding of small synthetic frames, probed with PyAV."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stream.sinks import (
    EventsSink,
    ImageFileSink,
    ImageFolderSink,
    RtspSink,
    Sink,
    SinkError,
    SinkOptions,
    SummarySink,
    VideoSink,
    any_quit_requested,
    face_records,
    get_sink_class,
    open_sinks,
    output_kind,
)
from stream.sinks.base import fit_to_size, pad_to_even
from stream.sinks.images import output_name
from stream.sources import redact_url
from stream.types import AGE_GROUP_PROBS, AGE_GROUPS, AGE_YEARS, LABEL_READY, N_OBS, NO_TRACK, P_FEMALE, Faces, Frame
from tests.support.interrupts import raised_after

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def make_frame(index: int, width: int = 64, height: int = 48, fps: float = 25.0, name: str = "") -> Frame:
    """A synthetic frame: a gradient with a bright square that moves with the index."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    image = np.repeat(np.repeat(x[None, :, None], height, 0), 3, 2).astype(np.uint8)
    image[:, :, 1] = (index * 9) % 256
    side = max(2, min(width, height) // 4)
    left = (index * 3) % max(1, width - side)
    image[height // 4 : height // 4 + side, left : left + side] = 255
    return Frame(index, index / fps, image, source="synthetic", name=name)


def probe(path: Path) -> tuple[int, Fraction, int, int]:
    """(frames decoded, average rate, width, height) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        return decoded, stream.average_rate, stream.codec_context.width, stream.codec_context.height


def write_frames(sink: Sink, count: int, **frame_kwargs: object) -> None:
    for k in range(count):
        sink.write(make_frame(k, **frame_kwargs), Faces.empty())  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------------
# SinkOptions
# --------------------------------------------------------------------------------------------------


def test_options_defaults_and_keys():
    options = SinkOptions()
    assert options.video_crf == 23 and options.video_preset == "ultrafast"
    assert options.rtsp_fps == 25.0 and options.rtsp_reconnect_max_s == 8.0 and options.window_name == "faces"
    assert SinkOptions.keys()[:2] == ("video_crf", "video_preset")
    assert isinstance(SinkOptions(rtsp_fps=30).rtsp_fps, float)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"video_crf": 52}, "video_crf"),
        ({"video_crf": True}, "video_crf"),
        ({"video_crf": 2.5}, "video_crf"),
        ({"video_preset": "turbo"}, "video_preset"),
        ({"video_writer_thread": 1}, "video_writer_thread"),
        ({"video_queue_size": 0}, "video_queue_size"),
        ({"image_jpeg_quality": 101}, "image_jpeg_quality"),
        ({"rtsp_fps": 0}, "rtsp_fps"),
        ({"rtsp_fps": float("nan")}, "rtsp_fps"),
        ({"rtsp_reconnect_max_s": -1}, "rtsp_reconnect_max_s"),
        ({"rtsp_transport": "http"}, "rtsp_transport"),
        ({"window_name": " "}, "window_name"),
    ],
)
def test_options_validation_names_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SinkOptions(**kwargs)


def test_options_coerce_from_mapping_and_dataclass():
    @dataclass(frozen=True)
    class OutputSection:
        video_crf: int = 30
        window_name: str = "w"

    assert SinkOptions.coerce({"video_crf": 18}).video_crf == 18
    coerced = SinkOptions.coerce(OutputSection())
    assert (coerced.video_crf, coerced.window_name, coerced.video_preset) == (30, "w", "ultrafast")
    with pytest.raises(ValueError, match="unknown output option.*bogus"):
        SinkOptions.coerce({"bogus": 1})
    with pytest.raises(TypeError, match="options"):
        SinkOptions.coerce(42)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def test_pad_to_even_replicates_the_last_row_and_column():
    image = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    padded = pad_to_even(image)
    assert padded.shape == (4, 6, 3)
    np.testing.assert_array_equal(padded[:3, :5], image)
    np.testing.assert_array_equal(padded[3, :5], image[2])
    assert pad_to_even(np.zeros((4, 6, 3), np.uint8)).shape == (4, 6, 3)


def test_fit_to_size_letterboxes():
    out = fit_to_size(np.full((100, 50, 3), 200, np.uint8), 100, 100)
    assert out.shape == (100, 100, 3)
    assert out[:, :20].max() == 0 and out[:, 30:70].min() == 200


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:secret@cam.local:554/s", "rtsp://***@cam.local:554/s"),
        ("rtsp://cam.local/s", "rtsp://cam.local/s"),
        ("out.mp4", "out.mp4"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


# --------------------------------------------------------------------------------------------------
# Video files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "size", "threaded", "ext"),
    [
        (25.0, (64, 48), True, ".mp4"),
        (30.0, (65, 47), False, ".mp4"),  # odd size: padded to 66x48
        (30000 / 1001, (64, 48), True, ".mkv"),
        (25.0, (64, 48), False, ".mov"),
    ],
)
def test_video_keeps_frame_count_and_fps(tmp_path, fps, size, threaded, ext):
    path = tmp_path / f"out{ext}"
    count = 37
    with VideoSink(path, fps, SinkOptions(video_writer_thread=threaded, video_preset="ultrafast")) as sink:
        write_frames(sink, count, width=size[0], height=size[1], fps=fps)
    frames, rate, width, height = probe(path)
    assert frames == count
    assert rate == Fraction(fps).limit_denominator(1001)
    assert (width, height) == (size[0] + size[0] % 2, size[1] + size[1] % 2)


def test_video_content_survives_encoding(tmp_path):
    path = tmp_path / "out.mp4"
    source = make_frame(5, 64, 48)
    with VideoSink(path, 25, SinkOptions(video_crf=10)) as sink:
        sink.write(source, Faces.empty())
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="bgr24")
    assert np.abs(decoded.astype(int) - source.image.astype(int)).mean() < 4


@pytest.mark.parametrize("threaded", [True, False])
def test_video_interrupted_by_ctrl_c_is_playable(tmp_path, threaded):
    path = tmp_path / "interrupted.mp4"
    count = 12
    options = SinkOptions(video_writer_thread=threaded, video_preset="ultrafast")
    # The interrupt is raised inside the sink's with block, as Ctrl-C in the pipeline loop would be.
    with pytest.raises(KeyboardInterrupt), VideoSink(path, 25, options) as sink:
        write_frames(sink, count)
        raise KeyboardInterrupt
    frames, rate, _, _ = probe(path)
    assert frames == count and rate == 25


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX interval timers")
def test_video_stopped_again_while_draining_keeps_what_it_encoded(tmp_path, monkeypatch):
    # A second Ctrl-C while close() drains the writer's queue: the queued frames are dropped, but the container
    # is flushed and closed only after the writer has left the encoder, so the file holds every frame it counts.
    path = tmp_path / "twice.mp4"
    sink = VideoSink(path, 25, SinkOptions(video_preset="ultrafast", video_queue_size=64))
    encode = sink._encode

    def slow_encode(image: np.ndarray, pts: int) -> None:  # a slow machine: the queue is still full at close()
        time.sleep(0.05)
        encode(image, pts)

    monkeypatch.setattr(sink, "_encode", slow_encode)
    write_frames(sink, 40)

    with raised_after(0.3), pytest.raises(KeyboardInterrupt):
        sink.close()
    assert sink._writer_done.is_set()
    assert 0 < sink.frames_written < 40
    frames, rate, _, _ = probe(path)
    assert frames == sink.frames_written and rate == 25


_INTERRUPT_CHILD = """
import faulthandler, signal, sys, time, numpy as np
# A child of a background job in a non-interactive shell inherits SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler of its own: Ctrl-C is what this test is about, so restore it.
signal.signal(signal.SIGINT, signal.default_int_handler)
# Should it still hang, every thread's stack goes to stderr, which the test's failure shows.
faulthandler.dump_traceback_later(15, exit=True)
from stream.sinks import VideoSink, SinkOptions
from stream.types import Faces, Frame
sink = VideoSink(sys.argv[1], 25, SinkOptions(video_preset="ultrafast"))
written = 0
try:
    with sink:
        print("READY", flush=True)
        while True:
            sink.write(Frame(written, written / 25, np.full((48, 64, 3), written % 256, np.uint8)), Faces.empty())
            written += 1
            time.sleep(0.002)
finally:
    print("WRITTEN", sink.frames_written, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_video_real_sigint_leaves_every_written_frame(tmp_path):
    path = tmp_path / "sigint.mp4"
    child = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPT_CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY"
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert "KeyboardInterrupt" in err, err
    written = int(out.split("WRITTEN")[1])
    assert written > 0
    assert probe(path)[0] == written


def test_video_live_source_follows_timestamps(tmp_path):
    path = tmp_path / "live.mp4"
    times = [10.0, 10.1, 10.15, 10.5, 10.5]  # gaps and a repeated timestamp
    with VideoSink(path, 30, use_timestamps=True) as sink:
        for k, t in enumerate(times):
            sink.write(Frame(k, t, make_frame(k).image), Faces.empty())
    with av.open(str(path)) as container:
        pts = [round(float(f.time), 3) for f in container.decode(video=0)]
    assert pts == [0.0, 0.1, 0.15, 0.5, 0.501]


def test_video_size_change_is_letterboxed(tmp_path):
    path = tmp_path / "sizes.mp4"
    with VideoSink(path, 25) as sink:
        sink.write(make_frame(0, 64, 48), Faces.empty())
        sink.write(make_frame(1, 100, 200), Faces.empty())
    assert probe(path)[0] == 2 and probe(path)[2:] == (64, 48)


def test_video_without_frames_leaves_no_file(tmp_path):
    path = tmp_path / "empty.mp4"
    VideoSink(path, 25).close()
    assert not path.exists()


def test_video_without_frames_keeps_an_existing_file(tmp_path):
    path = tmp_path / "previous.mp4"
    path.write_bytes(b"earlier run")
    VideoSink(path, 25).close()
    assert path.read_bytes() == b"earlier run"


def test_write_after_close_raises(tmp_path):
    sink = VideoSink(tmp_path / "a.mp4", 25)
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(SinkError, match="closed"):
        sink.write(make_frame(0), Faces.empty())


@pytest.mark.parametrize("fps", [0, -1, float("nan"), "25"])
def test_video_bad_fps(tmp_path, fps):
    with pytest.raises(ValueError, match="fps"):
        VideoSink(tmp_path / "a.mp4", fps)


# --------------------------------------------------------------------------------------------------
# Unwritable outputs: SinkError at open
# --------------------------------------------------------------------------------------------------


def _unwritable_cases(tmp: Path) -> dict[str, Path]:
    (tmp / "a_file").write_text("x")
    (tmp / "a_dir.mp4").mkdir()
    (tmp / "a_dir.jsonl").mkdir()
    (tmp / "a_dir.png").mkdir()
    return {
        "folder instead of file": tmp / "a_dir",
        "parent is a file": tmp / "a_file" / "sub",
    }


@pytest.mark.parametrize("case", ["folder instead of file", "parent is a file"])
@pytest.mark.parametrize("kind", ["video", "image", "events", "image_folder"])
def test_unwritable_output_raises_sink_error(tmp_path, case, kind):
    base = _unwritable_cases(tmp_path)[case]
    with pytest.raises(SinkError, match=str(tmp_path)):
        if kind == "video":
            VideoSink(base.with_name(base.name + ".mp4"), 25)
        elif kind == "image":
            ImageFileSink(base.with_name(base.name + ".png"))
        elif kind == "events":
            EventsSink(base.with_name(base.name + ".jsonl"))
        elif case == "folder instead of file":
            ImageFolderSink(tmp_path / "a_file")  # a file where the folder should be
        else:
            ImageFolderSink(base)


@pytest.mark.skipif(IS_ROOT or sys.platform == "win32", reason="root ignores file permissions")
def test_read_only_folder_raises_sink_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for make in (lambda: VideoSink(locked / "a.mp4", 25), lambda: ImageFolderSink(locked)):
            with pytest.raises(SinkError, match="locked"):
                make()
    finally:
        locked.chmod(0o700)


def test_open_sinks_is_all_or_nothing(tmp_path):
    (tmp_path / "events_dir").mkdir()
    with pytest.raises(SinkError, match="events_dir"):
        open_sinks(
            str(tmp_path / "out.mp4"),
            str(tmp_path / "events_dir"),
            False,
            source_kind="video",
            fps=25,
            options=SinkOptions(),
        )
    assert not (tmp_path / "out.mp4").exists()  # the video sink was opened, then closed empty


# --------------------------------------------------------------------------------------------------
# open_sinks routing
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "source_kind", "expected"),
    [
        ("rtsp://127.0.0.1:1/x", "webcam", "rtsp"),
        ("RTSP://127.0.0.1:1/x", "video", "rtsp"),
        ("out.mp4", "video", "video"),
        ("out.MKV", "stream", "video"),
        ("out.avi", "folder", "video"),
        ("out.jpg", "image", "image"),
        ("annotated", "image", "image_folder"),
        ("annotated", "folder", "image_folder"),
        ("out.jpg", "folder", SinkError),
        ("out.jpg", "video", SinkError),
        ("annotated", "webcam", SinkError),
        ("out.xyz", "folder", SinkError),
        ("out.mp4", "camera", ValueError),
    ],
)
def test_output_kind(output, source_kind, expected):
    if isinstance(expected, type):
        with pytest.raises(expected):
            output_kind(output, source_kind)
    else:
        assert output_kind(output, source_kind) == expected
        assert issubclass(get_sink_class(expected), Sink)


def test_get_sink_class_lists_valid_names():
    with pytest.raises(ValueError, match="valid sinks: .*video"):
        get_sink_class("hdmi")


def test_open_sinks_opens_in_order_and_closes(tmp_path):
    sinks = open_sinks(
        str(tmp_path / "v.mp4"),
        str(tmp_path / "e.jsonl"),
        False,
        source_kind="video",
        fps=30,
        options=SinkOptions(),
    )
    assert [type(s) for s in sinks] == [VideoSink, EventsSink]
    assert isinstance(sinks[0], VideoSink) and sinks[0].rate == 30 and not sinks[0].use_timestamps
    for sink in sinks:
        with sink:
            write_frames(sink, 3)
    assert probe(tmp_path / "v.mp4")[0] == 3
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 3
    assert open_sinks(None, None, False, source_kind="image", fps=None, options=SinkOptions()) == []


def test_open_sinks_live_video_uses_timestamps_and_refuses_same_paths(tmp_path):
    (sink,) = open_sinks(str(tmp_path / "v.mp4"), None, False, source_kind="webcam", fps=None, options={})
    assert isinstance(sink, VideoSink) and sink.use_timestamps
    sink.close()
    with pytest.raises(SinkError, match="same file"):
        open_sinks(
            str(tmp_path / "x.mp4"), str(tmp_path / "x.mp4"), False, source_kind="video", fps=25, options=SinkOptions()
        )


def test_open_sinks_refuses_to_overwrite_the_input_folder(tmp_path):
    with pytest.raises(SinkError, match="is the input itself"):
        open_sinks(
            str(tmp_path), None, False, source_kind="folder", fps=None, options=SinkOptions(), source_path=tmp_path
        )


def test_any_quit_requested():
    class Quitting(Sink):
        def write(self, frame, faces):
            pass

        def _close(self):
            pass

        @property
        def quit_requested(self):
            return True

    assert not any_quit_requested([])
    assert any_quit_requested([EventsSink(os.devnull), Quitting()])


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def test_image_file_sink(tmp_path):
    path = tmp_path / "sub" / "out.png"
    frame = make_frame(3, 65, 47, name="in.jpg")
    with ImageFileSink(path) as sink:
        sink.write(frame, Faces.empty())
    read = cv2.imread(str(path))
    np.testing.assert_array_equal(read, frame.image)  # png: lossless, no padding for stills
    assert [p.name for p in path.parent.iterdir()] == ["out.png"]  # no temporary file left


def test_image_file_sink_without_frames_leaves_no_file(tmp_path):
    ImageFileSink(tmp_path / "x.jpg").close()
    assert not (tmp_path / "x.jpg").exists()


def test_image_folder_sink_names_outputs_after_inputs(tmp_path):
    names = ["a.jpg", "b.png", "c.gif", "nested/d.jpeg", "../escape.jpg", ""]
    with ImageFolderSink(tmp_path / "out", SinkOptions(image_jpeg_quality=90)) as sink:
        for k, name in enumerate(names):
            sink.write(make_frame(k, name=name), Faces.empty())
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["a.jpg", "b.png", "c.png", "escape.jpg", "frame_000005.jpg", "nested/d.jpeg"]
    assert cv2.imread(str(tmp_path / "out" / "a.jpg")).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("x.jpg", "x.jpg"), ("/abs/y.PNG", "abs/y.PNG"), ("z", "z.png"), ("w.heic", "w.png"), ("..", "frame_000007.jpg")],
)
def test_output_name(name, expected):
    assert str(output_name(make_frame(7, name=name))) == expected


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


def make_labelled_faces() -> Faces:
    probs = np.zeros((3, 8), np.float32)
    probs[0, 3] = 0.7
    probs[0, 4] = 0.3
    probs[1, :] = 1 / 8
    probs[2, :] = np.nan
    return Faces(
        xyxy=np.array([[10.04, 20.06, 50.0, 60.0], [0, 0, 5, 5], [1, 1, 2, 2]], np.float32),
        score=np.array([0.97123, 0.5, 0.4], np.float32),
        landmarks=np.zeros((3, 5, 2), np.float32),
        track_id=np.array([3, 4, NO_TRACK]),
        data={
            AGE_GROUP_PROBS: probs,
            AGE_YEARS: np.array([34.24, np.nan, np.nan], np.float32),
            P_FEMALE: np.array([0.93, 0.5, np.nan], np.float32),
            N_OBS: np.array([6, 1, 0], np.int32),
            LABEL_READY: np.array([True, False, True]),
        },
    )


def test_face_records_values_rounding_and_nulls():
    ready, not_ready, nan_face = face_records(make_labelled_faces())
    assert ready == {
        "track_id": 3,
        "person_id": None,  # no identity stage ran on these faces
        "box_xyxy": [10.0, 20.1, 50.0, 60.0],
        "score": 0.9712,
        "age_group": "31-40",
        "age_range": "31-40",
        "age_group_probs": [0.0, 0.0, 0.0, 0.7, 0.3, 0.0, 0.0, 0.0],
        "age": 34.2,
        "gender": "female",
        "p_female": 0.93,
        "n_obs": 6,
    }
    labels = ("age_group", "age_group_probs", "age", "gender", "p_female")
    assert all(not_ready[k] is None for k in labels) and not_ready["n_obs"] == 1
    # Ready but NaN: null, never NaN; no track yet: null id.
    assert nan_face["track_id"] is None and all(nan_face[k] is None for k in labels)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, {"age_group": None, "age": None, "gender": None, "n_obs": None}),
        # A gender only where P(female) is labels.gender_min_lean (0.1) or more from 0.5; else undecided.
        ({P_FEMALE: [0.49]}, {"gender": None, "p_female": 0.49, "age": None}),
        ({P_FEMALE: [0.5]}, {"gender": None}),
        ({P_FEMALE: [0.4]}, {"gender": "male"}),
        ({P_FEMALE: [0.6]}, {"gender": "female"}),
        ({P_FEMALE: [0.9], LABEL_READY: [False]}, {"gender": None, "p_female": None}),
        ({AGE_YEARS: [70.0], N_OBS: [2]}, {"age": 70.0, "n_obs": 2, "age_group": None}),
        ({AGE_GROUP_PROBS: [[0.0] * 7 + [1.0]]}, {"age_group": AGE_GROUPS[-1]}),
        ({AGE_GROUP_PROBS: [[0.0] * 8]}, {"age_group": None, "age_group_probs": None}),
    ],
)
def test_face_records_absent_keys(data, expected):
    faces = Faces(
        xyxy=np.zeros((1, 4)),
        score=np.ones(1),
        landmarks=np.zeros((1, 5, 2)),
        data={k: np.array(v) for k, v in data.items()},
    )
    (record,) = face_records(faces)
    for key, value in expected.items():
        assert record[key] == value, key


def test_face_records_empty_and_bad_shape():
    assert face_records(Faces.empty()) == []
    bad = {AGE_GROUP_PROBS: np.ones((1, 5))}
    faces = Faces(xyxy=np.zeros((1, 4)), score=np.ones(1), landmarks=np.zeros((1, 5, 2)), data=bad)
    with pytest.raises(ValueError, match="age_group_probs"):
        face_records(faces)


def test_events_lines_are_flushed_valid_json_without_nan(tmp_path):
    path = tmp_path / "events.jsonl"
    faces = make_labelled_faces()
    with EventsSink(path) as sink:
        sink.write(Frame(12, 0.48, make_frame(0).image, source="clip.mp4"), faces)
        # Read while the sink is still open: the line must already be complete on disk.
        first = path.read_text(encoding="utf-8")
        assert first.endswith("\n") and first.count("\n") == 1
        sink.write(Frame(13, 0.52, make_frame(1).image, source="clip.mp4"), Faces.empty())
        assert path.read_text(encoding="utf-8").count("\n") == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "NaN" not in "".join(lines)
    record = json.loads(lines[0])
    assert (record["frame"], record["t"], record["source"]) == (12, 0.48, "clip.mp4")
    assert "image" not in record and len(record["faces"]) == 3
    assert record["faces"][1]["age_group"] is None  # not ready yet
    assert json.loads(lines[1])["faces"] == []


def test_events_for_images(tmp_path):
    with EventsSink(tmp_path / "e.jsonl") as sink:
        for k in range(3):
            sink.write(Frame(k, 0.0, make_frame(k).image, source="imgs", name=f"{k}.jpg"), make_labelled_faces())
    records = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == ["0.jpg", "1.jpg", "2.jpg"]


def _record(track_id, group, gender):
    """An ended track's record as stream.analytics.track_record writes it: evidence (probabilities) with a label."""
    probs = None if group is None else [0.9 if g == group else 0.1 / 7 for g in AGE_GROUPS]
    p_female = None if gender is None else 0.9 if gender == "female" else 0.1
    return {"track_id": track_id, "first_frame": 0, "last_frame": 9, "duration_s": 0.4, "age_group": group,
            "age_range": group, "age_group_probs": probs, "age": None, "gender": gender, "p_female": p_female,
            "n_obs": 5}


def test_summary_sink_writes_tracks_and_totals_atomically_at_close(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("an earlier run's summary\n")
    with SummarySink(path, source_name="clip.mp4") as sink:
        for k in range(4):
            sink.write(make_frame(k), Faces.empty())
        sink.end_tracks([_record(1, "31-40", "female"), _record(2, None, None)])
        assert path.read_text() == "an earlier run's summary\n"  # nothing is written before the end
        sink.end_tracks([_record(3, "31-40", "male")])
    data = json.loads(path.read_text())
    assert (data["source"], data["frames"]) == ("clip.mp4", 4)
    assert [t["track_id"] for t in data["tracks"]] == [1, 2, 3]
    # Records without a person id (no identity stage) are each a person of their own.
    assert data["totals"] == {"people": 3, "labelled_people": 2, "merged_tracks": 0, "tracks": 3, "labelled_tracks": 2,
                              "by_age_group": {**dict.fromkeys(AGE_GROUPS, 0), "31-40": 2},
                              "by_gender": {"female": 1, "male": 1}, "age_undecided": 0, "gender_undecided": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind


def test_summary_sink_leaves_an_earlier_file_alone_when_nothing_ran(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("kept\n")
    with SummarySink(path):
        pass
    assert path.read_text() == "kept\n"
    fresh = tmp_path / "fresh.json"
    with SummarySink(fresh):
        pass
    assert not fresh.exists()  # the writability probe is removed


def test_events_to_stdout(capsys):
    with EventsSink("-") as sink:
        sink.write(make_frame(0), Faces.empty())
    assert json.loads(capsys.readouterr().out)["frame"] == 0


# --------------------------------------------------------------------------------------------------
# Window
# --------------------------------------------------------------------------------------------------


_WINDOW_ERROR_CHILD = textwrap.dedent(
    """
    from stream.sinks import WindowSink, SinkError
    try:
        WindowSink()
    except SinkError as err:
        print(err)
    """
)


def test_window_without_display_raises_sink_error():
    # In a child process: if the check were missing, Qt would abort the process, not raise.
    result = subprocess.run(
        [sys.executable, "-c", _WINDOW_ERROR_CHILD],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "--show needs a display: none found (DISPLAY is unset); use --output instead"


def test_window_with_unreachable_display_raises_sink_error():
    result = subprocess.run(
        [sys.executable, "-c", _WINDOW_ERROR_CHILD],
        capture_output=True,
        text=True,
        env=child_env(DISPLAY=":987"),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no X server answers" in result.stdout


@pytest.fixture(scope="module")
def xvfb_display():
    """A private Xvfb server; skipped when the binary is missing (Debian package xvfb)."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb not installed (apt-get install xvfb)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    server = subprocess.Popen(
        [binary, f":{number}", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.skip("Xvfb did not start")
        time.sleep(0.05)
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


_WINDOW_CHILD = """
import shutil, subprocess, sys
import numpy as np
from stream.sinks import SinkOptions, WindowSink, any_quit_requested
from stream.types import Faces, Frame
with WindowSink(SinkOptions(window_name="sink-test")) as sink:
    for k in range(5):
        sink.write(Frame(k, k / 25, np.full((120, 160, 3), k * 40, np.uint8)), Faces.empty())
    print("SHOWN", sink.frames_shown, sink.quit_requested, flush=True)
    if shutil.which("xdotool"):
        wid = subprocess.run(["xdotool", "search", "--sync", "--name", "^sink-test$"],
                             capture_output=True, text=True, timeout=10).stdout.split()[0]
        subprocess.run(["xdotool", "windowfocus", "--sync", wid], check=True, timeout=10)
        subprocess.run(["xdotool", "key", "--window", wid, "q"], check=True, timeout=10)
        for _ in range(200):
            if sink.poll(10):
                break
        print("QUIT", any_quit_requested([sink]), flush=True)
print("CLOSED", sink.closed, flush=True)
"""


def test_window_under_xvfb(xvfb_display):
    # A child process, so Qt's X connection never outlives the Xvfb fixture inside pytest.
    result = subprocess.run(
        [sys.executable, "-c", _WINDOW_CHILD],
        capture_output=True,
        text=True,
        env=child_env(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb"),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "SHOWN 5 False" in result.stdout
    if shutil.which("xdotool"):
        assert "QUIT True" in result.stdout
    assert "CLOSED True" in result.stdout


# --------------------------------------------------------------------------------------------------
# RTSP
# --------------------------------------------------------------------------------------------------


def test_rtsp_rejects_non_rtsp_url():
    with pytest.raises(ValueError, match="url"):
        RtspSink("http://example.com/x")


def test_rtsp_to_closed_port_never_raises_nor_blocks(caplog):
    url = f"rtsp://user:secret@127.0.0.1:{free_port()}/faces"
    caplog.set_level(logging.DEBUG, logger="stream.sinks.rtsp")
    sink = RtspSink(url, SinkOptions(rtsp_reconnect_max_s=0.1, rtsp_fps=50))
    slowest = 0.0
    deadline = time.monotonic() + 20  # each attempt starts a publisher process (an interpreter) first
    k = 0
    while (sink.connection_attempts < 3 or k < 20) and time.monotonic() < deadline:
        started = time.perf_counter()
        sink.write(make_frame(k), Faces.empty())
        slowest = max(slowest, time.perf_counter() - started)
        k += 1
        time.sleep(0.02)
    started = time.perf_counter()
    sink.close()
    assert time.perf_counter() - started < 2.5
    assert slowest < 1.0
    assert sink.connection_attempts >= 3 and not sink.connected and sink.frames_sent == 0
    assert sink.frames_dropped == k
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "stream.sinks.rtsp"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per outage, not per attempt
    assert "secret" not in caplog.text and "rtsp://***@127.0.0.1" in caplog.text


def _rtsp_receiver(url: str, frames: int, got: list[tuple[int, int, bool]]) -> None:
    # FFmpeg's RTSP demuxer in listen mode accepts one publisher (ANNOUNCE/RECORD).
    options = {"rtsp_flags": "listen", "listen_timeout": "10", "rtsp_transport": "tcp"}
    with av.open(url, "r", format="rtsp", options=options) as container:
        for frame in container.decode(video=0):
            got.append((frame.width, frame.height, frame.key_frame))
            if len(got) >= frames:
                return


def test_rtsp_publishes_and_reconnects_after_the_receiver_goes_away(caplog):
    url = f"rtsp://127.0.0.1:{free_port()}/faces"
    first: list[tuple[int, int, bool]] = []
    second: list[tuple[int, int, bool]] = []
    receiver = threading.Thread(target=_rtsp_receiver, args=(url, 5, first), daemon=True)
    receiver.start()
    time.sleep(0.2)
    sink = RtspSink(url, SinkOptions(rtsp_reconnect_max_s=0.2, rtsp_fps=25))
    deadline = time.monotonic() + 15
    k = 0
    with sink:
        while len(second) < 5 and time.monotonic() < deadline:
            if not receiver.is_alive() and not second and sink.failures > 0:
                receiver = threading.Thread(target=_rtsp_receiver, args=(url, 5, second), daemon=True)
                receiver.start()
            sink.write(make_frame(k, 65, 47), Faces.empty())
            k += 1
            time.sleep(0.04)
    assert len(first) == 5 and len(second) == 5
    assert first[0] == (66, 48, True) and second[0][2]  # a new stream starts on a keyframe
    assert any("lost the connection" in r.getMessage() for r in caplog.records)
