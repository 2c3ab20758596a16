"""The MQTT outlet against a real Mosquitto broker on loopback (tests/support/mosquitto.py).

Runs the real CLI or the real pipeline on a real clip; brokers are stopped, restarted and refused for real,
with password files and TLS certificates made for the test. Skips when mosquitto is not installed.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.sinks import SinkError, open_sinks
from stream.sinks.mqtt import MqttSink, Spool, parse_mqtt_url
from tests.conftest import REPO, shared_file
from tests.stream.test_sources_rtsp import RtspServer, rtsp_ready  # noqa: F401 (rtsp_ready is a fixture)
from tests.support.cli_util import child_env, cli_command, error_line, run_cli
from tests.support.interrupts import raised_after
from tests.support.mosquitto import Mosquitto, Subscriber, free_port, make_tls_files, mosquitto_binary

CLIP = ("videos", "talking_man_512.mp4")  # one man, 78 frames at 25 fps


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto_binary()
    server = Mosquitto(tmp_path / "broker", persistence=True).start()
    yield server
    server.kill()


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    yield made
    for sub in made:
        sub.close()


def _payloads(messages: list[Any]) -> list[dict[str, Any]]:
    return [m.json() for m in messages]


def _stopped(messages: list[Any]) -> bool:
    return any(m.json().get("status") == "offline" and m.json().get("reason") == "stopped" for m in messages)


def _check_lives(payloads: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Every person's events are new, update..., end, in that order; returns them by track."""
    lives: dict[int, list[dict[str, Any]]] = {}
    for event in payloads:
        if event["type"] in ("new", "update", "end"):
            lives.setdefault(event["track_id"], []).append(event)
    for track_id, life in lives.items():
        kinds = [e["type"] for e in life]
        assert kinds[0] == "new" and kinds[-1] == "end" and set(kinds[1:-1]) <= {"update"}, (track_id, kinds)
        for earlier, later in zip(life, life[1:]):
            assert later["before"] == earlier["after"] or later["type"] == "end" and later["before"] == \
                [e for e in life if e["type"] != "end"][-1]["after"]
    return lives


