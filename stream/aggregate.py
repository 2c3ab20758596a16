"""``python -m stream.aggregate --broker mqtt://HOST[:PORT]/PREFIX``: people over time across every worker's cameras.

Workers (``python -m stream --source ... --events mqtt://HOST/PREFIX``, each with its share of the cameras, on
any machine) publish to one broker; the aggregator consumes from it and keeps the cross-camera counts of
:mod:`stream.counts` (people per window by camera, age group and gender, dwell, share still estimating):

* ``$share/GROUP/PREFIX/+/events`` (MQTT 5 shared subscription, QoS 1): the people. Each ``end`` event carries
  the person's whole summary (label, duration), so it is counted on its own, wherever it lands: several
  aggregators in one ``--group`` share the events between them (the broker hands each message to one of
  them) and their tables add up; one that dies leaves the others consuming.
* ``PREFIX/+/status`` (a plain subscription: the broker's retained statuses and the workers' last wills):
  which cameras are ``live``, ``reconnecting`` or ``offline`` (``reason: connection lost`` when a worker died).

Every ``--publish-every`` seconds and at exit it publishes ``PREFIX/_aggregate/ID/counts`` (retained: the
table and the camera statuses, for dashboards) and rewrites ``--counts`` (CSV/Parquet) and ``--summary``
(JSON) in one step each. ``--store FILE.jsonl`` appends every counted event, flushed, and reads it back at
start: an aggregator restarted by its process manager carries on with its counts (with ``--client-id``, the
broker also keeps what arrives while it is away, for ``--session-expiry`` seconds). ``python -m stream.report
FILE.jsonl [...]`` turns stores (of one or several aggregators) into the table and the chart.

Exit codes: 0 (stopped by SIGTERM or Ctrl-C, outputs written), 2 bad input or unreachable broker (one line).
"""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit

from stream.counts import REPORT_WINDOW, EventsCounter, PeopleCounter, parse_window, table_bytes, table_format
from stream.signals import signals_set

logger = logging.getLogger("stream.aggregate")

EXIT_OK, EXIT_BAD_INPUT = 0, 2
DEFAULT_GROUP = "face-stream-aggregate"
# QoS 1 re-delivers a message the broker did not see acknowledged: the same end event may arrive twice.
_SEEN_LIMIT = 200_000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


class AggregateError(RuntimeError):
    """A bad broker URL, an unreachable or refusing broker, an unwritable output (one line)."""


def parse_broker(url: str) -> tuple[str, int, str, str | None, str | None, bool]:
    """``mqtt[s]://[user:password@]host[:port]/PREFIX`` → host, port, prefix, user, password, tls.

    Raises:
        AggregateError: A malformed URL (the password never in the message).
    """
    from stream.redact import credentials, redact_url

    shown = redact_url(url)
    bare, user, password = credentials(url)
    try:
        parts = urlsplit(bare)
    except ValueError:  # an unclosed '[' of an IPv6 host
        raise AggregateError(f"--broker {shown!r}: not a valid URL; give mqtt://HOST[:PORT]/PREFIX") from None
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise AggregateError(f"--broker {shown!r}: give mqtt://HOST[:PORT]/PREFIX (or mqtts:// for TLS)")
    try:
        port = parts.port or (8883 if scheme == "mqtts" else 1883)
    except ValueError:
        raise AggregateError(f"--broker {shown!r}: the port must be a number from 1 to 65535") from None
    prefix = parts.path.strip("/")
    if not parts.hostname or not prefix or any(c in prefix for c in "+#\0"):
        raise AggregateError(f"--broker {shown!r}: give the host and the workers' topic prefix, "
                             "mqtt://HOST[:PORT]/PREFIX (no '+' or '#')")
    return parts.hostname, port, prefix, user or None, password, scheme == "mqtts"


