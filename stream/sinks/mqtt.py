"""Live events to an MQTT broker: ``--events mqtt://[user:password@]host[:port]/PREFIX[?options]``.

Topics (``CAMERA`` is the camera's name, ``?camera=`` or taken from the source):

* ``PREFIX/CAMERA/events``: person events ``new`` / ``update`` / ``end`` (:mod:`stream.events`), QoS 1.
* ``PREFIX/CAMERA/counts``: people in view by age group and gender, every ``counts`` seconds, QoS 1.
* ``PREFIX/CAMERA/status``: ``live`` at start, ``offline`` at the end, retained; the broker publishes the
  last will (``offline``, reason ``connection lost``) when the worker dies without saying goodbye.

Nothing here may stall the frame loop: :meth:`MqttSink.write` only turns the frame into events and puts
them on a bounded in-memory queue. A publisher thread appends them to an on-disk spool (one JSON line each)
and publishes from the spool in order, at most ``window`` messages awaiting the broker's PUBACK; the spool's
read position advances only over acknowledged messages and is saved next to it. When the broker is gone the
spool keeps growing (paho reconnects in its network thread) up to ``spool_mb``; what does not fit is counted
as dropped and reported (status messages are always kept). When the broker is back, paho first re-sends what
was in flight, then the spool is sent in order. What is still unacknowledged at exit stays in the spool and is
sent first by the next run with the same spool (QoS 1 is at-least-once: a message may arrive twice; ``seq``
tells repeats apart).

Why paho-mqtt: it is the reference Python MQTT client, maintained by the Eclipse Foundation (which also
hosts Mosquitto), supports MQTT 3.1.1/5, TLS, last will and automatic reconnection, and has no dependencies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import queue
import re
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from stream.config import SinkOptions
from stream.events import PersonEvents, camera_name, check_camera_name
from stream.redact import credentials, redact_url
from stream.signals import wait_for_worker
from stream.sinks.base import Sink, SinkContext, SinkError
from stream.types import Faces, Frame

logger = logging.getLogger(__name__)

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
DEFAULT_PREFIX = "face-stream"
# Events the frame loop may hand over before the publisher thread has written them to the spool. The thread
# appends a line in microseconds, so this fills only if the disk stalls; then events are dropped and counted.
_QUEUE_SIZE = 10_000
# How often the spool's read position is saved (a crash re-sends at most this much: QoS 1 allows repeats).
_SAVE_EVERY_S = 0.5


def is_mqtt_url(value: str) -> bool:
    """Whether an ``--events`` value names a broker (``mqtt://`` or ``mqtts://``)."""
    return str(value).lower().startswith(("mqtt://", "mqtts://"))


def _default_spool_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "face-stream" / "mqtt-spool"


@dataclass(frozen=True)
class MqttSettings:
    """One ``--events mqtt://`` URL, parsed. Query parameters (all optional):

    Attributes:
        camera: ``camera=``: the camera's name in topics and events (default: from the source).
        ca: ``ca=FILE``: CA certificate(s) that signed the broker's certificate (mqtts; default: the system's).
        cert / key: ``cert=FILE&key=FILE``: a client certificate, for brokers that require one.
        insecure: ``insecure=1``: do not check that the certificate names the host (still encrypted).
        client_id: ``client_id=``: MQTT client id (default ``face-stream-CAMERA-<random>``).
        heartbeat_s: ``heartbeat=S``: also repeat a person's unchanged label every S seconds (0: off).
        counts_s: ``counts=S``: publish counts every S seconds of source time (0: off).
        spool: ``spool=DIR``: folder of the on-disk spool.
        spool_mb: ``spool_mb=MB``: most undelivered data kept on disk; beyond it events are dropped and counted.
        timeout_s: ``timeout=S``: bound of every network wait (connect, TLS handshake, CONNACK).
        drain_s: ``drain=S``: at the end, wait this long for the broker to acknowledge what is left.
        keepalive_s: ``keepalive=S``: MQTT keep-alive; a dead broker is noticed within 1.5x this.
        window: ``window=N``: messages in flight (sent, not yet acknowledged) at most.
    """

    url: str
    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None
    prefix: str
    camera: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    client_id: str | None = None
    heartbeat_s: float = 30.0
    counts_s: float = 60.0
    spool: str | None = None
    spool_mb: float = 64.0
    timeout_s: float = 5.0
    drain_s: float = 5.0
    keepalive_s: int = 30
    window: int = 100

    @property
    def where(self) -> str:
        """``mqtt://host:port/prefix`` without credentials, for messages."""
        return redact_url(self.url).split("?", 1)[0]


_NUMBERS: dict[str, tuple[str, float, float]] = {
    # query key: (field, lowest, highest)
    "heartbeat": ("heartbeat_s", 0.0, 86400.0),
    "counts": ("counts_s", 0.0, 86400.0),
    "spool_mb": ("spool_mb", 0.01, 1_000_000.0),
    "timeout": ("timeout_s", 0.1, 300.0),
    "drain": ("drain_s", 0.0, 3600.0),
    "keepalive": ("keepalive_s", 5.0, 3600.0),
    "window": ("window", 1.0, 1000.0),
}
_STRINGS = {"camera": "camera", "ca": "ca", "cert": "cert", "key": "key", "client_id": "client_id", "spool": "spool"}
_FLAGS = {"insecure": "insecure"}
QUERY_KEYS = (*_STRINGS, *_NUMBERS, *_FLAGS)


def parse_mqtt_url(url: str) -> MqttSettings:
    """Parse and check ``mqtt[s]://[user[:password]@]host[:port]/prefix[?key=value&...]``.

    Raises:
        SinkError: One line naming what is wrong (the password is never shown).
    """
    shown = redact_url(url)
    bare, user, secret = credentials(url)
    try:
        parts = urlsplit(bare)
    except ValueError:  # an unclosed '[' of an IPv6 host
        raise SinkError(f"--events {shown!r}: not a valid URL; use mqtt://HOST[:PORT]/PREFIX") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise SinkError(f"--events {shown!r}: an MQTT URL starts with mqtt:// or mqtts://")
    try:
        port = parts.port or SCHEMES[scheme]
    except ValueError:
        raise SinkError(f"--events {shown!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise SinkError(f"--events {shown!r}: no broker host; use mqtt://HOST[:PORT]/PREFIX")
    if parts.fragment or bare.endswith("#"):
        raise SinkError(f"--events {shown!r}: the topic prefix may not hold '+', '#' or empty levels "
                        "(write a '#' in it as %23)")
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if any(c in prefix for c in "+#\0") or "//" in prefix:
        raise SinkError(f"--events {shown!r}: the topic prefix {prefix!r} may not hold '+', '#' or empty levels")
    values: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _STRINGS:
            if not value:
                raise SinkError(f"--events {shown!r}: {key}= needs a value")
            values[_STRINGS[key]] = value
        elif key in _NUMBERS:
            field_name, low, high = _NUMBERS[key]
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not low <= number <= high:
                raise SinkError(f"--events {shown!r}: {key}= must be a number from {low:g} to {high:g}, got {value!r}")
            values[field_name] = int(number) if field_name in ("keepalive_s", "window") else number
        elif key in _FLAGS:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise SinkError(f"--events {shown!r}: {key}= must be 1 or 0, got {value!r}")
            values[_FLAGS[key]] = value.lower() in ("1", "true", "yes")
        else:
            raise SinkError(f"--events {shown!r}: unknown option {key!r}; valid options: {', '.join(QUERY_KEYS)}")
    if "camera" in values:
        try:
            check_camera_name(values["camera"])
        except ValueError as err:
            raise SinkError(f"--events {shown!r}: {err}") from None
    if scheme != "mqtts" and any(k in values for k in ("ca", "cert", "key", "insecure")):
        raise SinkError(f"--events {shown!r}: ca=, cert=, key= and insecure= need TLS; use mqtts://")
    if ("cert" in values) != ("key" in values):
        raise SinkError(f"--events {shown!r}: a client certificate needs both cert= and key=")
    for key in ("ca", "cert", "key"):
        if key in values and not Path(values[key]).expanduser().is_file():
            raise SinkError(f"--events {shown!r}: {key}= file {values[key]!r} does not exist")
    return MqttSettings(url=url, tls=scheme == "mqtts", host=host, port=port, username=user or None,
                        password=secret, prefix=prefix, **values)


class Spool:
    """An append-only file of undelivered messages with a saved read position (``FILE.offset``).

    Used by one thread only. Lines before the committed position are acknowledged; the file is emptied when
    everything is, and its acknowledged head is cut off once it is larger than half the limit. Offsets handed
    out and taken back are logical (they keep growing across cuts), so messages in flight stay valid.

    Args:
        path: The spool file; a lock on it keeps a second process from sharing it.
        max_bytes: Most undelivered bytes kept; :meth:`append` refuses more.

    Raises:
        SinkError: The file cannot be created or is in use by another process.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._offset_path = path.with_name(path.name + ".offset")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Held open for the sink's lifetime, closed in close().
            self._file: IO[bytes] = open(path, "a+b")  # noqa: SIM115
            # Appends go straight to the OS through their own descriptor (O_APPEND: always at the end): a write a
            # full disk cuts short is seen at once and undone (a buffered one would keep the rest and add it to a
            # later line). Reads seek first, through the buffered file, whose own file position this leaves alone.
            self._append_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as err:
            raise SinkError(f"cannot open the MQTT spool {str(path)!r} ({err.strerror or err}); "
                            "choose another folder with ?spool=DIR") from err
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._append_fd)
            self._file.close()
            raise SinkError(f"the MQTT spool {str(path)!r} is in use by another process; "
                            "give each run its own camera name or ?spool=DIR") from None
        self._size = self._complete_lines()
        self._committed = min(self._load_offset(), self._size)  # all three are positions in the file
        self._read_pos = self._committed
        self._base = 0  # bytes cut from the file's head by this process: logical offset = file offset + _base
        self._saved = self._committed
        self._saved_at = 0.0

    def _complete_lines(self) -> int:
        """The file's size after dropping a line cut short by a crash mid-write (it would spoil the next)."""
        size = self._file.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        self._file.seek(max(0, size - 65536))
        tail = self._file.read()
        if tail.endswith(b"\n"):
            return size
        keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        self._file.truncate(keep)
        logger.warning("mqtt spool %s: dropped an incomplete last line left by a crash", self.path)
        return keep

    def _load_offset(self) -> int:
        try:
            return max(0, int(self._offset_path.read_text(encoding="ascii").strip() or 0))
        except (OSError, ValueError):
            return 0

    def _save_offset(self, value: int) -> None:
        tmp = self._offset_path.with_name(self._offset_path.name + ".tmp")
        try:
            tmp.write_text(str(value), encoding="ascii")
            os.replace(tmp, self._offset_path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: no half-written position is left beside the spool
            raise
        self._saved, self._saved_at = value, time.monotonic()

    @property
    def unread(self) -> bool:
        return self._read_pos < self._size

    def pending_lines(self) -> int:
        """Undelivered messages (read from disk: for reports only)."""
        self._file.seek(self._committed)
        return sum(1 for _ in self._file)

    def append(self, line: bytes, *, force: bool = False) -> bool:
        """Add one message line (ending in a newline); False when it would pass the limit (unless ``force``)."""
        if not force and self._size - self._committed + len(line) > self.max_bytes:
            return False
        # Written to the OS at once: a kill -9 of this process loses nothing the spool accepted.
        try:
            written = os.write(self._append_fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            with contextlib.suppress(OSError):  # the spool ends on a complete line whatever the disk does
                os.ftruncate(self._append_fd, self._size)
            raise
        self._size += len(line)
        return True

    def read(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` unread lines as ``(logical end offset, line)``; the read position moves past them."""
        self._file.seek(self._read_pos)
        lines: list[tuple[int, bytes]] = []
        while len(lines) < limit and self._read_pos < self._size:
            line = self._file.readline()
            self._read_pos += len(line)
            lines.append((self._base + self._read_pos, line))
        return lines

    def commit(self, offset: int) -> None:
        """Everything before the logical ``offset`` is acknowledged: save the position (throttled), reclaim space."""
        self._committed = max(self._committed, offset - self._base)
        if self._committed >= self._size:
            # The offset is saved first: a crash between the two steps re-sends, it never skips.
            self._save_offset(0)
            self._file.truncate(0)
            self._base += self._size
            self._size = self._read_pos = self._committed = 0
        elif self._committed > self.max_bytes // 2:
            self._file.seek(self._committed)
            tail = self._file.read()
            self._save_offset(0)
            self._file.truncate(0)
            self._file.write(tail)
            self._file.flush()
            self._base += self._committed
            self._read_pos -= self._committed
            self._size = len(tail)
            self._committed = 0
        elif self._committed != self._saved and time.monotonic() - self._saved_at >= _SAVE_EVERY_S:
            self._save_offset(self._committed)

    def close(self) -> None:
        """Save the read position and release the file."""
        try:
            if self._committed != self._saved:
                self._save_offset(self._committed)
        except OSError as err:
            # The next run re-sends from the last saved position (QoS 1 is at-least-once): nothing is lost.
            logger.warning("mqtt spool %s: saving the read position failed (%s); the next run may re-send "
                           "some messages", self.path, err.strerror or err)
        finally:
            os.close(self._append_fd)
            self._file.close()


class MqttSink(Sink, kind="mqtt"):
    """Publish the event model of one camera to an MQTT broker (see the module docstring).

    Args:
        url: ``mqtt[s]://[user[:password]@]host[:port]/PREFIX[?options]`` (options: :class:`MqttSettings`).
        options: Accepted for a uniform constructor (the URL carries the MQTT options).
        camera: The source's name; the camera is ``?camera=`` if given, else a short name made from this.
        named: ``camera`` is already the camera's name (``stream.config.CameraSpec.name``): used as it is.

    Raises:
        SinkError: A malformed URL, a broker that cannot be reached or refuses the credentials, a TLS
            failure, or a spool that cannot be written; one line, the password never in it.
    """

    @classmethod
    def open(cls, target: str, context: SinkContext) -> MqttSink:
        # A camera named by the run (stream.cameras) keeps its name; else one is made from the source.
        return cls(target, context.options, camera=context.camera or context.source_name or None,
                   named=bool(context.camera))

    def __init__(self, url: str, options: SinkOptions | None = None, *, camera: str | None = None,
                 named: bool = False) -> None:
        super().__init__()
        self.settings = settings = parse_mqtt_url(url)
        given = check_camera_name(camera) if named and camera else camera_name(camera) if camera else "camera"
        self.camera = settings.camera or given
        self.model = PersonEvents(self.camera, heartbeat_s=settings.heartbeat_s, counts_every_s=settings.counts_s)
        base = f"{settings.prefix}/{self.camera}"
        self.topics = {"events": f"{base}/events", "counts": f"{base}/counts", "status": f"{base}/status"}
        spool_dir = Path(settings.spool).expanduser() if settings.spool else _default_spool_dir()
        spool_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{settings.host}_{settings.port}_{base}")
        self.spool = Spool(spool_dir / f"{spool_name}.jsonl", int(settings.spool_mb * 1024 * 1024))
        self._queue: queue.Queue[tuple[str, bool, dict[str, Any]]] = queue.Queue(_QUEUE_SIZE)
        self._ended: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._acked: set[int] = set()
        self._inflight: deque[tuple[int, int, int]] = deque()  # (mid, spool end offset, connection number)
        self._connection = 0
        self._connected = False
        self._announce = False
        self._down_since: float | None = None
        self._connack: Any = None
        self._connack_event = threading.Event()
        self._stopping = False
        self._drain_until = 0.0
        self.delivered = 0
        self.dropped = 0
        self._carried_over = 0
        self._skipped = 0
        self.left_in_spool = 0
        try:
            self.client = self._connect()
        except BaseException:
            self.spool.close()
            raise
        self._carried_over = self.spool.pending_lines()
        if self._carried_over:
            logger.info("mqtt %s: %d undelivered message(s) from an earlier run in %s are sent first",
                        settings.where, self._carried_over, self.spool.path)
        self._enqueue(self.model.status("live"))
        self._publisher_done = threading.Event()  # never read from is_alive(): see wait_for_worker
        self._thread = threading.Thread(target=self._publish_loop, name=f"mqtt-{self.camera}", daemon=True)
        self._thread.start()
        logger.info("mqtt %s: camera %r publishing to %s/{events,counts,status}", settings.where, self.camera, base)

    @property
    def shows_image(self) -> bool:
        return False

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up right now (paho reconnects on its own when it is not)."""
        with self._lock:
            return self._connected

    # -- connection (paho's network thread calls the on_* methods) ------------------------------------------

    def _connect(self) -> mqtt.Client:
        s = self.settings
        client_id = s.client_id or f"face-stream-{self.camera}-{uuid.uuid4().hex[:8]}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        client.connect_timeout = s.timeout_s
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, min(8, int(s.keepalive_s))))
        client.max_inflight_messages_set(s.window)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca and str(Path(s.ca).expanduser()),
                               certfile=s.cert and str(Path(s.cert).expanduser()),
                               keyfile=s.key and str(Path(s.key).expanduser()))
            except (OSError, ssl.SSLError, ValueError) as err:
                raise SinkError(f"MQTT TLS setup for {s.where} failed ({_reason(err)}); check ca=, cert= and key=") \
                    from None
            client.tls_insecure_set(s.insecure)
        will = {"type": "status", "camera": self.camera, "status": "offline", "reason": "connection lost"}
        client.will_set(self.topics["status"], json.dumps(will), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        try:
            client.connect(s.host, s.port, keepalive=s.keepalive_s)
        except ssl.SSLCertVerificationError as err:
            raise SinkError(f"MQTT broker {s.where}: TLS certificate not trusted ({err.verify_message}); "
                            "give the broker's CA with ?ca=FILE") from None
        except (OSError, ssl.SSLError, ValueError) as err:
            raise SinkError(f"cannot connect to the MQTT broker {s.where} ({_reason(err)}); "
                            "check the host and port and that the broker is running") from None
        client.loop_start()
        if not self._connack_event.wait(s.timeout_s):
            _stop_client(client)
            raise SinkError(f"the MQTT broker {s.where} did not answer within {s.timeout_s:g} s; "
                            "check that HOST:PORT is an MQTT broker (mqtts:// for TLS ports)")
        code = self._connack
        if code is not None and code.is_failure:
            _stop_client(client)
            hint = ("check the user name and password in the URL" if code.value in (4, 5, 134, 135)
                    else "check the broker's settings")
            raise SinkError(f"the MQTT broker {s.where} refused the connection ({code}); {hint}")
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            self._connack = reason
            if not reason.is_failure:
                self._connection += 1
                self._connected = True
                # The broker may have published the last will while we were away: say "live" again.
                self._announce = self._connection > 1
                if self._down_since is not None:
                    logger.warning("mqtt %s: broker back after %.1f s; sending the spooled events",
                                   self.settings.where, time.monotonic() - self._down_since)
                    self._down_since = None
            self._lock.notify_all()
        self._connack_event.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            if was_connected and not self._stopping:
                self._down_since = time.monotonic()
                logger.warning("mqtt %s: broker connection lost (%s); events are spooled to %s until it is back",
                               self.settings.where, reason, self.spool.path)
            self._lock.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._acked.add(mid)
            self._lock.notify_all()

    # -- frame loop side --------------------------------------------------------------------------------------

    def write(self, frame: Frame, faces: Faces) -> None:
        """Turn the frame into events and queue them; never waits for the disk or the network."""
        self._check_open()
        if self._announce:
            # Made here, in the frame loop's thread, which owns the event model (and its seq counter).
            self._announce = False
            self._enqueue(self.model.status("live", reason="reconnected"))
        ended, self._ended = self._ended, []
        for event in self.model.step(frame, faces, ended):
            self._enqueue(event)

    def camera_status(self, status: str, **fields: Any) -> None:
        """Publish the camera's status (``live``, ``reconnecting``, ``offline``; retained) from the frame loop's
        thread, e.g. while its source reconnects. ValueError for an unknown status."""
        self._check_open()
        self._enqueue(self.model.status(status, **fields))

    def end_tracks(self, records: Iterable[dict[str, Any]]) -> None:
        """Tracks that ended: their ``end`` events go out with the next frame, or at close."""
        self._ended.extend(records)

    def _enqueue(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        topic = self.topics["status" if kind == "status" else "counts" if kind == "counts" else "events"]
        try:
            self._queue.put_nowait((topic, kind == "status", event))
        except queue.Full:
            with self._lock:
                self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("mqtt %s: %d event(s) dropped (the spool writer cannot keep up)",
                               self.settings.where, self.dropped)
        with self._lock:
            self._lock.notify_all()

    # -- publisher thread --------------------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        try:
            self._publisher()
        except Exception as err:  # noqa: BLE001 (a thread's last resort: say it, the run goes on without MQTT)
            logger.error("mqtt %s: the publisher stopped (%s: %s); undelivered events stay in the spool %s",
                         self.settings.where, type(err).__name__, err, self.spool.path)
        finally:
            self._publisher_done.set()

    def _publisher(self) -> None:
        final_status_written = False
        spool_full_logged = False
        while True:
            with self._lock:
                stopping = self._stopping
            if stopping and self._queue.empty() and not final_status_written:
                # Built here, after every earlier event reached the spool, so its counts are final.
                self._queue.put((self.topics["status"], True, self._final_status()))
                final_status_written = True
            while True:
                try:
                    topic, retain, event = self._queue.get_nowait()
                except queue.Empty:
                    break
                line = json.dumps({"topic": topic, "retain": retain, "payload": event}, separators=(",", ":"),
                                  allow_nan=False).encode() + b"\n"
                try:
                    # Status messages (a handful a run, retained) are kept even when the spool is full: a new run's
                    # "live" must replace the last run's retained "offline", and the final one carries the drop count.
                    accepted = self.spool.append(line, force=topic == self.topics["status"])
                except OSError as err:
                    accepted = False
                    logger.warning("mqtt %s: writing the spool failed (%s)", self.settings.where, _reason(err))
                if not accepted:
                    with self._lock:
                        self.dropped += 1
                    if not spool_full_logged:
                        logger.warning("mqtt %s: spool %s is full (%g MB); newer events are dropped and counted",
                                       self.settings.where, self.spool.path, self.settings.spool_mb)
                        spool_full_logged = True
            with self._lock:
                committed = None
                while self._inflight and self._inflight[0][0] in self._acked:
                    mid, end, _ = self._inflight.popleft()
                    self._acked.discard(mid)
                    committed = end
                    self.delivered += 1
                # After a reconnect paho first re-sends what was in flight; new messages wait behind them.
                can_send = (self._connected and len(self._inflight) < self.settings.window
                            and all(c == self._connection for _, _, c in self._inflight))
                connection = self._connection
                room = self.settings.window - len(self._inflight)
            if committed is not None:
                self._commit(committed)
            if can_send and self.spool.unread:
                for end, line in self.spool.read(room):
                    self._send(line, end, connection)
                continue
            with self._lock:
                done = final_status_written and not self._inflight and not self.spool.unread
                if done or (final_status_written and time.monotonic() >= self._drain_until):
                    return
                if self._queue.empty() and not (self._inflight and self._inflight[0][0] in self._acked):
                    self._lock.wait(0.1)

    def _commit(self, offset: int) -> None:
        try:
            self.spool.commit(offset)
        except OSError as err:
            logger.warning("mqtt %s: updating the spool failed (%s)", self.settings.where, _reason(err))

    def _send(self, line: bytes, end: int, connection: int) -> None:
        try:
            item = json.loads(line)
            payload = json.dumps(item["payload"], separators=(",", ":"))
            topic, retain = str(item["topic"]), bool(item["retain"])
        except (ValueError, KeyError, TypeError):
            logger.warning("mqtt %s: skipping an unreadable spool line", self.settings.where)
            with self._lock:
                # Stands in the line's place until the messages before it are acknowledged (mids are > 0).
                self._skipped -= 1
                self._inflight.append((self._skipped, end, connection))
                self._acked.add(self._skipped)
            return
        # Not under self._lock: paho calls on_publish holding its own lock, which publish() takes too. A PUBACK
        # handled before the append below is not lost: acknowledged mids wait in self._acked.
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            self._inflight.append((info.mid, end, connection))

    def _final_status(self) -> dict[str, Any]:
        with self._lock:
            dropped = self.dropped
        # seq counts every event of the run, so with ``dropped`` a consumer can tell what it missed and why.
        return self.model.status("offline", reason="stopped", dropped=dropped)

    # -- close ------------------------------------------------------------------------------------------------

    def _close(self) -> None:
        for event in self.model.finish(self._ended):
            self._enqueue(event)
        self._ended = []
        with self._lock:
            self._drain_until = time.monotonic() + self.settings.drain_s
            self._stopping = True
            self._lock.notify_all()
        # A second Ctrl-C/SIGTERM during the drain ends it at once: what is unsent stays in the spool for the next
        # run, which is closed only after the publisher has left it; the signal is raised after that.
        stopped_again = wait_for_worker(self._publisher_done, hurry=self._stop_draining,
                                        timeout_s=self.settings.drain_s + 2 * self.settings.timeout_s)
        with self._lock:
            connected = self._connected
        try:
            if connected:
                # A clean DISCONNECT: the broker discards the last will (the retained status says offline).
                self.client.disconnect()
        finally:
            _stop_client(self.client)
            try:
                left = self.spool.pending_lines()
            finally:
                self.spool.close()
        where = self.settings.where
        if left or self.dropped:
            logger.warning("mqtt %s: %d message(s) delivered, %d left in the spool %s (sent first by the next run), "
                           "%d dropped", where, self.delivered, left, self.spool.path, self.dropped)
        else:
            logger.info("mqtt %s: %d message(s) delivered, none left, none dropped", where, self.delivered)
        self.left_in_spool = left
        if stopped_again is not None:
            raise stopped_again

    def _stop_draining(self) -> None:
        with self._lock:
            self._drain_until = time.monotonic()
            self._lock.notify_all()


def _stop_client(client: mqtt.Client) -> None:
    # loop_stop joins paho's network thread; a reconnection attempt in progress ends within connect_timeout.
    with contextlib.suppress(Exception):
        client.loop_stop()


def _reason(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused: nothing listens there"
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "no answer: timed out"
    if isinstance(err, socket.gaierror):
        return f"unknown host: {err.strerror or err}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).splitlines()[0] if str(err) else type(err).__name__
