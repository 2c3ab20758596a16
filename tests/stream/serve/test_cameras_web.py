"""``python -m stream --source a=X --source b=Y --serve``: each camera of a many-camera run on the page, with
its own video, fps, faces and status; a real RTSP camera stopped and started again goes reconnecting → live,
and offline once it stays away longer than ``source.give_up_after_s``, while the other keeps going."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.stream.serve.conftest import serve, wait_for
from tests.stream.test_sources_rtsp import rtsp_ready, start_server  # noqa: F401 (fixtures: real RTSP servers)


def test_every_camera_has_its_live_view_and_status(start_server):  # noqa: F811
    door, till = start_server(), start_server()
    with serve("--source", f"door={door.url()}", "--source", f"till={till.url()}", "--set", "serve.workers=1",
               "--set", "source.read_timeout_s=1", "--set", "source.reconnect_max_s=0.5",
               "--set", "source.give_up_after_s=8", beside_run=True) as client:
        process = client.process
        assert process is not None

        def cameras() -> dict[str, dict]:
            if process.poll() is not None:
                pytest.fail(f"the run ended ({process.returncode}): {process.communicate()[1]}")
            try:
                return {camera["counts_key"]: camera for camera in client.get("/api/cameras").json()}
            except OSError:
                return {}

        def status(name: str) -> str:
            return cameras()[name]["status"]

        both = wait_for(lambda: (found := cameras()) and len(found) == 2 and
                        all(c["status"] == "live" and c["fps"] for c in found.values()) and found, 120)
        assert both["door"]["name"].startswith("door") and both["till"]["name"].startswith("till")
        assert both["door"]["id"] != both["till"]["id"]
        for camera in both.values():  # each its own video, moving
            frames = client.mjpeg_frames(camera["id"], 3)
            images = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for _, jpeg in frames]
            assert all(image is not None and image.shape[:2] == (512, 512) for image in images)
            assert len({jpeg for _, jpeg in frames}) == 3
        wait_for(lambda: all(c["faces_in_view"] >= 1 for c in cameras().values()), 60)
        dashboard = client.get("/api/dashboard").json()
        assert {c["counts_key"] for c in dashboard["cameras"]} == {"door", "till"}

        door.kill()  # the camera stops
        wait_for(lambda: status("door") == "reconnecting", 20)
        assert status("till") == "live"
        door.start()  # and comes back on the same address
        wait_for(lambda: status("door") == "live", 40)
        assert client.mjpeg_frames(both["door"]["id"], 2)
        door.kill()  # gone for good (longer than source.give_up_after_s)
        wait_for(lambda: status("door") == "reconnecting", 20)
        wait_for(lambda: status("door") == "offline", 40)
        assert status("till") == "live"
        assert client.get(f"/api/cameras/{both['door']['id']}/frame.jpg").status == 200  # the last picture stays
