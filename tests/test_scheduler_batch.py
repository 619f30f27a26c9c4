"""The sweep's batch path: escalations claimed, delivered and written to the audit trail in
chunks of plain statements. The chains stay intact (each event hashed as one by one), a chunk is
all or nothing, and a sweep interrupted between chunks is finished by the next one without a
double. On SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import date, datetime, time, timezone

import pytest
from sqlalchemy import func, select

from assistant import cases, scheduler, workflow
from assistant.deadlines import OSLO
from assistant.store import audit
from assistant.store.audit import append_event, append_events, event_hash, verify_trail
from assistant.store.db import session_scope
from assistant.store.models import AuditChain, Escalation, Event, Outbox
from tests.test_pii import FNR

SWEEP_DAY = date(2026, 4, 7)  # a Tuesday: 2 working days before 9 April


def at_noon(d: date) -> datetime:
    return datetime.combine(d, time(12), tzinfo=OSLO)


def _open(engine, settings, received: date, intents: tuple[str, ...], verify: bool = False
          ) -> str:
    with session_scope(engine) as s:
        case = workflow.open_request(s, settings, org_id="branninfo", channel="phone",
                                     received_at=at_noon(received), requester="kari@example.no",
                                     intents=list(intents), actor="tester",
                                     now=at_noon(received))
        ref = case.ref
    if verify:
        with session_scope(engine) as s:
            workflow.verify(s, settings, ref, "email_code", "tester", now=at_noon(received))
    return ref


def _deliver_everywhere(settings) -> None:
    settings.slack.bot_token = "xoxb-test"
    settings.slack.review_channel = "CREVIEW"
    settings.slack.manager_channel = "CMANAGERS"
    settings.organization("branninfo").managers = ["leder@branninfo.no", "nestleder@branninfo.no"]


def _state(engine) -> dict:
    """What the sweeps left: escalations per case, escalation events per case, outbox keys."""
    with session_scope(engine, write=False) as s:
        escalations = Counter(s.execute(select(Escalation.case_id)).scalars())
        events = Counter(s.execute(select(Event.case_id).where(Event.kind == "escalation"))
                         .scalars())
        keys = list(s.execute(select(Outbox.dedup_key)).scalars())
        report = verify_trail(s)
    return {"escalations": escalations, "events": events, "keys": keys, "report": report}


def test_a_batch_sweep_of_many_cases_keeps_every_chain_intact(engine, settings, monkeypatch):
    monkeypatch.setattr(scheduler, "CHUNK", 7)  # several chunks, one of them partly filled
    _deliver_everywhere(settings)
    plain = [_open(engine, settings, date(2026, 3, 10), ("question",)) for _ in range(12)]
    late = [_open(engine, settings, date(2026, 3, 2), ("question",)) for _ in range(4)]
    # Verified access cases: an unsettled checklist, so two steps (and two events) each.
    access = [_open(engine, settings, date(2026, 3, 10), ("access",), verify=True)
              for _ in range(4)]
    done = scheduler.sweep(engine, settings, at_noon(SWEEP_DAY))
    steps = Counter(e.step.split(":")[0] for e in done)
    assert steps == {"before3": 16, "checklist": 4, "overdue": 4}
    # Per case in the order one by one gave: the checklist warning before the ladder's step.
    for ref in access:
        assert [e.step.split(":")[0] for e in done if e.ref == ref] == ["checklist", "before3"]
    got = _state(engine)
    assert got["report"].intact, got["report"].problems
    assert sum(got["escalations"].values()) == sum(got["events"].values()) == len(done) == 24
    assert got["escalations"] == got["events"]
    assert len(got["keys"]) == len(set(got["keys"]))
    # Slack for each step; the managers by mail for the overdue ones (urgent), two each.
    assert len(got["keys"]) == 24 + 4 * 2
    with session_scope(engine, write=False) as s:
        for ref in access:
            case = cases.get_case(s, ref)
            rows = s.execute(select(Event).where(Event.case_id == case.id)
                             .order_by(Event.id)).scalars().all()
            first = json.loads(rows[-2].detail)
            assert first["step"] == "checklist:2026-04-09"
            assert first["unsettled"] and all(u.startswith("access: ") for u in first["unsettled"])
            assert json.loads(rows[-1].detail)["to"] == ["slack:CREVIEW"]
            head = s.get(AuditChain, audit.chain_key(case.id))
            assert head.events == len(rows) and head.last_hash == rows[-1].hash
    by_ref = {e.ref: e for e in done}
    assert by_ref[late[0]].to == ["slack:CMANAGERS", "mail:leder@branninfo.no",
                                  "mail:nestleder@branninfo.no"]
    assert by_ref[plain[0]].to == ["slack:CREVIEW"]
    # Again: nothing new, nothing doubled, still intact.
    assert scheduler.sweep(engine, settings, at_noon(SWEEP_DAY)) == []
    again = _state(engine)
    assert again["escalations"] == got["escalations"] and len(again["keys"]) == len(got["keys"])
    assert again["report"].intact


def test_an_interrupted_batch_sweep_is_finished_by_the_next_without_doubles(
        engine, settings, monkeypatch):
    monkeypatch.setattr(scheduler, "CHUNK", 4)
    monkeypatch.setattr(scheduler, "PARALLEL_CHUNKS", 1)  # in order: see the test below
    _deliver_everywhere(settings)
    refs = [_open(engine, settings, date(2026, 3, 10), ("question",)) for _ in range(10)]
    real_chunk = scheduler._escalate_chunk
    calls = {"n": 0}

    def crash_before_the_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the process died between chunks")
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(scheduler, "_escalate_chunk", crash_before_the_second_chunk)
    with pytest.raises(RuntimeError):
        scheduler.sweep(engine, settings, at_noon(SWEEP_DAY))
    first = _state(engine)
    assert sum(first["escalations"].values()) == sum(first["events"].values()) == 4
    assert len(first["keys"]) == 4 and first["report"].intact
    monkeypatch.setattr(scheduler, "_escalate_chunk", real_chunk)

    # A crash inside a chunk, after its steps were claimed: the chunk is rolled back whole,
    # so no escalation is left claimed without its event and its delivery.
    real_record = cases.record_events
    writes = {"n": 0}

    def crash_while_writing_the_trail(*args, **kwargs):
        writes["n"] += 1
        if writes["n"] == 2:
            raise RuntimeError("the database went away mid-chunk")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(cases, "record_events", crash_while_writing_the_trail)
    with pytest.raises(RuntimeError):
        scheduler.sweep(engine, settings, at_noon(SWEEP_DAY))
    second = _state(engine)
    assert sum(second["escalations"].values()) == sum(second["events"].values()) == 8
    assert len(second["keys"]) == 8 and second["report"].intact
    monkeypatch.setattr(cases, "record_events", real_record)

    finished = scheduler.sweep(engine, settings, at_noon(SWEEP_DAY))
    assert len(finished) == 2  # only what was left
    last = _state(engine)
    with session_scope(engine, write=False) as s:
        ids = {cases.get_case(s, ref).id for ref in refs}
    assert last["escalations"] == last["events"] == Counter({i: 1 for i in ids})
    assert len(last["keys"]) == len(set(last["keys"])) == 10
    assert last["report"].intact
    assert scheduler.sweep(engine, settings, at_noon(SWEEP_DAY)) == []


def test_chunks_written_side_by_side_keep_the_same_promises(engine, settings, monkeypatch):
    """PostgreSQL writes two chunks at a time on two connections: a chunk that fails is rolled
    back whole while the others are kept, and the next sweep does exactly what is left."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes one chunk at a time")
    monkeypatch.setattr(scheduler, "CHUNK", 4)
    _deliver_everywhere(settings)
    refs = [_open(engine, settings, date(2026, 3, 10), ("question",)) for _ in range(10)]
    real_chunk = scheduler._escalate_chunk
    calls = {"n": 0}
    lock = threading.Lock()

    def the_second_chunk_to_start_fails(*args, **kwargs):
        with lock:
            calls["n"] += 1
            mine = calls["n"]
        if mine == 2:
            raise RuntimeError("this chunk's connection died")
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(scheduler, "_escalate_chunk", the_second_chunk_to_start_fails)
    with pytest.raises(RuntimeError):
        scheduler.sweep(engine, settings, at_noon(SWEEP_DAY))
    first = _state(engine)
    assert calls["n"] == 3  # every chunk was tried
    assert first["escalations"] == first["events"]
    assert sum(first["escalations"].values()) == 6  # one chunk of four left out, whole
    assert len(first["keys"]) == len(set(first["keys"])) == 6 and first["report"].intact
    monkeypatch.setattr(scheduler, "_escalate_chunk", real_chunk)
    assert len(scheduler.sweep(engine, settings, at_noon(SWEEP_DAY))) == 4
    last = _state(engine)
    with session_scope(engine, write=False) as s:
        ids = {cases.get_case(s, ref).id for ref in refs}
    assert last["escalations"] == last["events"] == Counter({i: 1 for i in ids})
    assert last["report"].intact


