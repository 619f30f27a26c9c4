"""Email intake benchmark: SMTP acceptance beside a bare aiosmtpd sink, the worker's rate, and the
time from SMTP accept to the queued acknowledgement. All measured in one run, on loopback, on a
temporary SQLite file.

1. SMTP acceptance: one client process (its own interpreter, so it never competes with the server
   for the GIL; CONNECTIONS parallel connections, each message its own transaction on a kept
   connection), the same code for every server, sends to a bare aiosmtpd sink that answers 250 at
   once and to dsr's listener, which stores and commits every message before its 250. ROUNDS
   rounds, the two servers in alternating order; per round dsr's rate as a fraction of the
   sink's. Reported: the median and range of the rates and of the fractions (target >= 0.8).
   Then the whole service (`Service`, as `dsr serve` runs it: its worker deciding each round's
   mail during and after the round) in rounds beside the sink, the worker left to finish before
   each sink round; the same figures.
2. Worker: ROUNDS rounds of N/ROUNDS stored messages, each drained by `intake.drain` alone,
   as `dsr serve` runs it (with more than one core a backlog is parsed and classified a batch
   ahead in a second process; `--one-process` turns that off); messages per second (target
   300), the worker's CPU time per message and the second process's, median and range.
3. Latency: the service running; messages sent one by one at a steady rate; for each, the time
   from the SMTP accept (messages.received_at) to its acknowledgement queued in the outbox
   (outbox.created_at); p50 and p95 (target p95 < 1 s).

Usage: python bench/intake.py [--messages N] [--rounds R] [--connections C]
                              [--latency-messages M] [--json] [--one-process]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
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


def _client_round(port: int, run: str, count: int, connections: int) -> float:
    """In the client process: build the messages, then send them; messages per second."""
    return blast(port, [message(run, n) for n in range(count)], connections)


class Client:
    """The load generator in a process of its own (spawned: a clean interpreter, no copy of the
    server's threads), kept for the whole run and used the same way for every server."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1,
                                         mp_context=multiprocessing.get_context("spawn"))

    def send(self, port: int, run: str, count: int, connections: int) -> float:
        return self._pool.submit(_client_round, port, run, count, connections).result()

    def close(self) -> None:
        self._pool.shutdown()


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


