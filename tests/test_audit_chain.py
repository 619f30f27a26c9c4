"""The audit trail cannot be quietly rewritten: edits made behind the triggers' back (as the
database owner can) are found by `dsr audit verify`, which names the case, the event and what
was done to it. On SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from assistant import cases, workflow
from assistant.cli import cli
from assistant.store import db
from assistant.store.audit import GENESIS, verify_trail
from assistant.store.db import open_store, session_scope
from assistant.store.models import AuditChain, Case, Event
from assistant.store.roles import service_role_grants

RECEIVED = datetime(2026, 3, 10, 8, 30, tzinfo=timezone.utc)
_REFUSE = "SELECT RAISE(ABORT, 'events are append-only: the audit trail cannot be changed')"


@pytest.fixture
def store(settings):
    """The database as the service sees it (on PostgreSQL in CI: the limited role)."""
    return open_store(settings.database.url)


@pytest.fixture
def owner(owner_url):
    """The same database as its owner, who can switch the guards off."""
    return open_store(owner_url)


def _two_cases(store, settings) -> list[str]:
    """Two cases with a few events each: opened, verified (drafted), extended."""
    refs = []
    with session_scope(store) as s:
        for who in ("a@example.no", "b@example.no"):
            refs.append(workflow.open_request(s, settings, org_id="branninfo", channel="phone",
                                              received_at=RECEIVED, requester=who,
                                              intents=["access"], actor="kari").ref)
    for ref in refs:
        with session_scope(store) as s:
            workflow.verify(s, settings, ref, "known_channel", "kari", now=RECEIVED)
        with session_scope(store) as s:
            workflow.extend(s, settings, ref, "many systems", "kari", now=RECEIVED)
    return refs


def _events_of(store, ref: str) -> list[Event]:
    with session_scope(store, write=False) as s:
        case = cases.get_case(s, ref)
        return list(s.execute(select(Event).where(Event.case_id == case.id).order_by(Event.id)).scalars())


def _behind_the_back(owner, *statements: tuple[str, dict]) -> None:
    """Run statements with the append-only guard switched off, as the database's owner could:
    DROP TRIGGER and re-create it on SQLite, DISABLE/ENABLE TRIGGER on PostgreSQL."""
    with owner.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("DROP TRIGGER events_no_update")
            conn.exec_driver_sql("DROP TRIGGER events_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER events_append_only")
        for sql, params in statements:
            conn.execute(text(sql), params)
        if sqlite:
            conn.exec_driver_sql(f"CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN {_REFUSE}; END")
            conn.exec_driver_sql(f"CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN {_REFUSE}; END")
        else:
            conn.exec_driver_sql("ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only")


def _verify_cli() -> tuple[int, str, dict]:
    runner = CliRunner()
    plain = runner.invoke(cli, ["audit", "verify"], catch_exceptions=False)
    as_json = runner.invoke(cli, ["audit", "verify", "--json"], catch_exceptions=False)
    assert as_json.exit_code == plain.exit_code
    return plain.exit_code, plain.stdout, json.loads(as_json.stdout)


def test_an_untouched_trail_is_intact(store, settings):
    _two_cases(store, settings)
    with session_scope(store, write=False) as s:
        total = len(list(s.execute(select(Event)).scalars()))
    code, out, data = _verify_cli()
    assert code == 0, out
    assert out.strip() == f"audit trail intact: {total} events in 2 cases"
    assert data == {"intact": True, "events": total, "cases": 2, "problems": []}


def test_every_event_links_to_the_one_before_it_in_its_case(store, settings):
    ref = _two_cases(store, settings)[0]
    events = _events_of(store, ref)
    assert events[0].prev_hash == GENESIS
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    with session_scope(store, write=False) as s:
        head = s.execute(select(AuditChain).where(AuditChain.case_id == events[0].case_id)).scalar_one()
    assert (head.events, head.last_hash) == (len(events), events[-1].hash)


def test_a_changed_detail_is_found_and_named(store, owner, settings):
    ref = _two_cases(store, settings)[1]
    target = _events_of(store, ref)[2]
    _behind_the_back(owner, ("UPDATE events SET detail = :d WHERE id = :id",
                             {"d": json.dumps({"method": "id_document_seen"}), "id": target.id}))
    code, out, data = _verify_cli()
    assert code == 1
    assert f"{ref}: changed: event {target.id} ({target.kind}) was changed" in out
    assert data["intact"] is False
    assert [(p["ref"], p["event_id"], p["problem"]) for p in data["problems"]] == [(ref, target.id, "changed")]


def test_a_changed_actor_with_its_hash_recomputed_still_breaks_the_next_link(store, owner, settings):
    """Whoever rewrites one event and its hash must rewrite every later one and the head too."""
    from assistant.store.audit import event_hash

    ref = _two_cases(store, settings)[0]
    events = _events_of(store, ref)
    target, after = events[1], events[2]
    forged = event_hash(target.case_id, target.at, "mallory", target.kind, target.detail, target.prev_hash)
    _behind_the_back(owner, ("UPDATE events SET actor = 'mallory', hash = :h WHERE id = :id",
                             {"h": forged, "id": target.id}))
    code, out, data = _verify_cli()
    assert code == 1
    assert [(p["ref"], p["event_id"]) for p in data["problems"]] == [(ref, after.id)]


def test_an_event_removed_in_the_middle_is_found(store, owner, settings):
    ref = _two_cases(store, settings)[0]
    events = _events_of(store, ref)
    gone, next_one = events[2], events[3]
    _behind_the_back(owner, ("DELETE FROM events WHERE id = :id", {"id": gone.id}))
    code, out, data = _verify_cli()
    assert code == 1
    assert data["problems"][0]["problem"] == "removed"
    assert data["problems"][0]["event_id"] == next_one.id
    assert f"{ref}: removed: an event before event {next_one.id}" in out


def test_the_newest_event_removed_is_found_by_the_chain_head(store, owner, settings):
    """Removing the last event leaves no broken link; the head's count and hash catch it."""
    ref = _two_cases(store, settings)[1]
    events = _events_of(store, ref)
    _behind_the_back(owner, ("DELETE FROM events WHERE id = :id", {"id": events[-1].id}))
    code, out, data = _verify_cli()
    assert code == 1
    [problem] = data["problems"]
    assert (problem["ref"], problem["problem"], problem["event_id"]) == (ref, "removed", events[-2].id)
    assert f"1 newest event(s) after event {events[-2].id} are missing (removed)" in out


