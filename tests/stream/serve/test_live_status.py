"""A camera's status on the page follows its source: live, reconnecting while it is lost, offline when given up."""

from __future__ import annotations

from tests.stream.serve.conftest import serve, wait_for
from tests.stream.test_sources_rtsp import rtsp_ready, start_server  # noqa: F401 (fixtures: a real RTSP server)


def test_camera_status_follows_the_rtsp_source(start_server):  # noqa: F811
    camera_server = start_server()
    with serve("--source", camera_server.url(), "--set", "serve.workers=1", "--set", "source.read_timeout_s=1",
               "--set", "source.reconnect_max_s=0.5", "--set", "source.give_up_after_s=4") as client:
        def status() -> str:
            return client.get("/api/cameras").json()[0]["status"]

        wait_for(lambda: status() == "live", 60)
        assert client.mjpeg_frames("cam0", 2)
        camera_server.pause()  # frozen: no frame, the connection stays open
        wait_for(lambda: status() == "reconnecting", 15)
        camera_server.resume()
        wait_for(lambda: status() == "live", 20)
        camera_server.kill()  # gone for longer than source.give_up_after_s
        wait_for(lambda: status() == "reconnecting", 15)
        wait_for(lambda: status() == "offline", 30)
        assert client.get("/api/cameras/cam0/frame.jpg").status == 200  # the last picture stays
