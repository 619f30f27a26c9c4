"""Email intake benchmark: SMTP acceptance beside a bare aiosmtpd sink, the worker's rate, and the
time from SMTP accept to the queued acknowledgement. All measured in one run, on loopback, on a
temporary SQLite file.

1. SMTP acceptance: the same client (CONNECTIONS parallel connections, each message its own
   transaction on a kept connection) sends N messages to a bare aiosmtpd sink that answers 250 at
   once, then to dsr's listener, which stores and commits every message before its 250. Reported:
   messages per second, and dsr's as a fraction of the sink's (target >= 0.8). Measured with the
   listener alone and with the whole service running (worker and sender draining at the same time).
2. Worker: N messages stored first, then `intake.drain` alone; messages per second (target 300).
3. Latency: the service running; messages sent one by one at a steady rate; for each, the time
   from the SMTP accept (messages.received_at) to its acknowledgement queued in the outbox
   (outbox.created_at); p50 and p95 (target p95 < 1 s).

Usage: python bench/intake.py [--messages N] [--connections C] [--latency-messages M] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BODIES = [
    "Hei, jeg ber om innsyn i alle personopplysninger dere har lagret om meg.",
    "Vennligst slett alle opplysninger om meg fra kunderegisteret deres.",
    "Jeg ønsker ikke å motta flere nyhetsbrev eller reklame fra dere.",
    "Please send me a copy of my personal data in a machine-readable format.",
    "Hvor lenge lagrer dere telefonopptak av kundesamtaler?",
]


def message(run: str, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Person {n} <person{n}@example.no>"
    msg["To"] = "kundesenter@branninfo.no"
    msg["Subject"] = "Personvern"
    msg["Message-ID"] = f"<{run}-{n}@example.no>"
    msg.set_content(BODIES[n % len(BODIES)] + f"\n\nMvh\nPerson {n}\n")
    return msg.as_bytes(policy=SMTP)


def blast(port: int, payloads: list[bytes], connections: int) -> float:
    """Send every payload over `connections` kept connections; messages per second."""
    chunks = [payloads[i::connections] for i in range(connections)]
    errors: list[BaseException] = []

    def run(chunk: list[bytes]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                for raw in chunk:
                    client.sendmail("person@example.no", ["kundesenter@branninfo.no"], raw)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(payloads) / elapsed


class BareSink:
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
        return "250 OK"


def settings_for(folder: Path, name: str):
    from assistant.config import load_settings

    os.environ["DSR_DATABASE__URL"] = f"sqlite:///{folder / f'{name}.db'}"
    os.environ["DSR_OUTBOUND__MAILDIR"] = str(folder / f"{name}-outbox")
    return load_settings(None)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="messages per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from sqlalchemy import text

    from assistant import intake
    from assistant.channels.smtp import SmtpListener
    from assistant.channels.store import store_raw
    from assistant.service import Service
    from assistant.store.db import open_store, session_scope
    from assistant.store.models import utcnow

    folder = Path(tempfile.mkdtemp(prefix="dsr-bench-"))
    figures: dict[str, float] = {}

    # 1. SMTP acceptance: bare sink, dsr's listener alone, dsr's listener inside the service.
    sink = Controller(BareSink(), hostname="127.0.0.1", port=free_port())
    sink.start()
    blast(sink.port, [message("warm", n) for n in range(50)], args.connections)
    figures["sink_msgs_per_s"] = blast(sink.port, [message("sink", n) for n in range(args.messages)],
                                       args.connections)
    sink.stop()

    settings = settings_for(folder, "listener")
    engine = open_store(settings.database.url)
    listener = SmtpListener(settings, engine, port=free_port())
    listener.start()
    blast(listener.port, [message("warm", n) for n in range(50)], args.connections)
    figures["listener_msgs_per_s"] = blast(
        listener.port, [message("listener", n) for n in range(args.messages)], args.connections)
    listener.stop()

    settings = settings_for(folder, "service")
    service = Service(settings, smtp_port=free_port(), worker_poll=0.05, sender_poll=0.05)
    service.start()
    figures["service_msgs_per_s"] = blast(
        service.smtp.port, [message("service", n) for n in range(args.messages)], args.connections)
    service.stop()
    figures["listener_vs_sink"] = figures["listener_msgs_per_s"] / figures["sink_msgs_per_s"]
    figures["service_vs_sink"] = figures["service_msgs_per_s"] / figures["sink_msgs_per_s"]

    # 2. The worker alone on SQLite.
    settings = settings_for(folder, "worker")
    engine = open_store(settings.database.url)
    with session_scope(engine) as session:
        for n in range(args.messages):
            store_raw(session, channel="smtp", raw=message("worker", n), received_at=utcnow(),
                      envelope_from=f"person{n}@example.no", envelope_to=["kundesenter@branninfo.no"])
    intake.drain(engine, settings, limit=1)  # loads the lexicons and templates once
    start = time.perf_counter()
    done = intake.drain(engine, settings)
    figures["worker_msgs_per_s"] = done / (time.perf_counter() - start)

    # 3. Accept to queued acknowledgement, with the service running.
    settings = settings_for(folder, "latency")
    service = Service(settings, smtp_port=free_port(), worker_poll=1.0, sender_poll=1.0)
    service.start()
    interval = 1.0 / args.latency_rate
    with smtplib.SMTP("127.0.0.1", service.smtp.port, timeout=60) as client:
        for n in range(args.latency_messages):
            began = time.perf_counter()
            client.sendmail("person@example.no", ["kundesenter@branninfo.no"], message("latency", n))
            time.sleep(max(0.0, interval - (time.perf_counter() - began)))
    deadline = time.monotonic() + 120
    # A read-only connection (plain BEGIN): a write transaction here would hold SQLite's write
    # lock between polls and starve the service it measures.
    with service.engine.execution_options(dsr_read_only=True).connect() as conn:
        while conn.execute(text("SELECT count(*) FROM outbox")).scalar_one() < args.latency_messages:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
            conn.rollback()
        rows = conn.execute(text(
            "SELECT m.received_at, o.created_at FROM outbox o JOIN messages m "
            "ON m.case_id = o.case_id AND m.direction = 'in' WHERE o.dedup_key LIKE 'ack:%'")).all()
    service.stop()

    def seconds(value) -> float:  # noqa: ANN001
        from datetime import datetime

        return (datetime.fromisoformat(str(value))).timestamp()

    delays = [seconds(created) - seconds(received) for received, created in rows]
    figures["latency_samples"] = len(delays)
    figures["accept_to_ack_p50_s"] = statistics.median(delays)
    figures["accept_to_ack_p95_s"] = percentile(delays, 0.95)

    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))
        return 0
    print(f"messages: {args.messages}, client connections: {args.connections}, SQLite at {folder}")
    print("SMTP acceptance (messages/s)")
    print(f"  bare aiosmtpd sink            {figures['sink_msgs_per_s']:8.0f}")
    print(f"  dsr listener (store+commit)   {figures['listener_msgs_per_s']:8.0f}"
          f"   {figures['listener_vs_sink']:.2f} of the sink (target >= 0.80)")
    print(f"  dsr serve (worker running)    {figures['service_msgs_per_s']:8.0f}"
          f"   {figures['service_vs_sink']:.2f} of the sink")
    print(f"intake worker on SQLite         {figures['worker_msgs_per_s']:8.0f} messages/s (target 300)")
    print(f"accept -> acknowledgement queued ({len(delays)} messages at {args.latency_rate:.0f}/s): "
          f"p50 {figures['accept_to_ack_p50_s'] * 1000:.0f} ms, "
          f"p95 {figures['accept_to_ack_p95_s'] * 1000:.0f} ms (target p95 < 1000 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