class Aggregator:
    """Counts the ``end`` events it is given and follows camera statuses (thread-safe)."""

    def __init__(self, window_s: float, store: IO[str] | None = None) -> None:
        self.window_s = window_s
        self.events = EventsCounter(PeopleCounter())
        self.status: dict[str, dict[str, Any]] = {}
        self.received = 0
        self._seen: set[tuple[Any, ...]] = set()
        self._store = store
        self._lock = threading.Lock()

    def add_event(self, event: dict[str, Any], *, stored: bool = False) -> bool:
        """Count an ``end`` event (others are ignored); False for a repeat or anything else."""
        if event.get("type") != "end" or not isinstance(event.get("after"), dict):
            return False
        key = (event.get("camera"), event.get("seq"), event.get("time"), event.get("track_id"))
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) > _SEEN_LIMIT:
                self._seen.clear()  # repeats come within seconds; an old key is worth nothing
            self._seen.add(key)
            self.events.add(event)
            self.received += 1
            if self._store is not None and not stored:
                self._store.write(json.dumps(event, separators=(",", ":")) + "\n")
                self._store.flush()
        return True

    def set_status(self, camera: str, payload: dict[str, Any]) -> None:
        with self._lock:
            previous = self.status.get(camera, {}).get("status")
            self.status[camera] = {k: payload.get(k) for k in ("status", "reason", "time") if k in payload}
        if payload.get("status") != previous:
            level = logging.WARNING if payload.get("status") == "offline" else logging.INFO
            logger.log(level, "camera %s %s%s", camera, payload.get("status"),
                       f" ({payload['reason']})" if payload.get("reason") else "")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counter = self.events.counter
            return {"window_s": self.window_s, "people": len(counter.people), "rows": counter.rows(self.window_s),
                    "totals": counter.totals(), "cameras": {k: dict(v) for k, v in self.status.items()}}


