"""From what a person wrote to a case with a drafted reply, on a real database."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from stdnum.no import fodselsnummer

from assistant import cases, workflow
from assistant.store.db import open_store, session_scope

RECEIVED = datetime(2026, 3, 10, 8, 30, tzinfo=timezone.utc)


def a_valid_fnr() -> str:
    """An invented fødselsnummer with correct check digits (born 15 June 1985)."""
    for individual in range(500, 999):
        stem = f"150685{individual:03d}"
        try:
            k1 = fodselsnummer.calc_check_digit1(stem)
            k2 = fodselsnummer.calc_check_digit2(stem + k1)
        except Exception:  # noqa: BLE001 - some stems have no valid check digit
            continue
        candidate = stem + k1 + k2
        if fodselsnummer.is_valid(candidate):
            return candidate
    raise AssertionError("no valid number found")


@pytest.fixture
def store(settings):
    return open_store(settings.database.url)


def request(store, settings, body, org="branninfo", subject="", intents=None):
    with session_scope(store) as s:
        case = workflow.open_request(s, settings, org_id=org, channel="phone", received_at=RECEIVED,
                                     requester="kari@example.no", subject=subject, body=body,
                                     intents=intents, actor="tester")
        return case.ref


def details(store, ref):
    with session_scope(store) as s:
        return cases.case_details(s, cases.get_case(s, ref))


def test_an_access_request_waits_for_verification_then_gets_a_draft(store, settings):
    ref = request(store, settings, "Hei, jeg ber om innsyn i alle personopplysninger dere har om meg.")
    before = details(store, ref)
    assert before["intents"] == ["access"] and before["state"] == "awaiting_verification"
    assert before["drafts"] == []
    with session_scope(store) as s:
        workflow.verify(s, settings, ref, "email_code", "kari")
    after = details(store, ref)
    assert after["state"] == "drafted"
    (draft,) = after["drafts"]
    assert draft["kind"] == "access" and draft["state"] == "pending"
    assert ref in draft["subject"] and ref in draft["body"]
    # Written after verification, the reply does not ask the person to prove who they are.
    assert "Vi har bekreftet at forespørselen kommer fra deg" in draft["body"]
    assert "Når vi har bekreftet" not in draft["body"]


def test_an_opt_out_is_drafted_at_once_without_verification(store, settings):
    ref = request(store, settings, "Slutt å sende meg nyhetsbrev og reklame på SMS.", org="proffsecurity")
    data = details(store, ref)
    assert data["intents"] == ["opt_out"] and data["state"] == "drafted"
    assert data["drafts"][0]["kind"] == "opt_out"


def test_a_question_is_answered_from_the_policy_before_any_verification(store, settings):
    ref = request(store, settings, "Hvor lenge lagrer dere telefonopptak?", intents=["question"])
    data = details(store, ref)
    assert data["verified"] is False and data["verification_method"] == "not_required"
    assert data["state"] == "drafted"
    (draft,) = data["drafts"]
    assert "«Opptak»" in draft["body"] and "seks uker" in draft["body"]


def test_bagges_portability_states_the_right_without_quoting_the_policy(store, settings):
    ref = request(store, settings, "x", org="bagges", intents=["portability"])
    with session_scope(store) as s:
        workflow.verify(s, settings, ref, "known_channel", "kari")
    (draft,) = details(store, ref)["drafts"]
    assert draft["quoted_sections"] == []
    assert "«" not in draft["body"]


def test_an_erasure_case_carries_the_organisations_systems(store, settings):
    ref = request(store, settings, "x", intents=["erasure"])
    with session_scope(store) as s:
        workflow.verify(s, settings, ref, "known_channel", "kari")
    data = details(store, ref)
    assert [t["system"] for t in data["erasure_tasks"]] == ["TMG", "Visma", "CRM"]
    body = data["drafts"][0]["body"]
    assert all(system in body for system in ("TMG", "Visma", "CRM"))
    assert "bokføringsloven" in body


def test_an_extension_drafts_a_notice_that_is_reviewed_before_the_reply(store, settings):
    ref = request(store, settings, "x", intents=["access"])
    with session_scope(store) as s:
        workflow.verify(s, settings, ref, "known_channel", "kari")
        workflow.extend(s, settings, ref, "Vi må hente data fra tre systemer", "kari",
                        now=datetime(2026, 3, 20, tzinfo=timezone.utc))
    data = details(store, ref)
    pending = [d for d in data["drafts"] if d["state"] == "pending"]
    assert [d["kind"] for d in pending] == ["extension", "access"]
    assert "tre systemer" in pending[0]["body"]
    with session_scope(store) as s:
        first = cases.approve_draft(s, ref, "kari")
        assert first.kind == "extension"
        assert cases.get_case(s, ref).state == "drafted"
    with session_scope(store) as s:
        for system in ("TMG", "Visma", "CRM"):
            cases.tick(s, ref, "access", system, "done", "kari")
        second = cases.approve_draft(s, ref, "kari")
        assert second.kind == "access" and cases.get_case(s, ref).state == "approved"


def test_a_personal_number_is_masked_in_what_is_stored(store, settings):
    number = a_valid_fnr()
    ref = request(store, settings, f"Jeg vil ha innsyn. Fødselsnummeret mitt er {number}.")
    data = details(store, ref)
    stored = json.dumps(data, ensure_ascii=False)
    assert number not in stored
    assert "[fødselsnummer]" in data["messages"][0]["text"]
