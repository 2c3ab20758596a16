"""Many cameras in one process (stream.cameras): shared models, one batch per tick, cameras independent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.cameras import Camera, run_cameras
from stream.config import CameraSpec, SourceOptions
from stream.pipeline import Pipeline, classify_batch
from stream.sinks import Sink
from stream.sources import LiveSource, open_source
from tests.conftest import REPO, shared_file
from tests.support.cli_util import child_env, cli_command, error_line, probe_video, read_events, run_cli

FAST = {"open_timeout_s": 2.0, "read_timeout_s": 0.3, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.1}


def _frames(clip: Path, n: int) -> list[np.ndarray]:
    with open_source(clip) as source:
        return [frame.image for _, frame in zip(range(n), source)]


class ScriptedCamera:
    """A camera through the live sources' capture interface: real frames at ``fps``, then it dies or hangs."""

    def __init__(self, frames: list[np.ndarray], fps: float, *, die_after: int | None = None,
                 hang_after: int | None = None) -> None:
        self.frames, self.fps = frames, fps
        self.die_after, self.hang_after = die_after, hang_after
        self.read_count = 0
        self.released = threading.Event()

    def read(self):
        k = self.read_count
        self.read_count += 1
        if self.die_after is not None and k >= self.die_after:
            return False, None
        if self.hang_after is not None and k >= self.hang_after:
            self.released.wait(30)  # a backend whose read() hangs: only release() ends it
            return False, None
        time.sleep(1 / self.fps)
        return True, self.frames[k % len(self.frames)]

    def isOpened(self):  # noqa: N802 - cv2's spelling
        return True

    def get(self, prop_id):
        return self.fps if prop_id == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.released.set()


class OneShotFactory:
    """Gives the scripted camera once; reconnection attempts find the camera gone."""

    def __init__(self, camera: ScriptedCamera) -> None:
        self.camera: ScriptedCamera | None = camera

    def __call__(self, _spec):
        camera, self.camera = self.camera, None
        if camera is None:
            raise OSError("connection refused")
        return camera


class StatusSink(Sink):
    """An outlet with a camera status, as the broker's: records what the camera tells it."""

    def __init__(self, shows_image: bool = False) -> None:
        super().__init__()
        self.statuses: list[tuple[str, str | None]] = []
        self.frames = 0
        self._shows_image = shows_image

    @property
    def shows_image(self) -> bool:
        return self._shows_image

    def write(self, frame, faces) -> None:
        self.frames += 1

    def camera_status(self, status: str, **fields) -> None:
        self.statuses.append((status, fields.get("reason")))

    def _close(self) -> None:
        pass


def _camera(name, url, config, detector, classifiers, opener, *, live, max_frames=None, sinks=()):
    pipeline = Pipeline(config, detector=detector, classifiers=classifiers, camera=name)
    camera = Camera(CameraSpec(name, url), pipeline, opener, lambda _source: list(sinks), live=live,
                    max_frames=max_frames)
    camera.start()
    return camera


@pytest.mark.parametrize("failure", ["dies", "hangs"])
def test_a_camera_that_dies_or_hangs_never_stalls_the_others(failure, config, default_detector,
                                                            default_classifiers):
    clip = shared_file("videos", "talking_man_512.mp4")
    frames = _frames(clip, 10)
    script = ScriptedCamera(frames, 25.0, **({"die_after": 5} if failure == "dies" else {"hang_after": 5}))
    # A dead camera gives up at once; a hung one is given long enough to stay "reconnecting" while the clip runs.
    options = SourceOptions(**FAST, give_up_after_s=0.5 if failure == "dies" else 60.0)
    outlet = StatusSink()
    live = _camera("door", "rtsp://camera/door", config, default_detector, default_classifiers,
                   partial(LiveSource, "rtsp://camera/door", "door", "stream", OneShotFactory(script), options),
                   live=True, sinks=[outlet])
    clip_camera = _camera("till", str(clip), config, default_detector, default_classifiers,
                          partial(open_source, clip), live=False, max_frames=60)
    processed: dict[str, list[int]] = {"door": [], "till": []}
    try:
        result = run_cameras(
            [live, clip_camera], [],
            # A hung camera never ends by itself: stop once the clip is done (and its stall was noticed).
            should_stop=lambda: clip_camera.done and live.status != "live",
            on_result=lambda camera, frame, faces, _t: processed[camera.name].append(frame.index),
        )
    finally:
        for camera in (live, clip_camera):
            camera.close()
    assert processed["till"] == list(range(60))  # every frame of the file, in order, while the other failed
    assert 1 <= len(processed["door"]) <= 5
    assert result.status == {"door": "offline" if failure == "dies" else "reconnecting", "till": "ended"}
    assert outlet.frames == len(processed["door"])
    if failure == "dies":
        assert "door" in result.errors and "till" not in result.errors
        assert [status for status, _ in outlet.statuses] == ["offline"] and "giving up" in outlet.statuses[0][1]
    else:
        assert outlet.statuses == [("reconnecting", None)]
    assert outlet.closed  # the camera's outputs were finalized when it went offline or the run stopped