def _deduplicated(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """QoS 1 is at-least-once: a message re-sent after a reconnect may arrive twice (same seq)."""
    seen: set[int] = set()
    unique = []
    for payload in payloads:
        if payload["seq"] not in seen:
            seen.add(payload["seq"])
            unique.append(payload)
    return unique


def test_cli_delivers_new_update_end_counts_and_status_in_order(
    broker: Mosquitto, subscribers: list[Subscriber], tmp_path: Path
) -> None:
    clip = shared_file(*CLIP)
    subscribers.append(sub := Subscriber(broker.port, "faces/#"))
    summary = tmp_path / "summary.json"
    url = f"mqtt://127.0.0.1:{broker.port}/faces?camera=desk&counts=1&spool={tmp_path / 'spool'}"
    result = run_cli("--source", str(clip), "--events", url, "--summary", str(summary), log_level="INFO")
    assert result.returncode == 0, result.stderr
    assert "none left, none dropped" in result.stderr
    payloads = _payloads(sub.wait_for(_stopped))
    assert [p["seq"] for p in payloads] == list(range(len(payloads)))  # all delivered, in order, once
    assert all(p["camera"] == "desk" for p in payloads)
    for message in sub.messages:
        kind = message.json()["type"]
        expected = "status" if kind == "status" else "counts" if kind == "counts" else "events"
        assert message.topic == f"faces/desk/{expected}"
    assert payloads[0]["type"] == "status" and payloads[0]["status"] == "live"
    final = payloads[-1]
    assert final["status"] == "offline" and final["dropped"] == 0
    lives = _check_lives(payloads)
    tracks = json.loads(summary.read_text())["tracks"]
    assert sorted(lives) == sorted(t["track_id"] for t in tracks) and tracks
    for track in tracks:
        life = lives[track["track_id"]]
        assert life[-1]["after"] == track  # the end event carries the fused summary the run wrote
        assert life[0]["after"]["ready"] is False  # first seen while still estimating
        labelled = [e for e in life if e["type"] == "update" and e["reason"] == "label"]
        assert labelled and labelled[0]["after"]["ready"] is True and labelled[0]["after"]["age_group"]
    counts = [p for p in payloads if p["type"] == "counts"]
    assert [c["t"] for c in counts] == [1.0, 2.0, 3.0]  # 78 frames at 25 fps: every second of source time
    assert all(c["in_view"] == 1 and sum(c["by_age_group"].values()) + c["estimating"] == 1 for c in counts)
    # The status is retained: a late subscriber learns the camera is offline and why.
    subscribers.append(late := Subscriber(broker.port, "faces/desk/status"))
    retained = late.wait_for(lambda m: len(m) >= 1)
    status = retained[0].json()
    assert retained[0].retain and status["status"] == "offline" and status["reason"] == "stopped"


def _pipeline_frames(on_frame: Callable[[int], None]) -> Iterator[Any]:
    """The clip's frames, calling ``on_frame(index)`` before each: the test's hand on the broker mid-run."""
    from stream.sources import open_source

    with open_source(str(shared_file(*CLIP))) as source:
        for frame in source:
            on_frame(frame.index)
            yield frame


def test_broker_restart_mid_run_loses_nothing(
    broker: Mosquitto, subscribers: list[Subscriber], tmp_path: Path, config: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real pipeline drives the sink; the broker goes down at frame 20 and comes back at frame 50."""
    from stream.pipeline import Pipeline, run

    subscribers.append(sub := Subscriber(broker.port, "faces/#", persistent=True))
    url = f"mqtt://127.0.0.1:{broker.port}/faces?camera=desk&heartbeat=0.2&counts=0.5&spool={tmp_path}&drain=20"
    sink = MqttSink(url)

    def on_frame(index: int) -> None:
        if index == 20:
            sub.wait_for(lambda m: len(m) >= 3)
            broker.stop()
            deadline = time.monotonic() + 10
            while sink.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not sink.connected
        if index in range(21, 50):
            time.sleep(0.02)  # a live camera keeps delivering frames while the broker is away
        if index == 50:
            broker.start()
            # The camera keeps delivering while the client reconnects (paho's backoff): wait for it, bounded.
            deadline = time.monotonic() + 15
            while not sink.connected and time.monotonic() < deadline:
                time.sleep(0.05)

    caplog.set_level(logging.INFO, logger="stream.sinks.mqtt")
    pipeline = Pipeline(config)
    pipeline.set_frame_rate(25.0)
    with sink:
        run(pipeline, _pipeline_frames(on_frame), [sink])
    received = _payloads(sub.wait_for(_stopped, timeout_s=30))
    # Mosquitto publishes the last will of clients it loses when it shuts down; the sink says live again.
    wills = [i for i, p in enumerate(received) if "seq" not in p]
    assert all(received[i] == {"type": "status", "camera": "desk", "status": "offline",
                               "reason": "connection lost"} for i in wills)
    payloads = _deduplicated([p for p in received if "seq" in p])
    assert [p["seq"] for p in payloads] == list(range(len(payloads)))
    assert any(p["type"] == "status" and p.get("reason") == "reconnected" for p in payloads)
    assert payloads[-1]["dropped"] == 0 and sink.dropped == 0 and sink.left_in_spool == 0
    during = [p for p in payloads if p.get("frame") is not None and 20 < p["frame"] < 50]
    assert len(during) >= 5  # events made while the broker was down reached the subscriber
    _check_lives(payloads)
    logs = caplog.text
    assert "broker connection lost" in logs and "broker back after" in logs


def test_full_spool_counts_drops_and_the_next_run_sends_what_was_kept(
    broker: Mosquitto, subscribers: list[Subscriber], tmp_path: Path, config: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from stream.pipeline import Pipeline, run

    url = (f"mqtt://127.0.0.1:{broker.port}/faces?camera=desk&heartbeat=0.04&counts=0&spool={tmp_path}"
           "&spool_mb=0.01&drain=1")
    sink = MqttSink(url)

    def on_frame(index: int) -> None:
        if index == 5:
            broker.stop()
            while sink.connected:
                time.sleep(0.05)

    caplog.set_level(logging.INFO, logger="stream.sinks.mqtt")
    pipeline = Pipeline(config)
    pipeline.set_frame_rate(25.0)
    with sink:
        run(pipeline, _pipeline_frames(on_frame), [sink])
    assert sink.dropped > 0 and sink.left_in_spool > 0
    assert f"{sink.left_in_spool} left in the spool" in caplog.text and f"{sink.dropped} dropped" in caplog.text
    kept, dropped = sink.left_in_spool, sink.dropped

    broker.start()
    subscribers.append(sub := Subscriber(broker.port, "faces/#"))
    with MqttSink(url) as second:
        pass
    received = sub.wait_for(lambda m: sum(_stopped([x]) for x in m) >= 2)
    messages = _payloads([m for m in received if not m.retain])  # not the status retained from before
    first_run, second_run = messages[:kept], messages[kept:]
    assert first_run[-1]["status"] == "offline" and first_run[-1]["dropped"] == dropped  # the report got through
    seqs = [p["seq"] for p in first_run]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))  # in order; the newest were the ones dropped
    # The next run's "live" gets through although the spool it starts with is full (a retained "offline" would
    # otherwise stay on the camera wall while the worker runs).
    assert [p["type"] for p in second_run] == ["status", "status"] and second_run[0]["status"] == "live"
    assert second.left_in_spool == 0


def test_a_second_signal_during_the_drain_keeps_the_rest_in_the_spool(
    broker: Mosquitto, subscribers: list[Subscriber], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # The broker is gone at the end of the run, so closing waits (drain=60) for it; a second Ctrl-C ends the wait at
    # once. The publisher leaves the spool before it is closed, and the next run delivers what was kept.
    url = f"mqtt://127.0.0.1:{broker.port}/faces?camera=desk&heartbeat=0&counts=0&spool={tmp_path}&drain=60"
    sink = MqttSink(url)
    broker.stop()
    deadline = time.monotonic() + 10
    while sink.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sink.connected

    caplog.set_level(logging.INFO, logger="stream.sinks.mqtt")
    started = time.monotonic()
    with raised_after(0.5), pytest.raises(KeyboardInterrupt):
        sink.close()
    assert time.monotonic() - started < 30  # not the 60 s drain
    assert sink.left_in_spool >= 1 and "publisher stopped" not in caplog.text
    assert f"{sink.left_in_spool} left in the spool" in caplog.text

    broker.start()
    subscribers.append(sub := Subscriber(broker.port, "faces/#"))
    with MqttSink(url.replace("drain=60", "drain=10")) as second:
        pass
    received = _payloads([m for m in sub.wait_for(lambda m: sum(_stopped([x]) for x in m) >= 2) if not m.retain])
    assert received[0]["status"] == "offline" and received[0]["reason"] == "stopped"  # the first run's report
    assert second.left_in_spool == 0


def test_username_and_password(tmp_path: Path, subscribers: list[Subscriber]) -> None:
    clip = shared_file(*CLIP)
    server = Mosquitto(tmp_path / "broker", users={"cam": "s3cret:@pw"}).start()
    try:
        subscribers.append(sub := Subscriber(server.port, "faces/#", username="cam", password="s3cret:@pw"))
        good = f"mqtt://cam:s3cret%3A%40pw@127.0.0.1:{server.port}/faces?camera=desk&spool={tmp_path}"
        result = run_cli("--source", str(clip), "--events", good, "--max-frames", "30", log_level="INFO")
        assert result.returncode == 0, result.stderr
        assert "s3cret" not in result.stderr
        assert [p["type"] for p in _payloads(sub.wait_for(_stopped))][0] == "status"
        for userinfo in ("cam:wrong", "cam", "intruder:s3cret"):
            bad = f"mqtt://{userinfo}@127.0.0.1:{server.port}/faces?spool={tmp_path}"
            result = run_cli("--source", str(clip), "--events", bad, "--max-frames", "5")
            assert result.returncode == 2
            line = error_line(result.stderr)
            assert "refused the connection" in line and "user name and password" in line
            assert "wrong" not in result.stderr and "s3cret" not in result.stderr and "***@" in line
    finally:
        server.kill()


def test_tls_with_the_brokers_ca(tmp_path: Path, subscribers: list[Subscriber]) -> None:
    clip = shared_file(*CLIP)
    tls = make_tls_files(tmp_path / "tls")
    server = Mosquitto(tmp_path / "broker", tls=tls).start()
    try:
        subscribers.append(sub := Subscriber(server.port, "faces/#", tls=tls))
        url = f"mqtts://127.0.0.1:{server.port}/faces?camera=desk&ca={tls.ca}&spool={tmp_path}"
        result = run_cli("--source", str(clip), "--events", url, "--max-frames", "30", log_level="INFO")
        assert result.returncode == 0, result.stderr
        payloads = _payloads(sub.wait_for(_stopped))
        assert payloads[0]["status"] == "live" and [p["seq"] for p in payloads] == list(range(len(payloads)))
        # Without the CA the broker's certificate is not trusted; plain MQTT to a TLS port gets no CONNACK.
        result = run_cli("--source", str(clip), "--events", url.replace(f"&ca={tls.ca}", ""))
        assert result.returncode == 2 and "TLS certificate not trusted" in error_line(result.stderr)
        plain = f"mqtt://127.0.0.1:{server.port}/faces?timeout=2&spool={tmp_path}"
        result = run_cli("--source", str(clip), "--events", plain, timeout=30)
        assert result.returncode == 2 and "MQTT broker" in error_line(result.stderr)
    finally:
        server.kill()


def test_nothing_listening_or_no_mqtt_there_is_a_one_line_error(tmp_path: Path) -> None:
    clip = shared_file(*CLIP)
    port = free_port()
    result = run_cli("--source", str(clip), "--events", f"mqtt://u:hunter2@127.0.0.1:{port}/faces", timeout=30)
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert "connection refused" in line and f"127.0.0.1:{port}" in line and "hunter2" not in result.stderr
    # Something that accepts the connection but never speaks MQTT: bounded by ?timeout=.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"mqtt://127.0.0.1:{silent.getsockname()[1]}/faces?timeout=1&spool={tmp_path}"
        result = run_cli("--source", str(clip), "--events", url, timeout=30)
    assert result.returncode == 2 and "did not answer within 1 s" in error_line(result.stderr)


@pytest.mark.parametrize(("url", "message"), [
    ("mqtt://u:pw@127.0.0.1:99999/faces", "port must be a number"),
    ("mqtt://u:pw@/faces", "no broker host"),
    ("mqtt://u:pw@127.0.0.1/faces/#", "may not hold '\\+', '#'"),
    ("mqtt://u:pw@127.0.0.1/faces?colour=red", "unknown option 'colour'"),
    ("mqtt://u:pw@127.0.0.1/faces?counts=-1", "counts= must be a number"),
    ("mqtt://u:pw@127.0.0.1/faces?ca=/etc/hosts", "need TLS"),
    ("mqtts://u:pw@127.0.0.1/faces?ca=/nonexistent.pem", "does not exist"),
    ("mqtt://u:pw@127.0.0.1/faces?camera=a+b", "camera name"),
])
def test_malformed_urls_are_refused_without_the_password(url: str, message: str) -> None:
    with pytest.raises(SinkError, match=message) as caught:
        parse_mqtt_url(url)
    assert "pw" not in str(caught.value) and "\n" not in str(caught.value)


def test_malformed_url_on_the_command_line() -> None:
    result = run_cli("--source", str(shared_file(*CLIP)), "--events", "mqtt://u:pw@127.0.0.1:0x1/faces")
    assert result.returncode == 2 and "port must be a number" in error_line(result.stderr)
    assert ":pw@" not in result.stderr


def test_open_sinks_picks_mqtt_and_names_the_camera_from_the_source(
    broker: Mosquitto, subscribers: list[Subscriber], tmp_path: Path
) -> None:
    url = f"mqtt://127.0.0.1:{broker.port}/faces?spool={tmp_path}"
    sinks = open_sinks(None, url, False, source_kind="video", fps=25.0, options={},
                       source_name="/videos/front door.mp4")
    with sinks[0] as sink:
        assert isinstance(sink, MqttSink) and sink.camera == "front_door"
        assert sink.topics["events"] == "faces/front_door/events"
        sink.camera_status("reconnecting", source="front door.mp4")
        subscribers.append(sub := Subscriber(broker.port, "faces/front_door/status"))
        status = sub.wait_for(lambda m: any(x.json()["status"] == "reconnecting" for x in m))[-1]
        assert status.json()["source"] == "front door.mp4"
        with pytest.raises(ValueError, match="status must be one of"):
            sink.camera_status("asleep")


def test_last_will_says_offline_when_the_worker_is_killed(
    broker: Mosquitto, subscribers: list[Subscriber], rtsp_ready: Path, tmp_path: Path  # noqa: F811
) -> None:
    camera = RtspServer(rtsp_ready, tmp_path / "rtsp.log")
    camera.start()
    try:
        subscribers.append(sub := Subscriber(broker.port, "faces/door/status"))
        url = f"mqtt://127.0.0.1:{broker.port}/faces?camera=door&spool={tmp_path}"
        with (tmp_path / "stream.log").open("w") as log:
            worker = subprocess.Popen(cli_command("--source", camera.url(), "--events", url), cwd=REPO,
                                      env=child_env(), stdout=log, stderr=log)
        try:
            sub.wait_for(lambda m: any(x.json()["status"] == "live" for x in m), timeout_s=60)
            time.sleep(1.0)  # mid-run: frames flowing
            assert worker.poll() is None, (tmp_path / "stream.log").read_text()
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        last = sub.wait_for(lambda m: m[-1].json()["status"] == "offline")[-1].json()
        assert last == {"type": "status", "camera": "door", "status": "offline", "reason": "connection lost"}
    finally:
        camera.kill()
    subscribers.append(late := Subscriber(broker.port, "faces/door/status"))
    retained = late.wait_for(lambda m: len(m) >= 1)[0]
    assert retained.retain and retained.json()["reason"] == "connection lost"


def test_spool_keeps_order_limit_and_position(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    spool = Spool(path, max_bytes=100)
    assert all(spool.append(b"%02d-------------\n" % i) for i in range(5))  # 5 x 17 bytes
    assert not spool.append(b"x" * 20 + b"\n")  # would pass 100 undelivered bytes
    first = spool.read(2)
    assert [line[:2] for _, line in first] == [b"00", b"01"]
    spool.commit(first[-1][0])
    with pytest.raises(SinkError, match="in use by another process"):
        Spool(path, max_bytes=100)
    spool.close()
    again = Spool(path, max_bytes=100)  # a new run resumes after what was acknowledged
    rest = again.read(10)
    assert [line[:2] for _, line in rest] == [b"02", b"03", b"04"]
    again.commit(rest[-1][0])
    assert path.stat().st_size == 0 and again.pending_lines() == 0
    again.close()