def test_events_swapped_are_reported_as_reordered(store, owner, settings):
    ref = _two_cases(store, settings)[0]
    a, b = _events_of(store, ref)[1:3]
    columns = ("at", "actor", "kind", "detail", "prev_hash", "hash")
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    _behind_the_back(
        owner,
        (f"UPDATE events SET {sets} WHERE id = :id", {"id": a.id, **{c: getattr(b, c) for c in columns}}),
        (f"UPDATE events SET {sets} WHERE id = :id", {"id": b.id, **{c: getattr(a, c) for c in columns}}),
    )
    code, out, data = _verify_cli()
    assert code == 1
    assert (data["problems"][0]["problem"], data["problems"][0]["event_id"]) == ("reordered", a.id)


def test_events_without_a_case_have_their_own_chain(store, owner, settings):
    with session_scope(store) as s:
        for n in range(3):
            cases.record_event(s, None, "dsr", "opened", n=n)
    assert _verify_cli()[0] == 0
    with session_scope(store, write=False) as s:
        newest = s.execute(select(Event).where(Event.case_id.is_(None)).order_by(Event.id.desc())).scalars().first()
    _behind_the_back(owner, ("DELETE FROM events WHERE id = :id", {"id": newest.id}))
    code, out, data = _verify_cli()
    assert code == 1
    assert data["problems"][0]["ref"] is None and data["problems"][0]["problem"] == "removed"
    assert "events without a case: removed" in out


def test_existing_events_are_chained_by_the_migration(store, owner, settings):
    """Back to 0001, events written the old way, then up to head: the migration chains them and
    new events continue the chain."""
    ref = _two_cases(store, settings)[0]
    cfg = db._alembic_config()
    with owner.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with owner.begin() as conn:
        case_id = conn.execute(text("SELECT id FROM cases WHERE ref = :r"), {"r": ref}).scalar_one()
        conn.execute(text("INSERT INTO events (case_id, at, actor, kind, detail) VALUES "
                          "(:c, :at, 'old', 'note', '{\"x\": \"ø\"}')"),
                     {"c": case_id, "at": datetime(2026, 3, 11, 9, 0, 0, 123456)})
    with owner.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        if store.url.username != owner.url.username:  # new tables: grant again, as README says
            for statement in service_role_grants(store.url.username):
                conn.execute(text(statement))
    assert _verify_cli()[0] == 0
    with session_scope(store) as s:
        cases.close(s, ref, "kari")
    code, out, _ = _verify_cli()
    assert code == 0, out
    kinds = [e.kind for e in _events_of(store, ref)]
    assert kinds[-2:] == ["note", "closed"]


def test_replace_into_is_refused_on_sqlite(store, settings):
    if store.dialect.name != "sqlite":
        pytest.skip("REPLACE INTO is SQLite's")
    ref = _two_cases(store, settings)[0]
    first = _events_of(store, ref)[0]
    with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
        conn.execute(text("REPLACE INTO events (id, case_id, at, actor, kind, detail) "
                          "VALUES (:id, :c, :at, 'x', 'opened', '{}')"),
                     {"id": first.id, "c": first.case_id, "at": datetime(2026, 1, 1)})


@pytest.mark.postgres
def test_truncate_and_replica_mode_are_refused_even_for_the_owner(store, owner, settings):
    if owner.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    _two_cases(store, settings)
    with pytest.raises(DBAPIError, match="append-only"), owner.begin() as conn:
        conn.exec_driver_sql("TRUNCATE events CASCADE")
    # a superuser can skip ordinary triggers this way; the guard fires ALWAYS
    with pytest.raises(DBAPIError, match="append-only"), owner.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("UPDATE events SET actor = 'mallory'")
    with pytest.raises(DBAPIError, match="append-only"), owner.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("DELETE FROM events")
    with session_scope(store, write=False) as s:
        assert verify_trail(s).intact
        assert s.execute(select(Case)).scalars().first() is not None


@pytest.mark.postgres
def test_the_service_role_cannot_rewrite_events(store, owner, settings):
    """As the limited role (README, "Running without superuser rights"): the audit trail takes
    INSERT and SELECT only; TRUNCATE, UPDATE and DELETE are refused by privilege, and the role
    can neither switch the triggers off nor skip them."""
    if store.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    if store.url.username == owner.url.username:
        pytest.skip("set DSR_TEST_POSTGRES_APP_ROLE (CI: dsr_app) to run the tests as the service role")
    _two_cases(store, settings)
    refused = [
        "TRUNCATE events",
        "UPDATE events SET actor = 'mallory'",
        "DELETE FROM events",
        "SET session_replication_role = replica",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "DROP TRIGGER events_append_only ON events",
    ]
    for statement in refused:
        with pytest.raises(DBAPIError) as caught, store.begin() as conn:
            conn.exec_driver_sql(statement)
        assert caught.value.orig.sqlstate == "42501", (statement, caught.value.orig)
    with store.connect() as conn:
        assert conn.exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar() is False
    with session_scope(store, write=False) as s:
        assert verify_trail(s).intact