def test_faces_of_all_cameras_are_classified_in_one_batch_with_the_same_results(config, default_detector,
                                                                                  default_classifiers):
    items = []
    for name in ("talking_man_512.mp4", "woman_1280x720.mp4", "multiface.jpg"):
        with open_source(shared_file("videos", name)) as source:
            image = next(iter(source)).image
        items.append((image, default_detector.detect(image)))
    assert sum(len(faces) for _, faces in items) >= 8
    batched, _ = classify_batch(default_classifiers, items)
    for (image, faces), estimates in zip(items, batched):
        alone, _ = classify_batch(default_classifiers, [(image, faces)])
        assert estimates.keys() == alone[0].keys()
        for key, values in estimates.items():
            assert len(values) == len(faces)
            np.testing.assert_allclose(values, alone[0][key], rtol=1e-4, atol=1e-5)


def test_one_batch_per_tick_over_the_cameras(config, default_detector, default_classifiers, monkeypatch):
    import stream.cameras

    cameras = [
        _camera(name, str(path), config, default_detector, default_classifiers, partial(open_source, path),
                live=False, max_frames=20)
        for name, path in (("a", shared_file("videos", "talking_man_512.mp4")),
                           ("b", shared_file("videos", "woman_1280x720.mp4")),
                           ("c", shared_file("videos", "multiface.jpg")),
                           ("d", shared_file("videos", "multiface.jpg")))
    ]
    # Every camera has its first frame decoded before the loop starts, so the first tick serves all four.
    deadline = time.monotonic() + 30
    while not all(camera._feeder is not None and camera._feeder.slot.full() for camera in cameras):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    batches: list[int] = []  # frames (cameras) per classifier batch
    calls: list[int] = []  # chips per model call

    def recording_batch(classifiers, items, rules=None):
        batches.append(len(items))
        return classify_batch(classifiers, items, rules)

    monkeypatch.setattr(stream.cameras, "classify_batch", recording_batch)
    for classifier in default_classifiers:
        monkeypatch.setattr(classifier, "predict",
                            lambda chips, predict=classifier.predict: calls.append(len(chips)) or predict(chips))
    try:
        result = run_cameras(cameras, [])
    finally:
        for camera in cameras:
            camera.close()
    assert {name: r.frames for name, r in result.cameras.items()} == {"a": 20, "b": 20, "c": 1, "d": 1}
    assert len(batches) == result.batches and len(calls) == result.batches * len(default_classifiers)
    # The two stills' twelve faces (and any video faces due then) went in one call per model.
    assert batches[0] >= 2 and calls[0] >= 12
    assert result.batched_faces == sum(calls) // len(default_classifiers)
    assert result.cameras["c"].totals["tracks"] == result.cameras["d"].totals["tracks"] == 6


def test_cli_many_sources_name_their_camera_in_every_event_and_summary_entry(tmp_path):
    man, woman = shared_file("videos", "talking_man_512.mp4"), shared_file("videos", "woman_1280x720.mp4")
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    result = run_cli("--source", str(man), "--source", f"door={woman}", "--source",
                     str(shared_file("videos", "multiface.jpg")), "--events", str(events), "--summary", str(summary),
                     "--max-frames", "30", "--set", "door:trackbook.min_observations=2", timeout=180)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    by_camera: dict[str, int] = {}
    for line in lines:
        by_camera[line["camera"]] = by_camera.get(line["camera"], 0) + 1
    assert by_camera == {"talking_man_512": 30, "door": 30, "multiface": 1}
    report = json.loads(summary.read_text())
    assert set(report["cameras"]) == {"talking_man_512", "door", "multiface"}
    assert {name: entry["frames"] for name, entry in report["cameras"].items()} == by_camera
    assert all(track["camera"] in by_camera for track in report["tracks"])
    assert report["cameras"]["multiface"]["totals"]["tracks"] == 6
    assert report["totals"]["tracks"] == sum(e["totals"]["tracks"] for e in report["cameras"].values())


