"""Privacy mode: no face the detector can find in any video output, while the analytics still run."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time

import av
import cv2
import numpy as np
import pytest

from stream.config import ConfigError, load_config
from tests.conftest import REPO, shared_file
from tests.stream.serve.conftest import serve, wait_for
from tests.support.cli_util import child_env, cli_command, free_port, run_cli


@pytest.mark.parametrize("mode", ["blur", "pixelate"])
def test_obscured_faces_are_not_found_again(default_detector, mode):
    from stream.privacy import obscure_faces

    image = cv2.imread(str(shared_file("videos", "multiface.jpg")))
    faces = default_detector.detect(image)
    assert len(faces) == 6
    obscured = obscure_faces(image.copy(), faces.xyxy, mode)
    assert len(default_detector.detect(obscured)) == 0
    # Only the faces changed: the rest of the picture is intact.
    changed = np.any(obscured != image, axis=2)
    inside = np.zeros_like(changed)
    for x1, y1, x2, y2 in faces.xyxy.astype(int):
        w, h = x2 - x1, y2 - y1
        inside[max(0, y1 - h // 2):y2 + h // 2, max(0, x1 - w // 2):x2 + w // 2] = True
    assert not changed[~inside].any()


def test_bad_privacy_mode_is_refused():
    from stream.annotate import Annotator
    from stream.privacy import obscure_faces

    with pytest.raises(ConfigError, match="annotate.privacy must be one of none, blur, pixelate"):
        load_config(overrides=["annotate.privacy=mosaic"])
    with pytest.raises(ValueError, match="privacy"):
        Annotator(privacy="mosaic")
    with pytest.raises(ValueError, match="privacy"):
        obscure_faces(np.zeros((8, 8, 3), np.uint8), np.zeros((1, 4)), "mosaic")


def _sampled_frames(path, every: int = 8) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for i, frame in enumerate(container.decode(video=0)) if i % every == 0]


def test_video_file_output_has_no_face_but_events_keep_labels(tmp_path, default_detector):
    clip = shared_file("videos", "talking_man_512.mp4")
    output, events = tmp_path / "private.mp4", tmp_path / "events.jsonl"
    result = run_cli("--source", str(clip), "--output", str(output), "--events", str(events),
                     "--set", "annotate.privacy=pixelate")
    assert result.returncode == 0, result.stderr
    originals, outputs = _sampled_frames(clip), _sampled_frames(output)
    assert len(originals) == len(outputs) >= 9
    assert all(len(default_detector.detect(image)) == 1 for image in originals)
    assert [len(default_detector.detect(image)) for image in outputs] == [0] * len(outputs)
    labelled = [face for line in events.read_text().splitlines() for face in json.loads(line)["faces"]
                if face["age_group"] is not None]
    assert labelled and {face["gender"] for face in labelled} == {"male"}


def test_cli_serve_with_privacy_web_outputs_have_no_face(default_detector):
    """``python -m stream --serve`` beside a run with annotate.privacy=blur: live view and uploads obscured."""
    clip = shared_file("videos", "expressive_woman_480.mp4")
    photo = shared_file("videos", "multiface.jpg")
    with serve("--source", str(clip), "--max-frames", "800", "--set", "annotate.privacy=blur",
               "--set", "serve.workers=1", beside_run=True) as client:
        camera = wait_for(lambda: [c for c in client.get("/api/cameras").json() if c["status"] == "live"], 60)[0]
        assert camera["name"].endswith("expressive_woman_480.mp4")
        assert client.get("/api/info").json()["privacy"] == "blur"
        frames = client.mjpeg_frames(camera["id"], 4)
        images = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for _, jpeg in frames]
        assert [len(default_detector.detect(image)) for image in images] == [0, 0, 0, 0]
        # The analytics still run on the clean frames: the person in view gets a label.
        person = wait_for(lambda: [p for c in client.get("/api/cameras").json() for p in c["people"]
                                   if p["age_group"]], 60)[0]
        assert person["gender"] == "female"
        answer = client.upload("/api/analyze?annotated=true", photo.read_bytes()).json()
        assert len(answer["faces"]) == 6 and all(face["age_group"] for face in answer["faces"])
        annotated = cv2.imdecode(np.frombuffer(base64.b64decode(answer["annotated_jpeg"]), np.uint8), cv2.IMREAD_COLOR)
        assert len(default_detector.detect(annotated)) == 0
    assert client.returncode in (0, 143), client.stderr
    time.sleep(0.2)
    with pytest.raises(OSError):
        client.request("GET", "/healthz", timeout=2)  # the page lives as long as the run


@pytest.mark.parametrize("mode", ["pixelate", "none"])
def test_rtsp_output_has_no_face(tmp_path, default_detector, mode):
    """``--output rtsp://`` with annotate.privacy=pixelate: the stream an RTSP server on loopback receives (FFmpeg's
    RTSP demuxer listening for the publisher) shows no face the detector finds, where the input shows one in each
    (and where the same stream without privacy shows it too: the check can see a face)."""
    from tests.stream.test_rtsp_output import _finish, _receiver

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("the ffmpeg CLI is not installed (apt-get install ffmpeg)")
    clip = shared_file("videos", "expressive_woman_480.mp4")
    url = f"rtsp://127.0.0.1:{free_port()}/private"
    received = tmp_path / "received.mp4"
    receiver = _receiver(ffmpeg, url, 60, received)
    try:
        run = subprocess.run(cli_command("--source", str(clip), "--output", url, "--max-frames", "150",
                                         "--set", f"annotate.privacy={mode}"),
                             cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120, check=False)
        receiver_log = _finish(receiver, timeout=30)
    finally:
        _finish(receiver, timeout=1)
    assert run.returncode == 0, run.stderr
    assert receiver.returncode == 0, receiver_log
    # The push drops frames while the receiver starts, so some of the 150 arrive (24 in one loaded CI run), not all.
    outputs = _sampled_frames(received, every=6)
    assert len(outputs) >= 3 and outputs[0].shape == (480, 480, 3)
    assert all(len(default_detector.detect(image)) == 1 for image in _sampled_frames(clip, every=16)[:len(outputs)])
    expected = 0 if mode != "none" else 1
    assert [len(default_detector.detect(image)) for image in outputs] == [expected] * len(outputs)
