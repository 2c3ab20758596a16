"""A live RTSP camera for the latency benchmark: a clip re-encoded in real time, every frame time-stamped.

Run from the repo root, as a module, with the *system* Python, which sees Debian's python3-gi (the
project's venv does not)::

    /usr/bin/python3 -m bench.stamped_rtsp_server --port 8554 --clip ../shared/videos/woman_1280x720.mp4

Serves ``rtsp://127.0.0.1:PORT/stream`` and prints ``READY <port>`` once it accepts connections. Unlike
``tests/support/rtsp_server.py`` (which replays the clip's H.264 untouched), this one behaves like a camera: the
clip's frames are decoded once into memory, and for every client a thread pushes them at the clip's
frame rate into ``appsrc ! x264enc tune=zerolatency`` after drawing a **stamp** into the bottom-right
corner: the push time (``CLOCK_MONOTONIC``, ms, 32 bits) and an 8-bit check, as 2 rows of 20 black/white
16x16 blocks on the macroblock grid (:mod:`bench.latency` reads it back). The push is the
"capture" instant: the latency measured from it covers encoding, RTSP, the product's decoding, grabbing
and processing. A thread that falls behind (the process was frozen with SIGSTOP) skips ahead like a
camera, it does not burst the frames it missed.

Needs gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,bad} (qtdemux, h264parse),
gstreamer1.0-libav (avdec_h264) and gstreamer1.0-plugins-ugly (x264enc). Standard library only besides gi.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# The stamp layout; bench/latency.py holds the same constants.
BLOCK = 16
COLUMNS = 20
ROWS = 2
MARGIN = 16
BLACK, WHITE = 16, 235  # limited-range luma
# A pushing thread whose media refuses frames this long (torn down without "unprepared") ends.
_REFUSED_LIMIT_S = 10.0


def stamp_bits(value_ms: int) -> list[int]:
    """40 bits, most significant first: the 32-bit time in ms and an 8-bit check (byte sum XOR 0x5A)."""
    value_ms &= 0xFFFFFFFF
    check = (sum(value_ms.to_bytes(4, "big")) & 0xFF) ^ 0x5A
    word = (value_ms << 8) | check
    return [(word >> (39 - i)) & 1 for i in range(COLUMNS * ROWS)]


def draw_stamp(i420: bytearray, width: int, height: int, value_ms: int) -> None:
    """Draw the stamp into an I420 frame in place (luma blocks, neutral chroma)."""
    bits = stamp_bits(value_ms)
    x0 = width - MARGIN - COLUMNS * BLOCK
    y0 = height - MARGIN - ROWS * BLOCK
    for row in range(ROWS):
        line = b"".join(bytes([WHITE if bit else BLACK]) * BLOCK for bit in bits[row * COLUMNS : (row + 1) * COLUMNS])
        for y in range(y0 + row * BLOCK, y0 + (row + 1) * BLOCK):
            i420[y * width + x0 : y * width + x0 + len(line)] = line
    # Neutral chroma under the stamp, so colour bleeding from the picture cannot shift the blocks' grey.
    chroma_width = width // 2
    neutral = b"\x80" * (COLUMNS * BLOCK // 2)
    for plane_start in (width * height, width * height + chroma_width * (height // 2)):
        for y in range(y0 // 2, (y0 + ROWS * BLOCK) // 2):
            start = plane_start + y * chroma_width + x0 // 2
            i420[start : start + len(neutral)] = neutral


def decode_clip(clip: str, max_frames: int) -> tuple[list[bytes], int, int, int]:
    """The clip's first ``max_frames`` frames as I420 bytes, with ``(width, height, fps)``."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{clip}" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false'
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames: list[bytes] = []
    width = height = 0
    fps = 30
    while len(frames) < max_frames:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        structure = sample.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        ok, num, den = structure.get_fraction("framerate")
        if ok and num > 0 and den > 0:
            fps = round(num / den)
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise RuntimeError("cannot map a decoded frame")
        frames.append(bytes(info.data)[: width * height * 3 // 2])
        buffer.unmap(info)
    pipeline.set_state(Gst.State.NULL)
    if not frames:
        raise SystemExit(f"no video frames in {clip}")
    if width % 32 or height % 16:
        raise SystemExit(f"{clip}: {width}x{height}; the stamp needs a width multiple of 32 and height of 16")
    return frames, width, height, fps


class StampedFactory(GstRtspServer.RTSPMediaFactory):
    """One encoding pipeline per client, fed by a pacing thread that stamps every frame."""

    def __init__(self, frames: list[bytes], width: int, height: int, fps: int, bitrate_kbps: int) -> None:
        super().__init__()
        self.frames = frames
        self.width, self.height, self.fps = width, height, fps
        caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        self.set_launch(
            f"( appsrc name=src is-live=true format=time do-timestamp=true caps={caps} ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max={fps} ! "
            "video/x-h264,profile=baseline ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.set_shared(False)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        stop = threading.Event()
        media.connect("unprepared", lambda *_: stop.set())
        threading.Thread(target=self.push_frames, args=(appsrc, stop), daemon=True).start()

    def push_frames(self, appsrc: Gst.Element, stop: threading.Event) -> None:
        period = 1.0 / self.fps
        due = time.monotonic()
        index = 0
        refused_since: float | None = None
        while not stop.is_set():
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            elif now > due + period:
                due = now  # frozen or starved: a camera skips ahead, it does not burst old frames
            frame = bytearray(self.frames[index % len(self.frames)])
            draw_stamp(frame, self.width, self.height, int(time.monotonic() * 1000))
            if appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(bytes(frame))) == Gst.FlowReturn.OK:
                refused_since = None
                index += 1
            else:
                # FLUSHING before the media has started (this thread starts at media-configure, while the
                # pipeline is still being set up) or after it was torn down: keep the pace and retry, and
                # end once the media is unprepared or has refused frames for a long time.
                refused_since = refused_since or time.monotonic()
                if time.monotonic() - refused_since > _REFUSED_LIMIT_S:
                    return
            due += period


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True, help="a video file (decoded once into memory, then looped)")
    parser.add_argument("--max-frames", type=int, default=300, help="frames of the clip kept in memory (loop length)")
    parser.add_argument("--bitrate-kbps", type=int, default=4000)
    args = parser.parse_args(argv)

    Gst.init(None)
    frames, width, height, fps = decode_clip(args.clip, args.max_frames)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory("/stream", StampedFactory(frames, width, height, fps, args.bitrate_kbps))
    return serve(server, args.port, f"READY {args.port} {width}x{height}@{fps}")


def serve(server: GstRtspServer.RTSPServer, port: int, ready_line: str) -> int:
    """Attach ``server`` and run its main loop until SIGTERM or SIGINT; print ``ready_line`` once it listens.

    Shared with ``tests/support/rtsp_server.py`` (both run under the system python3 that has python3-gi).

    Returns:
        The exit code: 0 after a signal, 1 when the port cannot be bound.
    """
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(ready_line, flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
