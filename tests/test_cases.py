"""The case engine on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from assistant import cases as engine_cases
from assistant.cases import CaseError, CaseNotFound
from assistant.store.db import open_store, session_scope
from assistant.store.models import Event

FEB_1 = datetime(2026, 2, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(settings):
    return open_store(settings.database.url)


def open_one(store, settings, **overrides):
    args = dict(org_id="branninfo", channel="email", received_at=FEB_1,
                requester="Ola@Example.no", intents=["access"], actor="test")
    args.update(overrides)
    with session_scope(store) as s:
        return engine_cases.open_case(s, settings, **args)


def events_of(store, ref):
    with session_scope(store) as s:
        case = engine_cases.get_case(s, ref)
        return [e["kind"] for e in engine_cases.case_details(s, case)["events"]]


def test_a_new_case_gets_a_reference_due_dates_and_awaits_verification(store, settings):
    case = open_one(store, settings)
    assert case.ref == "DSR-2026-0001"
    assert case.state == "awaiting_verification"
    assert case.requester == "ola@example.no"
    assert (case.legal_due, case.promised_due, case.due) == (date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 2))
    assert case.extended_due == date(2026, 5, 4)
    assert events_of(store, case.ref) == ["opened", "verification_requested"]


def test_references_count_per_year_of_receipt_in_oslo(store, settings):
    a = open_one(store, settings)
    b = open_one(store, settings, org_id="bagges")
    # 23:30 UTC on New Year's Eve is already 2027 in Oslo.
    c = open_one(store, settings, received_at=datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc))
    assert [a.ref, b.ref, c.ref] == ["DSR-2026-0001", "DSR-2026-0002", "DSR-2027-0001"]


def test_opt_out_alone_skips_verification_but_is_recorded(store, settings):
    case = open_one(store, settings, intents=["opt_out"])
    assert case.state == "verified" and case.verified is False
    assert case.verification_method == "not_required"
    assert events_of(store, case.ref) == ["opened", "verification_skipped"]


def test_opt_out_with_access_still_needs_verification(store, settings):
    assert open_one(store, settings, intents=["opt_out", "access"]).state == "awaiting_verification"


def test_the_opt_out_shortcut_is_a_setting(store, settings):
    settings.cases.opt_out_skips_verification = False
    assert open_one(store, settings, intents=["opt_out"]).state == "awaiting_verification"


def test_verify_records_the_method_and_refuses_twice(store, settings):
    case = open_one(store, settings)
    with session_scope(store) as s:
        engine_cases.verify(s, settings, case.ref, "id_document_seen", "kari")
    with session_scope(store) as s:
        again = engine_cases.get_case(s, case.ref)
        assert again.verified and again.state == "verified"
        assert again.verification_method == "id_document_seen"
        with pytest.raises(CaseError, match="already verified"):
            engine_cases.verify(s, settings, case.ref, "email_code", "kari")
    with session_scope(store) as s, pytest.raises(CaseError, match="unknown verification method"):
        engine_cases.verify(s, settings, case.ref, "passport_copy", "kari")


def test_extension_needs_a_reason_and_is_refused_after_the_notice_date(store, settings):
    case = open_one(store, settings)
    with session_scope(store) as s, pytest.raises(CaseError, match="reason"):
        engine_cases.extend(s, settings, case.ref, "  ", "kari")
    late = datetime(2026, 3, 3, 10, tzinfo=timezone.utc)
    with session_scope(store) as s, pytest.raises(CaseError, match="no longer be extended"):
        engine_cases.extend(s, settings, case.ref, "complex", "kari", now=late)
    on_time = datetime(2026, 3, 2, 22, 30, tzinfo=timezone.utc)  # 23:30 in Oslo on the last day
    with session_scope(store) as s:
        extended = engine_cases.extend(s, settings, case.ref, "many systems", "kari", now=on_time)
        assert extended.extended and extended.due == date(2026, 5, 4)
    with session_scope(store) as s, pytest.raises(CaseError, match="already extended"):
        engine_cases.extend(s, settings, case.ref, "more", "kari", now=on_time)
    assert events_of(store, case.ref)[-1] == "extended"


def test_illegal_transitions_are_refused_with_the_reason(store, settings):
    case = open_one(store, settings)
    with session_scope(store) as s:
        engine_cases.close(s, case.ref, "kari")
    with session_scope(store) as s, pytest.raises(CaseError, match="already closed"):
        engine_cases.close(s, case.ref, "kari")
    with session_scope(store) as s, pytest.raises(CaseError, match="closed"):
        engine_cases.verify(s, settings, case.ref, "email_code", "kari")
    with session_scope(store) as s, pytest.raises(CaseError, match="finished case"):
        engine_cases.extend(s, settings, case.ref, "x", "kari", now=FEB_1)
    with session_scope(store) as s:
        reopened = engine_cases.reopen(s, case.ref, "kari")
        assert reopened.state == "awaiting_verification"
    assert events_of(store, case.ref)[-2:] == ["closed", "reopened"]


def test_unknown_reference_is_refused(store, settings):
    with session_scope(store) as s, pytest.raises(CaseNotFound):
        engine_cases.get_case(s, "DSR-2026-9999")


def test_draft_approval_needs_verification_and_settled_erasure(store, settings):
    case = open_one(store, settings, intents=["erasure"])
    with session_scope(store) as s:
        c = engine_cases.get_case(s, case.ref)
        engine_cases.add_draft(s, c, kind="erasure", language="nb", subject="S", body="B")
    with session_scope(store) as s, pytest.raises(CaseError, match="verify the requester"):
        engine_cases.approve_draft(s, case.ref, "kari")
    with session_scope(store) as s:
        engine_cases.verify(s, settings, case.ref, "email_code", "kari")
        c = engine_cases.get_case(s, case.ref)
        engine_cases.add_draft(s, c, kind="erasure", language="nb", subject="S2", body="B2")
    with session_scope(store) as s, pytest.raises(CaseError, match="open: TMG, Visma, CRM"):
        engine_cases.approve_draft(s, case.ref, "kari")
    with session_scope(store) as s, pytest.raises(CaseError, match="name the law"):
        engine_cases.settle_erasure(s, case.ref, "Visma", "kept", "kari")
    with session_scope(store) as s:
        engine_cases.settle_erasure(s, case.ref, "tmg", "done", "kari")
        engine_cases.settle_erasure(s, case.ref, "CRM", "done", "kari")
        engine_cases.settle_erasure(s, case.ref, "Visma", "kept", "kari", law="bokføringsloven")
    with session_scope(store) as s:
        draft = engine_cases.approve_draft(s, case.ref, "kari", edited_body="Edited")
        assert draft.state == "approved" and draft.body == "Edited" and draft.subject == "S2"
    with session_scope(store) as s:
        details = engine_cases.case_details(s, engine_cases.get_case(s, case.ref))
    assert details["state"] == "approved"
    assert [d["state"] for d in details["drafts"]] == ["superseded", "approved"]
    assert {t["system"]: t["state"] for t in details["erasure_tasks"]} == {
        "TMG": "done", "Visma": "kept", "CRM": "done"}
    kinds = [e["kind"] for e in details["events"]]
    assert kinds.count("erasure_done") == 2 and "erasure_kept" in kinds and kinds[-1] == "approved"
    assert all(e["actor"] for e in details["events"])


def test_reject_needs_a_reason_and_rejects_the_case(store, settings):
    case = open_one(store, settings, intents=["opt_out"])
    with session_scope(store) as s:
        engine_cases.add_draft(s, engine_cases.get_case(s, case.ref), kind="opt_out",
                               language="nb", subject="S", body="B")
    with session_scope(store) as s, pytest.raises(CaseError, match="reason"):
        engine_cases.reject_draft(s, case.ref, "", "kari")
    with session_scope(store) as s:
        engine_cases.reject_draft(s, case.ref, "not a customer of ours", "kari")
    with session_scope(store) as s:
        assert engine_cases.get_case(s, case.ref).state == "rejected"


def test_the_audit_trail_is_append_only_in_the_database(store, settings):
    case = open_one(store, settings)
    with pytest.raises((IntegrityError, DBAPIError)):
        with session_scope(store) as s:
            s.execute(text("UPDATE events SET actor = 'someone else'"))
    with pytest.raises((IntegrityError, DBAPIError)):
        with session_scope(store) as s:
            s.execute(text("DELETE FROM events"))
    with session_scope(store) as s:
        actors = {e.actor for e in s.execute(select(Event)).scalars()}
    assert actors == {"test"}
    assert case.ref


def test_case_json_has_the_contract_fields(store, settings):
    case = open_one(store, settings, intents=["access", "portability"], language="en")
    data = engine_cases.case_summary(case)
    for key in ("ref", "org", "state", "intents", "language", "requester", "received_at", "due",
                "verified", "channel"):
        assert key in data
    assert data["intents"] == ["access", "portability"] and data["due"] == "2026-03-02"
    json.dumps(data)


def test_clock_from_verification_leaves_due_open_until_verified(store, settings):
    settings.cases.verification_clock = "from_verification"
    case = open_one(store, settings)
    assert case.due is None
    with session_scope(store) as s:
        verified = engine_cases.verify(s, settings, case.ref, "email_code", "kari",
                                       now=datetime(2026, 4, 10, 8, tzinfo=timezone.utc))
        assert verified.due == date(2026, 5, 11)  # 10 May 2026 is a Sunday