def test_cli_cameras_from_the_config_with_their_own_outputs(tmp_path):
    man, woman = shared_file("videos", "talking_man_512.mp4"), shared_file("videos", "woman_1280x720.mp4")
    config = tmp_path / "cameras.yaml"
    config.write_text(f"""
sources:
  - name: entrance
    url: {man}
    overrides: {{trackbook: {{min_observations: 3}}}}
    outputs: {{events: {tmp_path / 'entrance.jsonl'}}}
  - name: till
    url: {woman}
    outputs: {{summary: {tmp_path / 'till.json'}}}
""")
    result = run_cli("--config", str(config), "--max-frames", "12", "--events", str(tmp_path / "all.jsonl"),
                     timeout=180)
    assert result.returncode == 0, result.stderr
    own = [json.loads(line) for line in (tmp_path / "entrance.jsonl").read_text().splitlines()]
    assert len(own) == 12 and {line["camera"] for line in own} == {"entrance"}
    shared = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert sorted({line["camera"] for line in shared}) == ["entrance", "till"] and len(shared) == 24
    till = json.loads((tmp_path / "till.json").read_text())
    assert set(till["cameras"]) == {"till"} and till["frames"] == 12


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--source", "{man}", "--source", "{man}"], r"error: source '.*talking_man_512.mp4' is listed twice"),
        (["--source", "{man}", "--source", "x/talking_man_512.mp4"],
         r"error: two cameras are named 'talking_man_512'"),
        (["--source", "{man}", "--set", "door:tracker.lost_track_buffer=60"],
         r"error: --set door:\.\.\.: unknown camera 'door'; cameras: talking_man_512"),
        (["--source", "a={man}", "--source", "b={woman}", "--set", "a:detector.score_threshold=0.2"],
         r"error: camera 'a': detector.score_threshold cannot differ between cameras"),
        (["--source", "a={man}", "--source", "b={woman}", "--set", "b:tracker.lost_track_buffer=-1"],
         r"error: camera 'b': tracker.lost_track_buffer must be in"),
        (["--source", "a={man}", "--source", "b={woman}", "--output", "x.mp4"],
         r"error: --output takes one camera's video"),
        (["--source", "a={man}", "--source", "b={woman}", "--events", "mqtt://127.0.0.1:1/shop?camera=door"],
         r"error: --events: camera= in the broker URL names one camera"),
        (["--source", "a={man}", "--source", "b=ftp://camera/live"],
         r"error: camera b: unsupported URL scheme 'ftp' in the source"),
        (["--source", "a={man}", "--source", "b=/nonexistent/clip.mp4"],
         r"error: camera b: source '/nonexistent/clip.mp4' not found"),
    ],
)
def test_cli_bad_camera_lists_exit_2_with_one_line(args, expected):
    man, woman = shared_file("videos", "talking_man_512.mp4"), shared_file("videos", "woman_1280x720.mp4")
    result = run_cli(*[a.format(man=man, woman=woman) for a in args])
    assert result.returncode == 2, result.stderr
    assert re.search(expected, error_line(result.stderr)), result.stderr


@pytest.mark.parametrize("shows_image", [False, True])
def test_frames_between_detections_are_not_converted_when_no_output_shows_them(
        shows_image, config, default_detector, default_classifiers):
    frames = _frames(shared_file("videos", "talking_man_512.mp4"), 12)
    camera = _camera("door", "rtsp://camera/door", config, default_detector, default_classifiers,
                     partial(LiveSource, "rtsp://camera/door", "door", "stream",
                             OneShotFactory(ScriptedCamera(frames, 25.0, die_after=24)),
                             SourceOptions(**FAST, give_up_after_s=0.2)),
                     live=True, sinks=[StatusSink(shows_image)])
    shapes: list[tuple[int, ...]] = []
    try:
        run_cameras([camera], [], on_result=lambda cam, frame, faces, _t: shapes.append(frame.image.shape))
    finally:
        camera.close()
    assert len(shapes) >= 2  # (a busy machine may drop some: the loop takes the newest frame)
    empty = [shape == (0, 0, 3) for shape in shapes]
    # 25 fps: detection on every other frame (detector.interval auto); the frames between need no picture.
    assert any(empty) != shows_image and not all(empty)
    assert all(shape == (512, 512, 3) for shape, e in zip(shapes, empty) if not e)


def _outcomes(cameras) -> dict[str, list[tuple]]:
    """Per camera, what each processed frame reported: its index, boxes, track ids and every data array."""
    seen: dict[str, list[tuple]] = {camera.name: [] for camera in cameras}

    def record(camera, frame, faces, _t):
        seen[camera.name].append((frame.index, faces.xyxy.copy(), faces.track_id.copy(),
                                  {key: value.copy() for key, value in faces.data.items()}))

    try:
        run_cameras(cameras, [], on_result=record)
    finally:
        for camera in cameras:
            camera.close()
    return seen


