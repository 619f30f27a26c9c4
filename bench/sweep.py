"""The scheduler at scale: 1,000,000 cases of which 100,000 are open and 10,000 due inside the
escalation ladder; the sweep must find those through an index, not a scan of the million.

Prints, per database: the time to load the cases (not a target), the sweep's selection (what a
sweep costs when nothing new is due: every sweep after the first in a period), the first sweep
that writes all 10,000 escalations (escalation rows, audit events, and with --deliver the outbox
rows) and what it wrote, a repeated sweep that finds nothing new, the hash chains it extended
checked, and the digest built for the 100,000 open cases; each with the peak Python memory
(tracemalloc) and the process's maximum resident size.

    python bench/sweep.py                       # SQLite in a temporary folder
    BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/sweep.py
    python bench/sweep.py --deliver             # Slack on, a manager per organisation
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

from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from assistant import scheduler  # noqa: E402
from assistant.config import load_settings  # noqa: E402
from assistant.deadlines import OSLO, Deadlines, compute_deadlines  # noqa: E402
from assistant.store import bulk  # noqa: E402
from assistant.store.audit import GENESIS, _digest, canonical_at, chain_key, check_chain  # noqa: E402
from assistant.store.db import open_store, session_scope  # noqa: E402
from assistant.store.models import AuditChain, Case, Escalation, Event  # noqa: E402

TODAY = date(2026, 4, 14)  # a Tuesday after Easter
NOW = datetime(2026, 4, 14, 9, 0, tzinfo=OSLO)
ORGS = ("branninfo", "infracomfort", "plania", "proffsecurity", "bagges")


LAYOUT = "receipt"  # --layout: "receipt" (ids in order of receipt) or "scattered"


def rows(total: int, open_cases: int, due_cases: int):
    """Every case, in id order: (id, ref, seq, org, state, received_at, deadlines). Open cases
    carry the dates the calendar gives them, so the calendar check at start moves nothing."""
    now_naive = NOW.astimezone(timezone.utc).replace(tzinfo=None)
    cache: dict[date, Deadlines] = {}

    def dates(received: date) -> Deadlines:
        if received not in cache:
            cache[received] = compute_deadlines(received)
        return cache[received]

    layout = _by_receipt if LAYOUT == "receipt" else _scattered
    for i, state, received in layout(total, open_cases, due_cases):
        at = datetime.combine(received, datetime.min.time()) + timedelta(hours=9)
        yield i, f"DSR-B-{i:07d}", i, ORGS[i % len(ORGS)], state, min(at, now_naive), \
            dates(received)


def _answered(i: int) -> str:
    return "answered" if i % 3 else "closed"


def _by_receipt(total: int, open_cases: int, due_cases: int):
    """As a real database grows: ids in order of receipt. Years of answered and closed cases
    (received 5 years to 80 days ago), then the cases received 25 to 35 days ago, every other
    one still open and so inside the escalation ladder (a few days overdue to 7 working days
    ahead) and the others answered, then the open cases received in the last 14 days."""
    old = total - open_cases - 2 * due_cases
    for i in range(1, old + 1):
        yield i, _answered(i), TODAY - timedelta(days=80 + (old - i) * 1900 // old)
    for j in range(2 * due_cases):
        i = old + 1 + j
        received = TODAY - timedelta(days=35 - j * 11 // (2 * due_cases))
        yield i, ("drafted" if j % 2 == 0 else _answered(i)), received
    for k in range(open_cases):
        yield old + 2 * due_cases + 1 + k, "verified", TODAY - timedelta(days=14 - k * 14 // open_cases)


def _scattered(total: int, open_cases: int, due_cases: int):
    """The worst case for the writes: the due cases spread evenly over the million ids (every
    hundredth), so their rows, chain heads and index entries share no page."""
    due_every, open_every = total // due_cases, total // open_cases
    for i in range(1, total + 1):
        if i % due_every == 0 and i // due_every <= due_cases:
            # received 25 to 35 days ago: due from a few days overdue to inside the ladder
            yield i, "drafted", TODAY - timedelta(days=25 + i % 11)
        elif i % open_every == 1:
            yield i, "verified", TODAY - timedelta(days=1 + i % 14)  # not yet chased
        else:
            yield i, _answered(i), TODAY - timedelta(days=80 + i % 2000)  # long past


COLUMNS = ("id", "ref", "prefix", "year", "seq", "org", "state", "extended", "intents",
           "language", "unclear", "channel", "received_at", "clock_start", "legal_due",
           "promised_due", "due", "extension_notice_by", "extended_due", "verified",
           "created_at", "updated_at")


EVENT_COLUMNS = ("case_id", "at", "actor", "kind", "detail", "prev_hash", "hash")
CHAIN_COLUMNS = ("chain", "case_id", "events", "last_hash")
OPENED_AT = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)  # one moment: the hash is what costs
_HASHES: dict[int, str] = {}  # case id -> its opening event's hash, the head of its chain


def opening_events(total: int):
    """Each case's first audit event, hashed as the audit trail hashes it: a real database has
    a chain per case, so the sweep moves existing heads rather than creating them."""
    at_text = canonical_at(OPENED_AT)
    for i in range(1, total + 1):
        digest = _digest(i, at_text, "bench", "opened", "{}", GENESIS)
        _HASHES[i] = digest
        yield i, OPENED_AT, "bench", "opened", "{}", GENESIS, digest


def chain_heads(total: int):
    for i in range(1, total + 1):
        yield chain_key(i), i, 1, _HASHES.pop(i)


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
            with cur.copy(f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for event in opening_events(total):
                    copy.write_row(event)
            with cur.copy(f"COPY audit_chains ({', '.join(CHAIN_COLUMNS)}) FROM STDIN") as copy:
                for head in chain_heads(total):
                    copy.write_row(head)
            raw.commit()
            cur.execute("ANALYZE cases; ANALYZE events; ANALYZE audit_chains")
            raw.commit()
        finally:
            raw.close()
        return
    # The driver's executemany with values bound as SQLAlchemy stores them (store/bulk.py):
    # SQLAlchemy's own executemany spent minutes preparing a million parameter sets.
    table = Case.__table__
    batch = []
    with engine.begin() as conn:
        for r in rows(total, open_cases, due_cases):
            values = full(r)
            batch.append(values[:12] + (values[12].replace(tzinfo=timezone.utc),
                                        values[13].replace(tzinfo=timezone.utc))
                         + values[14:20] + (values[20].replace(tzinfo=timezone.utc),
                                            values[21].replace(tzinfo=timezone.utc)))
            if len(batch) == 20_000:
                bulk.insert_many(conn, table, COLUMNS, batch)
                batch.clear()
        bulk.insert_many(conn, table, COLUMNS, batch)
        events = list(opening_events(total))
        for start in range(0, total, 50_000):
            bulk.insert_many(conn, Event.__table__, EVENT_COLUMNS, events[start:start + 50_000])
        bulk.insert_many(conn, AuditChain.__table__, CHAIN_COLUMNS, list(chain_heads(total)))
        conn.execute(text("ANALYZE"))


TRACE = False  # --tracemalloc: the Python heap's peak instead, at the cost of a slower run


def _status_kib(field: str) -> int | None:
    try:
        text_ = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text_.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    """Linux: reset the process's resident high-water mark, so VmHWM is this step's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def measure(label: str, fn):
    """Time one step and its peak memory. By default the time runs without tracemalloc (which
    slowed allocation-heavy steps several times over) and the peak is the resident set's
    high-water mark during the step above the resident set before it; --tracemalloc reports
    the Python heap's peak instead."""
    if TRACE:
        tracemalloc.start()
    before = _status_kib("VmRSS") if _reset_peak() else None
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if TRACE:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        memory = f"peak {peak / 2**20:7.1f} MiB heap"
    elif before is not None:
        memory = f"peak +{(_status_kib('VmHWM') - before) / 1024:6.1f} MiB RSS"
    else:
        memory = "peak (not measured)"
    print(f"  {label:<46} {seconds:8.3f} s   {memory} (max RSS {rss:.0f} MiB)")
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


