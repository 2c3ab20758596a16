"""A tiny RTSP server for tests: serves a looping H.264 clip at rtsp://127.0.0.1:PORT/stream.

Run it with the *system* Python, which sees Debian's python3-gi (the project's venv does not)::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --clip ../shared/videos/talking_woman_512.mp4 \
        [--user alice --password secret]

Needs the Debian packages gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good (qtdemux, rtph264pay)
and gstreamer1.0-plugins-bad (h264parse). The clip is not re-encoded: its H.264 access units are read
once into memory and pushed again and again through an ``appsrc`` with timestamps that keep increasing
across loops, so the stream is endless, real-time paced and costs almost no CPU. Prints ``READY <port>``
on stdout once it accepts connections. Each client gets its own pipeline starting at the clip's start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: E402

# Run as a script by the system python3: the repo root is not on its path. bench.stamped_rtsp_server needs only
# gi and the standard library.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.stamped_rtsp_server import serve  # noqa: E402


def load_access_units(clip: str) -> tuple[list[tuple[bytes, int, int, int, bool]], Gst.Caps, int]:
    """Demux ``clip``'s H.264 track into memory.

    Returns:
        ``(units, caps, loop_ns)``: units as ``(data, pts, dts, duration, is_delta)`` in ns relative to
        the first unit, the byte-stream caps, and the clip's duration in ns (the offset of each loop).
    """
    pipeline = Gst.parse_launch(
        f'filesrc location="{clip}" ! qtdemux ! h264parse config-interval=-1 ! '
        "video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    raw = []
    caps = None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buffer = sample.get_buffer()
        caps = sample.get_caps()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise RuntimeError("cannot map buffer")
        raw.append(
            (
                bytes(info.data),
                buffer.pts,
                buffer.dts if buffer.dts != Gst.CLOCK_TIME_NONE else buffer.pts,
                buffer.duration,
                bool(buffer.get_flags() & Gst.BufferFlags.DELTA_UNIT),
            )
        )
        buffer.unmap(info)
    pipeline.set_state(Gst.State.NULL)
    if not raw or caps is None:
        raise SystemExit(f"no H.264 video in {clip}")
    # DTS of B-frame streams starts before PTS: shift so every time is >= 0.
    origin = min(min(pts, dts) for _, pts, dts, _, _ in raw)
    units = [(data, pts - origin, dts - origin, dur, delta) for data, pts, dts, dur, delta in raw]
    frame_ns = units[0][3] if units[0][3] != Gst.CLOCK_TIME_NONE else Gst.SECOND // 30
    loop_ns = max(pts for _, pts, _, _, _ in units) + frame_ns
    return units, caps, loop_ns


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    """Media factory whose pipelines feed the in-memory clip to an appsrc forever."""

    def __init__(self, units: list, caps: Gst.Caps, loop_ns: int) -> None:
        super().__init__()
        self.units = units
        self.caps = caps
        self.loop_ns = loop_ns
        self.set_launch(
            "( appsrc name=src format=time is-live=false do-timestamp=false ! h264parse ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.set_shared(False)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        appsrc.set_property("caps", self.caps)
        state = {"i": 0}
        appsrc.connect("need-data", self.on_need_data, state)

    def on_need_data(self, appsrc: Gst.Element, _length: int, state: dict) -> None:
        i = state["i"]
        data, pts, dts, duration, delta = self.units[i % len(self.units)]
        offset = (i // len(self.units)) * self.loop_ns
        buffer = Gst.Buffer.new_wrapped(data)
        buffer.pts = pts + offset
        buffer.dts = dts + offset
        buffer.duration = duration
        if delta:
            buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
        state["i"] = i + 1
        appsrc.emit("push-buffer", buffer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True, help="an .mp4 with an H.264 video track")
    parser.add_argument("--path", default="/stream")
    parser.add_argument("--user", default=None)
    parser.add_argument("--password", default=None)
    args = parser.parse_args(argv)

    Gst.init(None)
    units, caps, loop_ns = load_access_units(args.clip)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = LoopingFactory(units, caps, loop_ns)
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    return serve(server, args.port, f"READY {args.port}")


if __name__ == "__main__":
    sys.exit(main())
