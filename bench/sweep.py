"""The scheduler at scale: 1,000,000 cases of which 100,000 are open and 10,000 due inside the
escalation ladder; the sweep must find those through an index, not a scan of the million.

Prints, per database: the time to load the cases (not a target), the sweep's selection (what a
sweep costs when nothing new is due: every sweep after the first in a period), the first sweep
that writes all 10,000 escalations (event, outbox row), a repeated sweep, and the digest built
for the 100,000 open cases; each with the peak Python memory (tracemalloc) and the process's
maximum resident size.

    python bench/sweep.py                       # SQLite in a temporary folder
    BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/sweep.py
    python bench/sweep.py --cases 100000        # smaller, for a quick look

Targets (issue 17): the sweep under 0.5 s on PostgreSQL and on SQLite; the digest under 2 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from assistant import scheduler  # noqa: E402
from assistant.config import load_settings  # noqa: E402
from assistant.deadlines import OSLO, Deadlines, compute_deadlines  # noqa: E402
from assistant.store.db import open_store, session_scope  # noqa: E402

TODAY = date(2026, 4, 14)  # a Tuesday after Easter
NOW = datetime(2026, 4, 14, 9, 0, tzinfo=OSLO)
ORGS = ("branninfo", "infracomfort", "plania", "proffsecurity", "bagges")


def rows(total: int, open_cases: int, due_cases: int):
    """Every case, in id order: (id, ref, seq, org, state, received_at, deadlines). Open cases
    carry the dates the calendar gives them, so the calendar check at start moves nothing."""
    now_naive = NOW.astimezone(timezone.utc).replace(tzinfo=None)
    cache: dict[date, Deadlines] = {}

    def dates(received: date) -> Deadlines:
        if received not in cache:
            cache[received] = compute_deadlines(received)
        return cache[received]

    due_every, open_every = total // due_cases, total // open_cases
    for i in range(1, total + 1):
        if i % due_every == 0 and i // due_every <= due_cases:
            # received 25 to 35 days ago: due from a few days overdue to inside the ladder
            state, received = "drafted", TODAY - timedelta(days=25 + i % 11)
        elif i % open_every == 1:
            state, received = "verified", TODAY - timedelta(days=1 + i % 14)  # not yet chased
        else:
            state = "answered" if i % 3 else "closed"
            received = TODAY - timedelta(days=80 + i % 2000)  # long past: a scan would see them
        at = datetime.combine(received, datetime.min.time()) + timedelta(hours=9)
        yield i, f"DSR-B-{i:07d}", i, ORGS[i % len(ORGS)], state, min(at, now_naive), \
            dates(received)


COLUMNS = ("id", "ref", "prefix", "year", "seq", "org", "state", "extended", "intents",
           "language", "unclear", "channel", "received_at", "clock_start", "legal_due",
           "promised_due", "due", "extension_notice_by", "extended_due", "verified",
           "created_at", "updated_at")


def load(engine, total: int, open_cases: int, due_cases: int) -> None:
    def full(r):
        i, ref, seq, org, state, received, d = r
        return (i, ref, "DSRB", 2026, seq, org, state, False, '["access"]', "nb", False, "email",
                received, received, d.legal_due, d.promised_due, d.due, d.extension_notice_by,
                d.extended_due, True, received, received)

    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY cases ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for r in rows(total, open_cases, due_cases):
                    copy.write_row(full(r))
            cur.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), %s)", (total,))
            raw.commit()
            cur.execute("ANALYZE cases")
            raw.commit()
        finally:
            raw.close()
        return
    placeholders = ", ".join(f":{c}" for c in COLUMNS)
    statement = text(f"INSERT INTO cases ({', '.join(COLUMNS)}) VALUES ({placeholders})")
    batch = []
    with engine.begin() as conn:
        for r in rows(total, open_cases, due_cases):
            batch.append(dict(zip(COLUMNS, full(r))))
            if len(batch) == 20_000:
                conn.execute(statement, batch)
                batch.clear()
        if batch:
            conn.execute(statement, batch)
        conn.execute(text("ANALYZE"))


def measure(label: str, fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {label:<44} {seconds:8.3f} s   peak {peak / 2**20:7.1f} MiB (max RSS {rss:.0f} MiB)")
    return result, seconds


def selection(engine, settings):
    """What every sweep pays before it writes anything: the due cases and their sent steps."""
    conf = settings.scheduler
    cal = scheduler.calendar_of(settings)
    horizon = cal.add_working_days(TODAY, max(conf.ladder))
    with session_scope(engine, write=False) as s:
        found = scheduler._candidates(s, horizon)
        scheduler._sent_steps(s, horizon)
        scheduler._with_unsettled(s, horizon)
        scheduler._reminder_candidates(s, NOW - timedelta(days=conf.verification_reminder_days))
    return found


def plan(engine, url: str) -> str:
    """The query plan of the sweep's selection, so 'an index, not a scan' is seen, not assumed."""
    query = f"SELECT id, due FROM cases WHERE {scheduler.OPEN_SQL} AND due <= '2026-04-23'"
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            lines = conn.execute(text(f"EXPLAIN {query}")).scalars().all()
        else:
            lines = [r[-1] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()]
    return " | ".join(line.strip() for line in lines[:3])


def run(url: str, total: int, open_cases: int, due_cases: int) -> None:
    os.environ["DSR_DATABASE__URL"] = url
    settings = load_settings(None)
    engine = open_store(url)
    print(f"{engine.dialect.name}: {total:,} cases, {open_cases:,} open, {due_cases:,} due "
          "inside the ladder")
    measure("load (not a target)", lambda: load(engine, total, open_cases, due_cases))
    print(f"  plan: {plan(engine, url)}")
    measure("calendar check at first start (all open cases)",
            lambda: scheduler.move_dates_if_calendar_changed(engine, settings, NOW))
    found, _ = measure("sweep selection (target < 0.5 s)", lambda: selection(engine, settings))
    done, _ = measure("first sweep, writing every escalation",
                      lambda: scheduler.sweep(engine, settings, NOW))
    again, _ = measure("repeated sweep (target < 0.5 s)",
                       lambda: scheduler.sweep(engine, settings, NOW))
    print(f"  found {len(found):,} due; escalated {len(done):,}, then {len(again):,}")

    def digest():
        with session_scope(engine, write=False) as s:
            built = scheduler.build_digest(s, settings, NOW)
        return built, scheduler.render_digest(built, "en")

    (built, _), _ = measure("digest build + render (target < 2 s)", digest)
    print(f"  digest: {built['total']['open_total']:,} open, "
          f"{len(built['total']['overdue']):,} overdue, {len(built['total']['due_soon']):,} due soon")
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as folder:
            run(f"sqlite:///{Path(folder) / 'bench.db'}", args.cases, args.open, args.due)
    pg = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("DSR_TEST_POSTGRES_URL")
    if args.only != "sqlite":
        if not pg:
            print("postgresql: skipped (set BENCH_POSTGRES_URL)")
            return 0
        base = make_url(pg)
        name = f"dsr_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run(base.set(database=name).render_as_string(hide_password=False), args.cases,
                args.open, args.due)
        finally:
            from assistant.store import db

            for engine in db._engines.values():
                engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