def wait_until_decided(engine, timeout: float = 300.0) -> None:  # noqa: ANN001
    """Until the worker has decided every stored message (read without taking any lock)."""
    from sqlalchemy import text

    deadline = time.monotonic() + timeout
    with engine.execution_options(dsr_read_only=True).connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text("SELECT count(*) FROM messages WHERE status IN"
                                        " ('stored', 'processing')")).scalar_one()
            conn.rollback()
            if not waiting:
                return
            time.sleep(0.05)
    raise TimeoutError("the worker did not decide the stored mail in time")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, lowest, highest)."""
    return statistics.median(values), min(values), max(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000,
                        help="messages per server (and for the worker), over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="messages per second")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one-process", action="store_true",
                        help="the worker prepares every message itself (no second process)")
    args = parser.parse_args()

    from sqlalchemy import text

    from assistant import intake
    from assistant.channels.smtp import SmtpListener
    from assistant.channels.store import store_raw
    from assistant.preparer import Preparer
    from assistant.service import Service
    from assistant.store.db import open_store, session_scope
    from assistant.store.models import utcnow

    folder = Path(tempfile.mkdtemp(prefix="dsr-bench-"))
    figures: dict[str, float] = {}
    per_round = max(1, args.messages // args.rounds)
    load_before = os.getloadavg()[0]

    # 1. SMTP acceptance: bare sink and dsr's listener in alternating rounds, the same client
    # process for both; then dsr's listener inside the service.
    client = Client()
    sink = Controller(BareSink(), hostname="127.0.0.1", port=free_port())
    sink.start()
    settings = settings_for(folder, "listener")
    engine = open_store(settings.database.url)
    listener = SmtpListener(settings, engine, port=free_port())
    listener.start()
    for port in (sink.port, listener.port):  # warm-up: connections, caches, the client itself
        client.send(port, f"warm{port}", 100, args.connections)
    sink_rates: list[float] = []
    listener_rates: list[float] = []
    for n in range(args.rounds):
        order = [("sink", sink.port), ("listener", listener.port)]
        for name, port in order if n % 2 == 0 else order[::-1]:
            rate = client.send(port, f"{name}{n}", per_round, args.connections)
            (sink_rates if name == "sink" else listener_rates).append(rate)
    listener.stop()
    sink.stop()
    ratios = [dsr / bare for dsr, bare in zip(listener_rates, sink_rates)]
    figures["sink_msgs_per_s"], figures["sink_min"], figures["sink_max"] = spread(sink_rates)
    (figures["listener_msgs_per_s"], figures["listener_min"],
     figures["listener_max"]) = spread(listener_rates)
    (figures["listener_vs_sink"], figures["listener_vs_sink_min"],
     figures["listener_vs_sink_max"]) = spread(ratios)

    # The whole service (listener, worker and sender in one process) in rounds beside the sink:
    # its worker decides each round's mail during and after it, and is left to finish before the
    # next sink round, so it never slows the sink it is compared with.
    sink = Controller(BareSink(), hostname="127.0.0.1", port=free_port())
    sink.start()
    settings = settings_for(folder, "service")
    service = Service(settings, smtp_port=free_port(), worker_poll=0.05, sender_poll=0.05)
    service.start()
    client.send(service.smtp.port, "service-warm", 100, args.connections)
    service_rates: list[float] = []
    service_sink_rates: list[float] = []
    for n in range(args.rounds):
        wait_until_decided(service.engine)
        service_sink_rates.append(client.send(sink.port, f"sink-s{n}", per_round,
                                              args.connections))
        service_rates.append(client.send(service.smtp.port, f"service{n}", per_round,
                                         args.connections))
    wait_until_decided(service.engine)
    service.stop()
    sink.stop()
    client.close()
    (figures["service_msgs_per_s"], figures["service_min"],
     figures["service_max"]) = spread(service_rates)
    (figures["service_vs_sink"], figures["service_vs_sink_min"],
     figures["service_vs_sink_max"]) = spread(
        [dsr / bare for dsr, bare in zip(service_rates, service_sink_rates)])

    # 2. The worker alone on SQLite, in rounds: store a round's messages, drain them.
    settings = settings_for(folder, "worker")
    engine = open_store(settings.database.url)

    def store(run: str, count: int) -> None:
        with session_scope(engine) as session:
            for n in range(count):
                store_raw(session, channel="smtp", raw=message(run, n), received_at=utcnow(),
                          envelope_from=f"person{n}@example.no",
                          envelope_to=["kundesenter@branninfo.no"])

    # As `dsr serve` runs it: a backlog is prepared a batch ahead in a second process when
    # there is more than one core (assistant/preparer.py); its CPU is printed beside the
    # worker's own.
    ahead_by = Preparer(settings) if (os.cpu_count() or 1) > 1 and not args.one_process else None
    store("warm", 100)
    intake.drain(engine, settings, ahead_by=ahead_by)  # lexicons, templates, policies, records
    worker_rates: list[float] = []
    worker_cpu: list[float] = []
    second_cpu: list[float] = []
    for n in range(args.rounds):
        store(f"worker{n}", per_round)
        began, cpu = time.perf_counter(), time.process_time()
        before = ahead_by.cpu_seconds if ahead_by is not None else 0.0
        done = intake.drain(engine, settings, ahead_by=ahead_by)
        worker_cpu.append((time.process_time() - cpu) / done * 1000)
        worker_rates.append(done / (time.perf_counter() - began))
        if ahead_by is not None:
            second_cpu.append((ahead_by.cpu_seconds - before) / done * 1000)
    if ahead_by is not None:
        ahead_by.close()
    (figures["worker_msgs_per_s"], figures["worker_min"],
     figures["worker_max"]) = spread(worker_rates)
    figures["worker_cpu_ms_per_msg"] = statistics.median(worker_cpu)
    figures["preparer_cpu_ms_per_msg"] = statistics.median(second_cpu) if second_cpu else 0.0

    # 3. Accept to queued acknowledgement, with the service running.
    settings = settings_for(folder, "latency")
    service = Service(settings, smtp_port=free_port(), worker_poll=1.0, sender_poll=1.0)
    service.start()
    interval = 1.0 / args.latency_rate
    with smtplib.SMTP("127.0.0.1", service.smtp.port, timeout=60) as smtp:
        for n in range(args.latency_messages):
            began = time.perf_counter()
            smtp.sendmail("person@example.no", ["kundesenter@branninfo.no"], message("latency", n))
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

    figures["load_average"] = max(load_before, os.getloadavg()[0])
    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))
        return 0
    f = figures
    print(f"messages per server: {args.messages} in {args.rounds} rounds, client connections: "
          f"{args.connections} (one client process), SQLite at {folder}; load average "
          f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print("SMTP acceptance (messages/s; median, range over rounds)")
    print(f"  bare aiosmtpd sink            {f['sink_msgs_per_s']:8.0f}"
          f"   ({f['sink_min']:.0f} to {f['sink_max']:.0f})")
    print(f"  dsr listener (store+commit)   {f['listener_msgs_per_s']:8.0f}"
          f"   ({f['listener_min']:.0f} to {f['listener_max']:.0f})")
    print(f"  dsr listener / sink, per round   {f['listener_vs_sink']:.2f}"
          f"   ({f['listener_vs_sink_min']:.2f} to {f['listener_vs_sink_max']:.2f}; target >= 0.80)")
    print(f"  dsr serve (worker deciding)   {f['service_msgs_per_s']:8.0f}"
          f"   ({f['service_min']:.0f} to {f['service_max']:.0f})")
    print(f"  dsr serve / sink, per round      {f['service_vs_sink']:.2f}"
          f"   ({f['service_vs_sink_min']:.2f} to {f['service_vs_sink_max']:.2f}; target >= 0.80)")
    print(f"intake worker on SQLite         {f['worker_msgs_per_s']:8.0f} messages/s"
          f"   ({f['worker_min']:.0f} to {f['worker_max']:.0f}; target 300);"
          f" {f['worker_cpu_ms_per_msg']:.1f} ms CPU per message"
          + (f" + {f['preparer_cpu_ms_per_msg']:.1f} ms in the second process"
             if f["preparer_cpu_ms_per_msg"] else " (one process)"))
    print(f"accept -> acknowledgement queued ({len(delays)} messages at {args.latency_rate:.0f}/s): "
          f"p50 {f['accept_to_ack_p50_s'] * 1000:.0f} ms, "
          f"p95 {f['accept_to_ack_p95_s'] * 1000:.0f} ms (target p95 < 1000 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