def test_cameras_prepared_in_parallel_report_what_each_reports_alone(config, default_detector, default_classifiers,
                                                                      monkeypatch):
    clips = {"man": shared_file("videos", "talking_man_512.mp4"), "woman": shared_file("videos", "woman_1280x720.mp4"),
             "crowd": shared_file("videos", "crowd_1080p.mp4")}

    def cameras(names):
        return [_camera(name, str(clips[name]), config, default_detector, default_classifiers,
                        partial(open_source, clips[name]), live=False, max_frames=16) for name in names]

    alone = {}
    for name in clips:
        alone.update(_outcomes(cameras([name])))
    threads: set[str] = set()
    prepare = Pipeline.prepare
    monkeypatch.setattr(Pipeline, "prepare",
                        lambda self, frame: threads.add(threading.current_thread().name) or prepare(self, frame))
    together = _outcomes(cameras(list(clips)))
    if (os.cpu_count() or 1) > 1:
        # The loop's thread and a camera worker both prepared frames (the frames of a tick are shared out).
        assert "MainThread" in threads and any(name.startswith("camera-worker") for name in threads), threads
    for name in clips:
        assert len(together[name]) == len(alone[name]) == 16
        for (index, xyxy, ids, data), (index_alone, xyxy_alone, ids_alone, data_alone) in zip(together[name],
                                                                                            alone[name]):
            assert index == index_alone
            np.testing.assert_array_equal(xyxy, xyxy_alone)
            np.testing.assert_array_equal(ids, ids_alone)
            assert data.keys() == data_alone.keys()
            for key in data:
                if data[key].dtype.kind == "f":
                    # Classified in one batch with the other cameras' faces: float32 rounding of another batch size
                    # (as test_faces_of_all_cameras_are_classified_in_one_batch_with_the_same_results).
                    np.testing.assert_allclose(data[key], data_alone[key], rtol=1e-4, atol=1e-5,
                                               err_msg=f"{name} frame {index} {key}")
                else:
                    np.testing.assert_array_equal(data[key], data_alone[key], err_msg=f"{name} frame {index} {key}")


def test_camera_workers_keep_the_order_use_every_thread_and_raise_what_a_step_raised():
    from stream.cameras import _Workers

    workers = _Workers(2)
    try:
        ran_on: dict[int, str] = {}
        together = threading.Barrier(3)

        def step(k):
            ran_on[k] = threading.current_thread().name
            if k < 3:
                together.wait(timeout=30)  # passes only when three threads hold the first three items at once
            return k * k

        assert workers.map(step, [(k,) for k in range(8)]) == [k * k for k in range(8)]  # in the items' order
        assert len({ran_on[k] for k in range(3)}) == 3 and "MainThread" in ran_on.values()
        assert workers.map(step, [(9,)]) == [81] and ran_on[9] == "MainThread"  # one item: no hand-over

        def failing(k):
            if k == 3:
                raise ValueError("step 3 failed")
            return k

        with pytest.raises(ValueError, match="step 3 failed"):
            workers.map(failing, [(k,) for k in range(6)])
    finally:
        workers.close()


def test_ctrl_c_with_several_cameras_finalizes_every_output(tmp_path):
    long_clip = shared_file("videos", "expressive_woman_480.mp4")  # 1008 frames: far from its end
    config = tmp_path / "cameras.yaml"
    config.write_text(f"""
sources:
  - name: lobby
    url: {long_clip}
    outputs: {{output: {tmp_path / 'lobby.mp4'}}}
  - name: door
    url: {shared_file('videos', 'talking_man_512.mp4')}
""")
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    process = subprocess.Popen(cli_command("--config", str(config), "--events", str(events), "--summary",
                                           str(summary)),
                               cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (events.read_bytes().count(b'"camera":"lobby"') if events.exists() else 0) < 20:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no 20 events of the lobby camera within 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    records = read_events(events)  # every line complete
    lobby = [r for r in records if r["camera"] == "lobby"]
    assert 20 <= len(lobby) < 1008
    assert probe_video(tmp_path / "lobby.mp4")[0] == len(lobby)  # playable, every frame the events list
    report = json.loads(summary.read_text())
    assert report["cameras"]["lobby"]["frames"] == len(lobby)
    assert report["cameras"]["door"]["frames"] == sum(r["camera"] == "door" for r in records)
