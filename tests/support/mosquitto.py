"""A private Mosquitto broker on a free loopback port, and a paho subscriber that records what arrives.

Needs the Debian packages ``mosquitto`` (the broker and ``mosquitto_passwd``) and ``openssl`` for the TLS
certificates; tests that use :func:`mosquitto_binary` skip with the install line when they are missing.
Each broker gets its own config file, log, password file, persistence folder and certificates under the
test's temporary folder, so tests never share state with each other or with a system broker.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

APT_HINT = "apt-get install -y mosquitto mosquitto-clients openssl"


def mosquitto_binary() -> str:
    """The broker's path, or skip the test with the install line."""
    for name in ("mosquitto", "/usr/sbin/mosquitto"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"mosquitto not installed; {APT_HINT}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip(f"openssl not installed; {APT_HINT}")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = folder / "server.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=face-stream test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]
    for step in steps:
        subprocess.run([str(s) for s in step], check=True, capture_output=True, timeout=60)
    return TlsFiles(ca, cert, key)


class Mosquitto:
    """One broker process: start, stop (SIGTERM: it saves its persistence), kill, restart on the same port.

    Args:
        folder: Where its config, log, password file and persistence go.
        users: ``{user: password}``; when given, anonymous clients are refused.
        tls: Certificates for a TLS listener (then the port speaks only TLS).
        persistence: Keep sessions and queued messages across a restart.
    """

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None, tls: TlsFiles | None = None,
                 persistence: bool = False) -> None:
        self.binary = mosquitto_binary()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = folder / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1", f"allow_anonymous {'false' if users else 'true'}",
                 "log_dest stderr", "log_type all", "log_timestamp true",
                 # Mosquitto started as root would switch to the 'mosquitto' user, which cannot read tmp files.
                 f"user {getpass.getuser()}"]
        if users:
            passwords = folder / "passwords"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, password],
                               check=True, capture_output=True, timeout=30)
            lines.append(f"password_file {passwords}")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if persistence:
            store = folder / "store"
            store.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {store}/", "autosave_interval 1"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start: {self.log.read_text()[-800:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()[-800:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed (QoS 1) to ``topic``, recording every message; reconnects on its own.

    Args:
        persistent: A fixed client id and a kept session: with a broker that has persistence, messages
            published while this subscriber was cut off are delivered when it is back.
    """

    def __init__(self, port: int, topic: str, *, persistent: bool = False, username: str | None = None,
                 password: str | None = None, tls: TlsFiles | None = None) -> None:
        self.topic = topic
        self.messages: list[Message] = []
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        client_id = f"test-sub-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent,
                                  protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.2, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError(f"test subscriber could not subscribe to {topic} on port {port}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, message.payload, bool(message.retain)))
            self._lock.notify_all()

    def wait_for(self, predicate: Callable[[list[Message]], bool], timeout_s: float = 20.0) -> list[Message]:
        """Wait until ``predicate(messages)`` holds; returns a copy of the messages (fails on timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting on {self.topic}; got {len(self.messages)} messages: "
                                         f"{[m.payload[:120] for m in self.messages[-5:]]}")
                self._lock.wait(min(left, 0.2))
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