def _load_store(path: Path, aggregator: Aggregator) -> int:
    if not path.exists():
        return 0
    count = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: the rest is intact
                if isinstance(event, dict) and aggregator.add_event(event, stored=True):
                    count += 1
    except UnicodeDecodeError:
        raise AggregateError(f"--store {path} is not a text (JSON Lines) file; give a new path or the store an "
                             "earlier run wrote") from None
    return count


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from stream.sinks.base import SinkError, same_file, write_atomically
    from stream.sources import redact_url

    host, port, prefix, user, password, tls = parse_broker(args.broker)
    window_s = parse_window(args.window)
    counts_format = table_format(args.counts) if args.counts else None
    given = [(flag, Path(path)) for flag, path in (("--counts", args.counts), ("--summary", args.summary),
                                                   ("--store", args.store)) if path]
    for i, (flag, path) in enumerate(given):
        for other_flag, other in given[:i]:
            if same_file(path, other):  # one would overwrite the other (the store is read back at start)
                raise AggregateError(f"{other_flag} and {flag} name the same file {str(path)!r}; give them "
                                     "different paths")
    where = redact_url(args.broker)
    store_handle: IO[str] | None = None
    if args.store:
        store_path = Path(args.store)
        try:
            store_path.parent.mkdir(parents=True, exist_ok=True)
            store_handle = store_path.open("a", encoding="utf-8")  # noqa: SIM115 (closed in finally)
        except OSError as error:
            raise AggregateError(f"cannot write --store {args.store} ({error.strerror or error})") from None
    aggregator = Aggregator(window_s, store_handle)
    if args.store:
        logger.info("store %s: %d event(s) read back", args.store, _load_store(Path(args.store), aggregator))
    client_id = args.client_id or f"face-stream-aggregate-{uuid.uuid4().hex[:8]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.reconnect_delay_set(1, 8)
    if user is not None:
        client.username_pw_set(user, password)
    if tls:
        try:
            client.tls_set(ca_certs=args.ca and str(Path(args.ca).expanduser()))
        except (OSError, ssl.SSLError, ValueError) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
            raise AggregateError(f"--ca {args.ca}: cannot load it as a CA certificate file ({reason}); give the PEM "
                                 "file of the broker's CA") from None
    connected = threading.Event()
    refused: list[str] = []
    events_topic = f"$share/{args.group}/{prefix}/+/events"
    status_topic = f"{prefix}/+/status"

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            connected.set()
            return
        # Subscribed again on every (re)connection: a clean session forgets them.
        client.subscribe([(events_topic, SubscribeOptions(qos=1)), (status_topic, SubscribeOptions(qos=1))])
        connected.set()
        logger.info("connected to %s as %s; consuming %s and %s", where, client_id, events_topic, status_topic)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        try:
            payload = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError):
            logger.warning("ignored a message on %s that is not JSON", message.topic)
            return
        if not isinstance(payload, dict):
            return
        levels = message.topic.split("/")
        camera = str(payload.get("camera") or levels[-2])
        if levels[-1] == "status":
            aggregator.set_status(camera, payload)
        elif levels[-1] == "events":
            aggregator.add_event({**payload, "camera": camera})

    client.on_connect = on_connect
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = args.session_expiry if args.client_id else 0
    try:
        client.connect(host, port, keepalive=30, clean_start=not args.client_id, properties=properties)
    except (OSError, ValueError) as error:
        raise AggregateError(f"cannot connect to the MQTT broker {where} ({getattr(error, 'strerror', None) or error});"
                             " check the host and port and that the broker is running") from None
    client.loop_start()
    try:
        if not connected.wait(args.timeout):
            raise AggregateError(f"the MQTT broker {where} did not answer within {args.timeout:g} s")
        if refused:
            raise AggregateError(f"the MQTT broker {where} refused the connection ({refused[0]}); check the user "
                                 "name and password in the URL")
        out_topic = f"{prefix}/_aggregate/{client_id}/counts"

        def publish() -> None:
            snapshot = aggregator.snapshot()
            client.publish(out_topic, json.dumps(snapshot, separators=(",", ":")), qos=1, retain=True)
            try:
                if args.counts and counts_format:
                    write_atomically(Path(args.counts), table_bytes(snapshot["rows"], counts_format), "--counts")
                if args.summary:
                    write_atomically(Path(args.summary), json.dumps(snapshot, indent=1) + "\n", "--summary")
            except SinkError as error:
                logger.error("%s", error)
            logger.info("%d people from %d camera(s); %s", snapshot["people"], len(snapshot["cameras"]),
                        ", ".join(f"{k}: {v.get('status')}" for k, v in sorted(snapshot["cameras"].items()))
                        or "no camera status yet")

        while not stop.wait(args.publish_every):
            publish()
        publish()
    finally:
        client.disconnect()
        client.loop_stop()
        if store_handle is not None:
            store_handle.close()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m stream.aggregate",
                     description="Count people across every worker's cameras from an MQTT broker.")
    parser.add_argument("--broker", required=True, metavar="mqtt[s]://[user:password@]host[:port]/PREFIX",
                        help="the broker and the topic prefix the workers publish under (their --events URL)")
    parser.add_argument("--group", default=DEFAULT_GROUP,
                        help=f"shared-subscription group: aggregators of one group share the events ({DEFAULT_GROUP})")
    parser.add_argument("--window", default=REPORT_WINDOW,
                        help=f"count window: 1min, 15min, 1h or seconds (default {REPORT_WINDOW})")
    parser.add_argument("--counts", metavar="PATH.csv|.parquet", help="write the table here (rewritten in one step)")
    parser.add_argument("--summary", metavar="PATH.json", help="write the table, totals and camera statuses here")
    parser.add_argument("--store", metavar="PATH.jsonl", help="append every counted event; read back at start")
    parser.add_argument("--publish-every", type=float, default=10.0, help="seconds between updates (default 10)")
    parser.add_argument("--client-id", help="a fixed MQTT client id: the broker keeps the session (and the events "
                        "sent while the aggregator is away) for --session-expiry seconds")
    parser.add_argument("--session-expiry", type=int, default=3600, help="seconds (with --client-id; default 3600)")
    parser.add_argument("--ca", help="mqtts: the CA file of the broker's certificate (default: the system's)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker at start")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not 0.1 <= args.publish_every <= 86400 or not 0.1 <= args.timeout <= 600 or args.session_expiry < 0:
        sys.stderr.write("error: --publish-every and --timeout must be positive (seconds), --session-expiry >= 0\n")
        return EXIT_BAD_INPUT
    try:
        with signals_set(threading.Event()) as stop:
            return run(args, stop)
    except (AggregateError, ValueError) as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