def check_escalated(engine) -> tuple[int, list]:
    """The chains of the escalated cases, as `dsr audit verify` checks them: each loaded case's
    opening event, then what the sweep appended."""
    by_chain: dict[str, list] = {}
    with session_scope(engine, write=False) as s:
        escalated = select(Escalation.case_id)
        for event in s.execute(select(Event).where(Event.case_id.in_(escalated))
                               .order_by(Event.id)).scalars():
            by_chain.setdefault(chain_key(event.case_id), []).append(event)
        heads = {h.chain: h for h in s.execute(select(AuditChain).where(
            AuditChain.case_id.in_(escalated))).scalars()}
    broken = [(key, found[0]) for key, events in by_chain.items()
              if (found := check_chain(events, heads.get(key))) is not None]
    return len(by_chain), broken


def plan(engine, url: str) -> str:
    """The query plan of the sweep's selection, so 'an index, not a scan' is seen, not assumed."""
    query = f"SELECT id, due FROM cases WHERE {scheduler.OPEN_SQL} AND due <= '2026-04-23'"
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            lines = conn.execute(text(f"EXPLAIN {query}")).scalars().all()
        else:
            lines = [r[-1] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()]
    return " | ".join(line.strip() for line in lines[:3])


def run(url: str, total: int, open_cases: int, due_cases: int, deliver: bool) -> None:
    os.environ["DSR_DATABASE__URL"] = url
    settings = load_settings(None)
    if deliver:  # every escalation also queues its messages: Slack, and mail when urgent
        settings.slack.bot_token = "xoxb-bench"
        settings.slack.review_channel, settings.slack.manager_channel = "CREVIEW", "CMANAGERS"
        for org in settings.organizations:
            org.managers = [f"leder@{org.id}.example"]
    engine = open_store(url)
    print(f"{engine.dialect.name}: {total:,} cases, {open_cases:,} open, {due_cases:,} due "
          "inside the ladder" + ("; Slack on and a manager per organisation" if deliver else
                                 "; no Slack, no managers (the defaults): no outbox rows"))
    measure("load (not a target)", lambda: load(engine, total, open_cases, due_cases))
    print(f"  plan: {plan(engine, url)}")
    measure("calendar check at first start (all open cases)",
            lambda: scheduler.move_dates_if_calendar_changed(engine, settings, NOW))
    found, _ = measure("sweep selection (target < 0.5 s)", lambda: selection(engine, settings))
    done, _ = measure("first sweep, writing them all (target < 0.5 s)",
                      lambda: scheduler.sweep(engine, settings, NOW))
    with engine.connect() as conn:
        written = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                   for t in ("escalations", "events WHERE kind <> 'opened'", "outbox")]
    print(f"    wrote {written[0]:,} escalations, {written[1]:,} audit events, "
          f"{written[2]:,} outbox rows")
    again, _ = measure("repeated sweep, nothing new (target < 0.5 s)",
                       lambda: scheduler.sweep(engine, settings, NOW))
    print(f"  found {len(found):,} due; escalated {len(done):,}, then {len(again):,}")
    if done:
        (chains, broken), _ = measure("hash chains of the escalated cases checked",
                                      lambda: check_escalated(engine))
        print(f"    {chains:,} chains, {len(broken)} broken{': ' + str(broken[:3]) if broken else ''}")

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
    parser.add_argument("--tracemalloc", action="store_true",
                        help="peak memory of the Python heap (tracemalloc), slower timings")
    parser.add_argument("--deliver", action="store_true",
                        help="Slack on and a manager per organisation: outbox rows as well")
    parser.add_argument("--layout", choices=("receipt", "scattered"), default="receipt",
                        help="ids in order of receipt (as a database grows; the default) or the "
                             "due cases spread over all ids (the worst case for the writes)")
    args = parser.parse_args()
    global TRACE, LAYOUT
    TRACE, LAYOUT = args.tracemalloc, args.layout
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as folder:
            run(f"sqlite:///{Path(folder) / 'bench.db'}", args.cases, args.open, args.due,
                args.deliver)
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
                args.open, args.due, args.deliver)
        finally:
            from assistant.store import db

            for engine in db._engines.values():
                engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