def test_append_events_hashes_as_append_event_does(engine, settings, monkeypatch):
    """Mixed in one transaction with single appends, a case-less event, a chain's first event
    and several events of one chain: the trail verifies, and every hash is the one
    `append_event` would have given."""
    refs = [_open(engine, settings, date(2026, 3, 10), ("question",)) for _ in range(3)]
    moment = datetime(2026, 4, 7, 10, 0, 0, 123456, tzinfo=timezone.utc)
    monkeypatch.setattr(audit, "utcnow", lambda: moment)
    with session_scope(engine) as s:
        a, b, c = (cases.get_case(s, ref).id for ref in refs)
        none_before = s.execute(select(func.count()).select_from(Event)
                                .where(Event.case_id.is_(None))).scalar_one()
        append_event(s, a, "tester", "escalation", '{"n": 1}')
        written = append_events(s, [(a, "tester", "escalation", '{"n": 2}'),
                                    (b, "tester", "escalation", '{"n": 3}'),
                                    (None, "tester", "escalation", '{"n": 4}'),
                                    (a, "tester", "escalation", '{"n": 5}'),
                                    (None, "tester", "escalation", '{"n": 6}')])
        append_event(s, b, "tester", "escalation", '{"n": 7}')
        append_events(s, [(c, "tester", "escalation", '{"n": 8}')])
    assert written == 5
    with session_scope(engine, write=False) as s:
        assert verify_trail(s).intact
        rows = s.execute(select(Event).where(Event.detail.like('{"n": %'))
                         .order_by(Event.id)).scalars().all()
        assert [json.loads(r.detail)["n"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
        for row in rows:
            assert row.at == moment
            assert row.hash == event_hash(row.case_id, moment, row.actor, row.kind, row.detail,
                                          row.prev_hash)
        by_case: dict = {}
        for row in rows:
            by_case.setdefault(row.case_id, []).append(row)
        for chain in by_case.values():  # each follows the one before it in its chain
            assert all(later.prev_hash == earlier.hash for earlier, later in zip(chain, chain[1:]))
        head = s.get(AuditChain, audit.NO_CASE)
        assert head.events == none_before + 2 and head.last_hash == by_case[None][-1].hash


def test_record_events_masks_as_record_event_does(engine, settings):
    ref = _open(engine, settings, date(2026, 3, 10), ("question",))
    with session_scope(engine) as s:
        case = cases.get_case(s, ref)
        cases.record_events(s, [(case.id, f"staff {FNR}", "escalation",
                                 {"step": "before3:2026-04-09", "due": date(2026, 4, 9),
                                  "to": [f"note {FNR}"]})])
        cases.record_event(s, case, f"staff {FNR}", "escalation", step="before3:2026-04-09",
                           due=date(2026, 4, 9), to=[f"note {FNR}"])
    with session_scope(engine, write=False) as s:
        rows = s.execute(select(Event).where(Event.case_id == case.id, Event.kind == "escalation")
                         .order_by(Event.id)).scalars().all()
        assert verify_trail(s).intact
    assert len(rows) == 2
    assert rows[0].detail == rows[1].detail and rows[0].actor == rows[1].actor
    assert FNR not in rows[0].detail and FNR not in rows[0].actor
    assert json.loads(rows[0].detail)["due"] == "2026-04-09"
    with pytest.raises(ValueError):
        with session_scope(engine) as s:
            cases.record_events(s, [(case.id, "tester", "no_such_kind", {})])


def test_a_sweep_at_a_given_moment_records_that_moment(engine, settings):
    """`dsr sweep --now`: the escalation row, its outbox rows, the mail's Date and the event's
    `as_of` carry the moment swept at; the event's own `at` stays the clock it was written by."""
    _deliver_everywhere(settings)
    ref = _open(engine, settings, date(2026, 3, 10), ("question",))
    moment = datetime(2026, 4, 9, 7, 30, tzinfo=OSLO)  # the due date: Slack and the managers
    assert [e.ref for e in scheduler.sweep(engine, settings, moment)] == [ref]
    with session_scope(engine, write=False) as s:
        case = cases.get_case(s, ref)
        escalation = s.execute(select(Escalation)).scalar_one()
        outbox = s.execute(select(Outbox).order_by(Outbox.id)).scalars().all()
        event = s.execute(select(Event).where(Event.case_id == case.id,
                                              Event.kind == "escalation")).scalar_one()
    assert escalation.created_at == moment
    assert [(o.kind, o.created_at, o.next_attempt_at) for o in outbox] == [
        ("slack", moment, moment), ("email", moment, moment), ("email", moment, moment)]
    assert b"Date: Thu, 09 Apr 2026 05:30:00 +0000" in outbox[1].payload
    assert json.loads(event.detail)["as_of"] == "2026-04-09T07:30:00+02:00"
    assert event.at != moment  # written now, by the real clock
    # A calendar change found by a sweep at that moment: the moved date's event says so too.
    later = _open(engine, settings, date(2026, 3, 11), ("question",))  # due 10 April
    settings.cases.extra_closed_dates = [date(2026, 4, 10)]
    moved_at = datetime(2026, 4, 8, 9, 0, tzinfo=OSLO)
    scheduler.sweep(engine, settings, moved_at)
    with session_scope(engine, write=False) as s:
        case = cases.get_case(s, later)
        moved = s.execute(select(Event).where(Event.case_id == case.id,
                                              Event.kind == "deadline_moved")).scalar_one()
    assert json.loads(moved.detail)["as_of"] == "2026-04-08T09:00:00+02:00"
