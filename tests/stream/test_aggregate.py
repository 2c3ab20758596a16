"""Scale-out on a real broker: two workers, two aggregators sharing the events, a worker killed mid-run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.aggregate import parse_broker
from stream.counts import ALL_CAMERAS
from tests.conftest import REPO, shared_file
from tests.stream.test_sources_rtsp import RtspServer, rtsp_ready  # noqa: F401 (rtsp_ready is a fixture)
from tests.support.cli_util import child_env, cli_command, error_line, run_cli
from tests.support.mosquitto import Mosquitto, Subscriber


def _aggregator(port: int, folder: Path, name: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "stream.aggregate", "--broker", f"mqtt://127.0.0.1:{port}/shop",
               "--window", "1h", "--summary", str(folder / f"{name}.json"), "--store", str(folder / f"{name}.jsonl"),
               "--publish-every", "0.5", "--group", "counters"]
    with (folder / f"{name}.log").open("wb") as log:
        return subprocess.Popen(command, cwd=REPO, env=child_env(), stdout=log, stderr=log)


def _people(snapshot: dict, camera: str) -> int:
    return sum(r["people"] for r in snapshot["totals"] if r["camera"] == camera)


def test_workers_and_aggregators_on_one_broker_and_a_worker_killed_mid_run(
    rtsp_ready: Path, tmp_path: Path  # noqa: F811
) -> None:
    crowd, still = shared_file("videos", "crowd_1080p.mp4"), shared_file("videos", "multiface.jpg")
    broker = Mosquitto(tmp_path / "broker").start()
    live = RtspServer(rtsp_ready, tmp_path / "rtsp.log")
    live.start()
    processes: list[subprocess.Popen[bytes]] = []
    subscribers: list[Subscriber] = []
    try:
        subscribers.append(ends := Subscriber(broker.port, "shop/+/events"))
        subscribers.append(statuses := Subscriber(broker.port, "shop/+/status"))
        subscribers.append(published := Subscriber(broker.port, "shop/_aggregate/+/counts"))
        processes += [_aggregator(broker.port, tmp_path, "agg0"), _aggregator(broker.port, tmp_path, "agg1")]
        published.wait_for(lambda m: len({x.topic for x in m}) == 2, timeout_s=60)  # both consuming

        # Worker 1: two cameras (a clip and a still) run to their end.
        url = f"mqtt://127.0.0.1:{broker.port}/shop?spool={tmp_path / 'spool1'}"
        first = run_cli("--source", f"door={crowd}", "--source", f"desk={still}", "--events", url,
                        "--summary", str(tmp_path / "worker1.json"), timeout=300)
        assert first.returncode == 0, first.stderr
        # Worker 2: a live camera and a clip; killed (kill -9) once the clip is done, the live camera mid-run.
        url = f"mqtt://127.0.0.1:{broker.port}/shop?spool={tmp_path / 'spool2'}"
        with (tmp_path / "worker2.log").open("wb") as log:
            second = subprocess.Popen(cli_command("--source", f"entrance={live.url()}", "--source", f"till={crowd}",
                                                  "--events", url), cwd=REPO, env=child_env(), stdout=log, stderr=log)
        processes.append(second)

        def status(messages, camera):
            mine = [m.json() for m in messages if m.topic == f"shop/{camera}/status"]
            return mine[-1] if mine else {}

        statuses.wait_for(lambda m: status(m, "till").get("reason") == "stopped"
                          and status(m, "entrance").get("status") == "live", timeout_s=300)
        time.sleep(1.0)  # the clip's camera said "stopped" and then closes its connection cleanly (no last will)
        assert second.poll() is None, (tmp_path / "worker2.log").read_text()
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=10)
        statuses.wait_for(lambda m: status(m, "entrance").get("reason") == "connection lost", timeout_s=60)

        # What the workers published: every person who left, once (QoS 1 may repeat a message).
        ended = {(x["camera"], x["seq"]): x for m in ends.messages if (x := m.json())["type"] == "end"}
        expected = {camera: sum(1 for c, _ in ended if c == camera) for camera in ("door", "desk", "till")}
        assert expected["desk"] == 6 and expected["door"] >= 10 and expected["till"] >= 10

        def latest(messages):
            snapshots = {}
            for message in messages:
                snapshots[message.topic] = message.json()
            return snapshots

        def caught_up(messages):
            snapshots = latest(messages)
            return len(snapshots) == 2 and sum(s["people"] for s in snapshots.values()) == len(ended) and all(
                s["cameras"].get("entrance", {}).get("reason") == "connection lost" for s in snapshots.values())

        snapshots = list(latest(published.wait_for(caught_up, timeout_s=60)).values())
        for process in processes[:2]:
            process.send_signal(signal.SIGTERM)
        for process in processes[:2]:
            assert process.wait(timeout=30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for subscriber in subscribers:
            subscriber.close()
        live.kill()
        broker.stop()

    # The group shared the events (the broker gave each message to one aggregator) and the counts add up.
    assert all(s["people"] > 0 for s in snapshots)
    for camera, count in expected.items():
        assert sum(_people(s, camera) for s in snapshots) == count, camera
    # The cross-camera counts agree with worker 1's own summary for its cameras.
    own = {r["camera"]: r for r in json.loads((tmp_path / "worker1.json").read_text())["counts"]["totals"]}
    for camera in ("door", "desk"):
        for key in ("people", "labelled", "estimating", "female", "male"):
            assert sum(sum(r[key] for r in s["totals"] if r["camera"] == camera) for s in snapshots) == \
                own[camera][key], (camera, key)
    # Each aggregator's files: the final snapshot, and a store that python -m stream.report merges.
    finals = [json.loads((tmp_path / f"agg{k}.json").read_text()) for k in range(2)]
    assert sum(f["people"] for f in finals) == len(ended)
    assert finals[0]["cameras"]["entrance"] == {"status": "offline", "reason": "connection lost"}
    assert finals[0]["cameras"]["till"]["reason"] == "stopped"
    report = subprocess.run([sys.executable, "-m", "stream.report", str(tmp_path / "agg0.jsonl"),
                             str(tmp_path / "agg1.jsonl"), "--window", "1h", "--out", str(tmp_path / "report")],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith(f"{len(ended)} people"), report.stdout


def test_aggregator_reads_its_store_back_after_a_restart(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        store = tmp_path / "store.jsonl"
        end = {"type": "end", "camera": "door", "seq": 3, "time": 1_800_000_100.0, "track_id": 1,
               "after": {"track_id": 1, "duration_s": 40.0, "age_group": "21-30", "gender": "female"}}
        store.write_text(json.dumps(end) + "\n" + '{"type": "end", "cam')  # a line cut by a kill at the end
        process = subprocess.Popen([sys.executable, "-m", "stream.aggregate", "--broker",
                                    f"mqtt://127.0.0.1:{broker.port}/shop", "--store", str(store), "--summary",
                                    str(tmp_path / "s.json"), "--publish-every", "0.2"], cwd=REPO, env=child_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (tmp_path / "s.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        broker.stop()
    snapshot = json.loads((tmp_path / "s.json").read_text())
    (row,) = [r for r in snapshot["rows"] if r["camera"] == ALL_CAMERAS]
    assert (row["people"], row["age_21-30"], row["female"], row["dwell_mean_s"]) == (1, 1, 1, 40.0)


@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ("http://127.0.0.1/shop", r"error: --broker 'http://127.0.0.1/shop': give mqtt://HOST\[:PORT\]/PREFIX"),
        ("mqtt://127.0.0.1:1/shop", r"error: cannot connect to the MQTT broker mqtt://127.0.0.1:1/shop"),
        ("mqtt://127.0.0.1:99999/shop", r"error: --broker .*: the port must be a number from 1 to 65535"),
        ("mqtt://127.0.0.1/", r"error: --broker .*: give the host and the workers' topic prefix"),
        ("mqtt://u:secret@127.0.0.1:1/shop",
         r"error: cannot connect to the MQTT broker mqtt://\*\*\*@127.0.0.1:1/shop"),
    ],
)
def test_aggregator_bad_broker_exits_2_with_one_line(broker: str, expected: str) -> None:
    result = subprocess.run([sys.executable, "-m", "stream.aggregate", "--broker", broker, "--timeout", "3"],
                            cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert re.search(expected, line), line
    assert "secret" not in result.stderr


def test_parse_broker() -> None:
    assert parse_broker("mqtts://a%40b:p%3Aw@host/site/shop") == ("host", 8883, "site/shop", "a@b", "p:w", True)
    assert parse_broker("mqtt://host:1884/shop/") == ("host", 1884, "shop", None, None, False)


def test_cli_help_names_the_aggregator_and_report() -> None:
    for module in ("stream.aggregate", "stream.report"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0 and "usage:" in result.stdout
    assert run_cli("--help").returncode == 0
