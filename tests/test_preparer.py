"""A backlog on SQLite is parsed and classified a batch ahead in a second process while the
worker writes (assistant/preparer.py). It may only make the worker faster: every message is
decided exactly as without it, once, in arrival order; and the process never outlives dsr."""

from __future__ import annotations

import email.policy
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
from mailservers import request
from sqlalchemy import select

from assistant import intake
from assistant.channels.store import store_raw
from assistant.preparer import Preparer
from assistant.store.db import open_store, session_scope
from assistant.store.models import Case, Message, utcnow

BODIES = [
    "Hei, jeg vil ha innsyn i alle opplysningene dere har lagret om meg.",
    "slett meg fra alle lister deres takk",
    "Please stop sending me newsletters.",
    "Hvor lenge lagrer dere opptak fra kameraene?",
    "Takk for bestillingen! Ordrebekreftelse 5512, levering i morgen.",
    "Kan dere sende meg dataene mine som en fil jeg kan ta med til en annen leverandør?",
]


def _settings(tmp_path, name: str):
    from assistant.config import load_settings

    os.environ["DSR_DATABASE__URL"] = f"sqlite:///{tmp_path / name}"
    try:
        return load_settings(None)
    finally:
        del os.environ["DSR_DATABASE__URL"]


def _store(engine, count: int) -> None:
    start = utcnow()
    with session_scope(engine) as session:
        for n in range(count):
            mail = request(sender=f"person{n % 40}@example.no", name=f"Person {n}",
                           subject=f"Henvendelse {n}", body=BODIES[n % len(BODIES)],
                           message_id=f"<burst-{n}@example.no>")
            if n % 9 == 4:
                mail["Auto-Submitted"] = "auto-replied"
            store_raw(session, channel="smtp", raw=mail.as_bytes(policy=email.policy.SMTP),
                      received_at=start + timedelta(milliseconds=n),
                      envelope_from=f"person{n % 40}@example.no",
                      envelope_to=["kundesenter@branninfo.no"])


def _decisions(engine) -> list[tuple]:
    with session_scope(engine, write=False) as session:
        rows = session.execute(
            select(Message.dedup_key, Message.status, Message.auto, Case.intents, Case.unclear,
                   Case.state, Case.seq)
            .outerjoin(Case, Case.id == Message.case_id)
            .where(Message.direction == "in").order_by(Message.id)).all()
    return [tuple(row) for row in rows]


def test_a_backlog_prepared_ahead_is_decided_exactly_as_by_the_worker_alone(tmp_path) -> None:
    alone, ahead = _settings(tmp_path, "alone.db"), _settings(tmp_path, "ahead.db")
    alone_engine, ahead_engine = open_store(alone.database.url), open_store(ahead.database.url)
    _store(alone_engine, 150)
    _store(ahead_engine, 150)
    preparer = Preparer(ahead)
    try:
        assert intake.drain(alone_engine, alone) == 150
        assert intake.drain(ahead_engine, ahead, ahead_by=preparer) == 150
        assert preparer.cpu_seconds > 0  # the second process did prepare batches
    finally:
        preparer.close()
    decided = _decisions(ahead_engine)
    assert decided == _decisions(alone_engine)
    assert all(status in ("processed", "ignored") for _key, status, *_ in decided)
    # Cases were numbered in arrival order, as without the second process (a later message
    # that joined its sender's open case repeats that case's number).
    seqs = list(dict.fromkeys(row[-1] for row in decided if row[-1] is not None))
    assert seqs == sorted(seqs) and len(seqs) > 100


def test_a_message_decided_meanwhile_by_another_worker_is_not_decided_twice(tmp_path) -> None:
    settings = _settings(tmp_path, "two.db")
    engine = open_store(settings.database.url)
    _store(engine, 96)
    preparer = Preparer(settings)
    try:
        first = preparer.next_batch(engine, [], intake.BATCH_MESSAGES)  # the next one goes ahead
        assert len(first) == intake.BATCH_MESSAGES
        # Another worker (another instance, or `dsr import`) takes everything meanwhile.
        assert intake.drain(engine, settings) == 96
        assert intake.drain(engine, settings, ahead_by=preparer) == 0
    finally:
        preparer.close()
    with session_scope(engine, write=False) as session:
        opened = session.execute(select(Case.id)).all()
    # Auto-replies and the order confirmation (certainly no request) open no case.
    kept_out = sum(1 for n in range(96)
                   if n % 9 == 4 or BODIES[n % len(BODIES)].startswith("Takk for bestillingen"))
    assert len(opened) == 96 - kept_out


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_second_process_ends_when_dsr_is_killed(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import os, sys, time
        os.environ["DSR_DATABASE__URL"] = "sqlite:///{tmp_path / 'killed.db'}"
        from assistant.config import load_settings
        from assistant.preparer import Preparer, _prepare_in_child
        preparer = Preparer(load_settings(None))
        preparer._started().submit(_prepare_in_child, []).result(timeout=120)
        print(" ".join(str(pid) for pid in preparer._pool._processes), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert children and all(os.path.exists(f"/proc/{pid}") for pid in children)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
