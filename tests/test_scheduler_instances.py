"""Two `dsr serve` processes on one PostgreSQL database, sweeping through two simulated weeks:
every escalation and every digest is delivered exactly once.

Time is injected, not waited for: `scheduler.now` starts the drill on 26 March 2026 and
`scheduler.drill_speed` runs it at one simulated day per real second; each process sweeps every
0.2 s and tries the digest every second. Counts only; nothing asserts the clock."""

from __future__ import annotations

import collections
import mailbox
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path

import pytest
from mailservers import free_port
from sqlalchemy import select

REPO = Path(__file__).resolve().parents[1]
DRILL_SECONDS = 14  # at least this long: 26 March to about 8 April, Easter included
WAIT_SECONDS = 120  # then until the Easter case's before1 step (8 April) is sent


def _config(tmp_path: Path, url: str, port: int, name: str) -> Path:
    config = tmp_path / f"{name}.toml"
    config.write_text(f"""
[database]
url = "{url}"
[smtp]
listen = "127.0.0.1:{port}"
[outbound]
maildir = "{tmp_path / 'maildir'}"
[log]
level = "INFO"
[scheduler]
sweep_seconds = 0.2
digest_cron = "* * * * * *"
now = "2026-03-26T07:00:00+01:00"
drill_speed = 86400
[[organizations]]
id = "branninfo"
name = "Branninfo AS"
addresses = ["kundesenter@branninfo.no"]
policy = "{REPO / 'policies' / 'branninfo.md'}"
language = "nb"
systems = ["TMG", "Visma", "CRM"]
managers = ["leder@branninfo.no"]
""", encoding="utf-8")
    return config


def _start(config: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--config",
                                 str(config)], cwd=config.parent, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def test_two_instances_deliver_each_escalation_and_digest_once(tmp_path, request, monkeypatch):
    if not os.environ.get("DSR_TEST_POSTGRES_URL"):
        pytest.skip("DSR_TEST_POSTGRES_URL is not set: the two-instance drill needs PostgreSQL")
    from conftest import _reset_postgres, _service_url

    owner, _ = request.getfixturevalue("postgres_database")
    _reset_postgres(owner)
    url = _service_url(owner)

    from assistant import cases, workflow
    from assistant.config import load_settings
    from assistant.deadlines import OSLO
    from assistant.outbox import Sender
    from assistant.store.db import open_store, session_scope
    from assistant.store.models import Digest, Escalation, Outbox

    config_a = _config(tmp_path, url, free_port(), "a")
    config_b = _config(tmp_path, url, free_port(), "b")
    monkeypatch.setenv("DSR_CONFIG", str(config_a))
    settings = load_settings(config_a)
    engine = open_store(url)

    def open_case(received: date, intents: list[str]) -> str:
        moment = datetime.combine(received, dtime(12), tzinfo=OSLO)
        with session_scope(engine) as s:
            return workflow.open_request(s, settings, org_id="branninfo", channel="phone",
                                         received_at=moment, requester="kari@example.no",
                                         intents=intents, actor="tester", now=moment).ref

    easter = open_case(date(2026, 3, 10), ["question"])  # due 9 April
    early = open_case(date(2026, 3, 2), ["question"])  # due 1 April, overdue after Easter
    waiting = open_case(date(2026, 3, 16), ["access"])  # a verification reminder
    closed = open_case(date(2026, 3, 10), ["question"])
    with session_scope(engine) as s:
        cases.close(s, closed, "tester")

    def reached() -> bool:
        """The drill went far enough: the Easter case's last ladder step before its due date."""
        with session_scope(engine, write=False) as s:
            return s.execute(select(Escalation.id).where(
                Escalation.step == "before1:2026-04-09")).first() is not None

    processes = [_start(config_a, tmp_path / "a.log"), _start(config_b, tmp_path / "b.log")]
    try:
        deadline = time.monotonic() + WAIT_SECONDS  # an upper bound on a loaded machine
        time.sleep(DRILL_SECONDS)
        while not reached() and time.monotonic() < deadline:
            time.sleep(0.5)
        for p in processes:
            assert p.poll() is None, (tmp_path / "a.log").read_text(errors="replace")[-3000:]
            p.send_signal(signal.SIGTERM)
        for p in processes:
            assert p.wait(90) == 0
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    Sender(engine, settings).send_due()  # what was queued just before the stop

    with session_scope(engine, write=False) as s:
        escalations = s.execute(select(Escalation)).scalars().all()
        digests = s.execute(select(Digest)).scalars().all()
        outbox = s.execute(select(Outbox)).scalars().all()
    by_case = collections.defaultdict(list)
    with session_scope(engine, write=False) as s:
        refs = {c.id: c.ref for c in cases.list_cases(s)}
    for e in escalations:
        by_case[refs[e.case_id]].append(e.step.split(":")[0])
    assert closed not in by_case
    assert by_case[waiting].count("verification_reminder") == 1
    assert {"before3", "before1", "due", "overdue"} <= set(by_case[early]), by_case  # 7 April
    assert {"before7", "before3", "before1"} <= set(by_case[easter]), by_case
    assert len(digests) >= 3  # several periods, each claimed once (the period is unique)

    # Each staff mail was delivered exactly once, and each outbox row became one delivery.
    assert all(row.state == "sent" for row in outbox), [(r.dedup_key, r.state) for r in outbox]
    delivered = [m for m in mailbox.Maildir(str(tmp_path / "maildir"), create=False)]
    keys = collections.Counter(m["X-DSR-Key"] for m in delivered if m["X-DSR-Key"])
    assert keys and max(keys.values()) == 1, keys.most_common(3)
    staff_rows = {r.dedup_key for r in outbox if r.dedup_key.startswith(("escalation:", "digest:"))}
    assert set(keys) == staff_rows
    escalation_mails = [k for k in keys if k.startswith("escalation:")]
    # One manager: one mail per escalation (Slack is off), none for the reminder (to the requester).
    assert len(escalation_mails) == len(escalations) - 1
    assert len([k for k in keys if k.startswith("digest:")]) == len(digests)
    assert len(delivered) == len(outbox)
    # Both instances ran the scheduler.
    for log in ("a.log", "b.log"):
        assert "scheduler" in (tmp_path / log).read_text(errors="replace")
