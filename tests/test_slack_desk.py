"""The Slack review desk on real local servers: the Bolt app in HTTP mode receiving signed
requests, a local server answering the Slack Web API, aiosmtpd as the mail sink. The listeners
run after the ack on their own threads, so the tests wait for their effect (never for a time)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from mailservers import Sink, free_port, request, send
from slackservers import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SlackApi,
    click,
    command,
    post,
    signed_headers,
    submit,
    wait_for,
)
from sqlalchemy import select
from sqlmodel import Session

from assistant import cases, intake, workflow
from assistant.channels.slack.stage import SlackStage
from assistant.channels.smtp import SmtpListener
from assistant.outbox import Sender
from assistant.store.db import open_store, session_scope
from assistant.store.models import Case, Draft, Event, Outbox, utcnow

APPROVER, STRANGER, GROUP_MEMBER = "UAPPROVER", "USTRANGER", "UGROUPMEMBER"


@pytest.fixture
def sink():
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def slack_api():
    server = SlackApi().start()
    server.groups["SPRIVACY"] = [GROUP_MEMBER]
    yield server
    server.stop()


@pytest.fixture
def desk_settings(db_url, sink, slack_api, monkeypatch):
    from assistant.config import load_settings

    env = {"DATABASE__URL": db_url, "OUTBOUND__HOST": "127.0.0.1", "OUTBOUND__PORT": str(sink.port),
           "SLACK__BOT_TOKEN": BOT_TOKEN, "SLACK__SIGNING_SECRET": SIGNING_SECRET,
           "SLACK__API_URL": slack_api.url, "SLACK__REVIEW_CHANNEL": "CREVIEW",
           "SLACK__APPROVERS": json.dumps([APPROVER, "SPRIVACY"])}
    for key, value in env.items():
        monkeypatch.setenv(f"DSR_{key}", value)
    return load_settings(None)


@pytest.fixture
def engine(desk_settings):
    return open_store(desk_settings.database.url)


@pytest.fixture
def stage(desk_settings, engine):
    desk = SlackStage(desk_settings, engine, port=0)
    desk.start()
    yield desk
    desk.stop()


@pytest.fixture
def sender(engine, desk_settings):
    return Sender(engine, desk_settings, base_delay=1.0, timeout=10)


@pytest.fixture
def listener(desk_settings, engine):
    server = SmtpListener(desk_settings, engine, port=free_port())
    server.start()
    yield server
    server.stop()


def by_mail(listener, engine, settings, sender, **kwargs) -> str:
    """One request in by SMTP, processed, acknowledged; its reference."""
    send(listener.port, request(**kwargs))
    assert intake.drain(engine, settings) == 1
    sender.send_due()
    with Session(engine) as session:
        return session.execute(select(Case.ref).order_by(Case.id.desc())).scalars().first()


def case(engine, ref: str) -> Case:
    with Session(engine) as session:
        return cases.get_case(session, ref)


def kinds(engine, ref: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        c = cases.get_case(session, ref)
        return [(e.kind, e.actor) for e in session.execute(
            select(Event).where(Event.case_id == c.id).order_by(Event.id)).scalars()]


def pending(engine, ref: str) -> list[Draft]:
    with Session(engine) as session:
        c = cases.get_case(session, ref)
        return list(session.execute(select(Draft).where(
            Draft.case_id == c.id, Draft.state == "pending").order_by(Draft.id)).scalars())


def verified_case(listener, engine, settings, sender, stage, **kwargs) -> str:
    ref = by_mail(listener, engine, settings, sender, **kwargs)
    with session_scope(engine) as session:
        workflow.verify(session, settings, ref, "known_channel", "staff")
    assert stage.sync_once() == 1
    sender.send_due()
    return ref


def card_text(call: dict) -> str:
    return json.dumps(call["blocks"], ensure_ascii=False)


def buttons(call: dict) -> list[str]:
    return [e["action_id"] for b in call["blocks"] if b["type"] == "actions" for e in b["elements"]]


# -- signed requests ----------------------------------------------------------------------------


def test_unsigned_wrongly_signed_and_stale_requests_get_401(stage):
    body = "payload=%7B%7D"
    assert post(stage.port, body, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 401
    assert post(stage.port, body, signed_headers(body, secret="not-the-secret"))[0] == 401
    stale = int(utcnow().timestamp()) - 600
    assert post(stage.port, body, signed_headers(body, timestamp=stale))[0] == 401


def test_a_signed_request_is_answered(stage, slack_api):
    status, _ = command(stage.port, APPROVER, "help", slack_api.url + "respond")
    assert status == 200
    wait_for(lambda: slack_api.named("respond"))


# -- the card and Approve -----------------------------------------------------------------------


def test_a_verified_case_gets_its_card_and_one_approval_sends_exactly_one_threaded_reply(
        listener, engine, desk_settings, sender, stage, slack_api, sink):
    original = request()
    ref = verified_case(listener, engine, desk_settings, sender, stage,
                        message_id=original["Message-ID"])
    [post_call] = slack_api.named("chat.postMessage")
    assert post_call["channel"] == "CREVIEW"
    text = card_text(post_call)
    for shown in (ref, "Branninfo AS", "ola.nordmann@example.no", "access", "known_channel",
                  "working days left", "Access collection", "_matched_ access:", "lagret om meg"):
        assert shown in text, shown
    assert "dsr_approve" in buttons(post_call) and "dsr_verify" not in buttons(post_call)

    # Approving before every system was searched is refused, and said so.
    assert click(stage.port, APPROVER, "dsr_approve", ref)[0] == 200
    wait_for(lambda: slack_api.named("chat.postEphemeral"))
    assert "collect" in slack_api.named("chat.postEphemeral")[-1]["text"]

    # Each checklist system by its own button.
    items = [json.loads(e["value"]) for b in post_call["blocks"] if b["type"] == "actions"
             for e in b["elements"] if e["action_id"].startswith("dsr_tick:")
             and e["action_id"].endswith(":none")]
    assert items
    for item in items:
        click(stage.port, APPROVER, f"dsr_tick:access:{item['system']}:none", json.dumps(item))
        wait_for(lambda item=item: ("collected", f"slack:{APPROVER}") in kinds(engine, ref)
                 and sum(1 for k in kinds(engine, ref) if k[0] == "collected")
                 >= items.index(item) + 1)

    mails_before = len(sink.messages)
    assert click(stage.port, APPROVER, "dsr_approve", ref)[0] == 200
    wait_for(lambda: case(engine, ref).state == "approved")
    sender.send_due()
    assert len(sink.messages) == mails_before + 1
    reply = sink.messages[-1]
    assert reply["In-Reply-To"] == original["Message-ID"]
    assert ref in reply["Subject"]
    assert case(engine, ref).state == "answered"
    assert ("approved", f"slack:{APPROVER}") in kinds(engine, ref)
    wait_for(lambda: slack_api.named("chat.update"))
    update = slack_api.named("chat.update")[-1]
    assert update["ts"] == "1700000000.000001" and update["channel"] == "CREVIEW"
    assert "dsr_approve" not in buttons(update)
    assert f"slack:{APPROVER}" in card_text(update)

    # A second click (a double click, a retry from Slack) sends nothing.
    refusals = len(slack_api.named("chat.postEphemeral"))
    assert click(stage.port, APPROVER, "dsr_approve", ref)[0] == 200
    wait_for(lambda: len(slack_api.named("chat.postEphemeral")) > refusals)
    sender.send_due()
    assert len(sink.messages) == mails_before + 1
    with Session(engine) as session:
        replies = session.execute(select(Outbox).where(
            Outbox.kind == "email", Outbox.draft_id.is_not(None))).scalars().all()
        assert len(replies) == 1


def test_an_unclear_cases_card_says_why_it_went_to_a_person(
        listener, engine, desk_settings, sender, stage, slack_api, sink):
    """Staff triaging an unclear case see the classifier's reason (its script, a weak cue), in
    English on the card; the case's language is undetermined, so its receipt was in English."""
    ref = by_mail(listener, engine, desk_settings, sender, subject="",
                  body="नमस्ते, कृपया मेरा सारा डेटा हटा दें। धन्यवाद")
    assert case(engine, ref).unclear and case(engine, ref).language == "und"
    receipt = next(m for m in sink.messages if ref in m["Subject"])
    assert "We have received your request" in receipt["Subject"], receipt["Subject"]
    assert stage.sync_once() == 1
    sender.send_due()
    [post_call] = slack_api.named("chat.postMessage")
    assert "unclear (written in Devanagari script" in card_text(post_call)


def test_someone_who_is_not_an_approver_is_refused_with_an_audit_event(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    assert click(stage.port, STRANGER, "dsr_approve", ref)[0] == 200
    wait_for(lambda: ("desk_refused", f"slack:{STRANGER}") in kinds(engine, ref))
    wait_for(lambda: slack_api.named("chat.postEphemeral"))
    assert slack_api.named("chat.postEphemeral")[-1]["user"] == STRANGER
    assert case(engine, ref).state == "drafted"
    assert not slack_api.named("views.open")
    # A modal submitted by a stranger is refused the same way.
    submit(stage.port, STRANGER, "dsr_reject_modal", ref,
           {"reason": {"type": "plain_text_input", "value": "no"}})
    wait_for(lambda: sum(1 for k in kinds(engine, ref) if k[0] == "desk_refused") == 2)
    assert case(engine, ref).state == "drafted"


def test_a_member_of_an_approver_user_group_may_act(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    click(stage.port, GROUP_MEMBER, "dsr_reject", ref)
    wait_for(lambda: slack_api.named("views.open"))
    assert slack_api.named("usergroups.users.list")[0]["usergroup"] == "SPRIVACY"


# -- the modals ---------------------------------------------------------------------------------


def text_value(value: str) -> dict:
    return {"type": "plain_text_input", "value": value}


def test_edit_keeps_what_dsr_wrote_and_approval_sends_staffs_wording(
        listener, engine, desk_settings, sender, stage, slack_api, sink):
    ref = verified_case(listener, engine, desk_settings, sender, stage,
                        body="Jeg har et spørsmål: hvor lenge lagrer dere opptak av samtaler?")
    for element in [e for c in slack_api.named("chat.postMessage") for b in c["blocks"]
                    if b["type"] == "actions" for e in b["elements"]
                    if e["action_id"].startswith("dsr_tick:")
                    and e["action_id"].endswith(":none")]:
        click(stage.port, APPROVER, element["action_id"], element["value"])
    wait_for(lambda: sum(1 for k in kinds(engine, ref) if k[0] == "collected") == 3)
    click(stage.port, APPROVER, "dsr_edit", ref)
    [opened] = wait_for(lambda: slack_api.named("views.open"))
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    assert view["callback_id"] == "dsr_edit_modal" and view["private_metadata"] == ref
    [generated] = pending(engine, ref)
    # A long draft is split over several fields at line ends; joined, it is the draft.
    parts = [b["element"]["initial_value"] for b in view["blocks"]]
    assert "\n".join(parts) == generated.body
    assert all(len(p) <= 3000 for p in parts)
    values = {b["block_id"]: text_value("") for b in view["blocks"]}
    values["body_0"] = text_value("Hei Ola,\n\nvi lagrer samtaleopptak i seks uker.\n\nHilsen oss")
    submit(stage.port, APPROVER, "dsr_edit_modal", ref, values)
    wait_for(lambda: ("draft_edited", f"slack:{APPROVER}") in kinds(engine, ref))
    [edited] = pending(engine, ref)
    assert edited.generated_body == generated.body and "seks uker" in edited.body
    click(stage.port, APPROVER, "dsr_approve", ref)
    wait_for(lambda: case(engine, ref).state == "approved")
    sender.send_due()
    assert "seks uker" in sink.messages[-1].get_content()


def test_an_empty_reason_is_refused_in_the_modal_itself(
        listener, engine, desk_settings, sender, stage):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    status, body = submit(stage.port, APPROVER, "dsr_reject_modal", ref,
                          {"reason": text_value("  ")})
    assert status == 200 and json.loads(body)["response_action"] == "errors"
    assert case(engine, ref).state == "drafted"


def test_reject_drafts_the_refusal_letter_for_review(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    submit(stage.port, APPROVER, "dsr_reject_modal", ref,
           {"reason": text_value("Vi har ingen opplysninger om deg utover denne henvendelsen.")})
    wait_for(lambda: case(engine, ref).state == "rejected")
    assert ("rejected", f"slack:{APPROVER}") in kinds(engine, ref)
    [letter] = pending(engine, ref)
    assert "Datatilsynet" in letter.body
    sender.send_due()
    update = slack_api.named("chat.update")[-1]
    assert "dsr_approve" in buttons(update)  # the letter waits for approval
    assert "dsr_extend" not in buttons(update)


def test_extend_drafts_the_notice_and_a_second_extension_is_refused(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    due = case(engine, ref).due
    submit(stage.port, APPROVER, "dsr_extend_modal", ref,
           {"reason": text_value("Dataene ligger i tre systemer hos to underleverandører.")})
    wait_for(lambda: case(engine, ref).extended)
    assert case(engine, ref).due > due
    assert "extension" in [d.kind for d in pending(engine, ref)]
    submit(stage.port, APPROVER, "dsr_extend_modal", ref, {"reason": text_value("igjen")})
    wait_for(lambda: any("already extended" in c["text"]
                         for c in slack_api.named("chat.postEphemeral")))
    sender.send_due()
    assert "dsr_extend" not in buttons(slack_api.named("chat.update")[-1])


def test_mark_verified_writes_the_draft_and_posts_the_card(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = by_mail(listener, engine, desk_settings, sender)
    assert case(engine, ref).state == "awaiting_verification"
    assert stage.sync_once() == 0  # no draft waits: no card yet
    # `/dsr case REF` shows the case with its buttons; Mark verified opens the modal.
    command(stage.port, APPROVER, f"case {ref}", slack_api.url + "respond")
    [shown] = wait_for(lambda: slack_api.named("respond"))
    assert "dsr_verify" in json.dumps(shown["blocks"])
    click(stage.port, APPROVER, "dsr_verify", ref)
    wait_for(lambda: slack_api.named("views.open"))
    submit(stage.port, APPROVER, "dsr_verify_modal", ref,
           {"method": {"type": "static_select", "selected_option": {"value": "id_document_seen"}}})
    wait_for(lambda: case(engine, ref).verified)
    assert case(engine, ref).verification_method == "id_document_seen"
    assert pending(engine, ref)
    sender.send_due()
    [card] = slack_api.named("chat.postMessage")
    assert "id_document_seen" in card_text(card)


def test_change_intents_redrafts(listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    submit(stage.port, APPROVER, "dsr_intents_modal", ref, {"intents": {
        "type": "multi_static_select", "selected_options": [{"value": "erasure"}]}})
    wait_for(lambda: ("intents_changed", f"slack:{APPROVER}") in kinds(engine, ref))
    assert json.loads(case(engine, ref).intents) == ["erasure"]
    [draft] = pending(engine, ref)
    assert draft.kind == "erasure"
    sender.send_due()
    update = slack_api.named("chat.update")[-1]
    assert "Erasure" in card_text(update)
    # Each erasure system by its own button.
    settle = [e for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]
              if e["action_id"].startswith("dsr_settle:") and e["action_id"].endswith(":done")]
    assert settle
    keep = [e for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]
            if e["action_id"].startswith("dsr_keep:")]
    # One system kept under a law, through its modal; the rest deleted.
    click(stage.port, APPROVER, keep[0]["action_id"], keep[0]["value"])
    [opened] = wait_for(lambda: slack_api.named("views.open"))
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    submit(stage.port, APPROVER, "dsr_keep_modal", view["private_metadata"], {
        "law": text_value("bokføringsloven § 13"),
        "until": {"type": "datepicker", "selected_date": "2031-12-31"}})
    wait_for(lambda: ("erasure_kept", f"slack:{APPROVER}") in kinds(engine, ref))
    kept_system = json.loads(keep[0]["value"])["system"]
    rest = [e for e in settle if json.loads(e["value"])["system"] != kept_system]
    for n, element in enumerate(rest, 1):
        click(stage.port, APPROVER, element["action_id"], element["value"])
        wait_for(lambda n=n: sum(1 for k in kinds(engine, ref) if k[0] == "erasure_done") >= n)
    [reply] = pending(engine, ref)
    assert "bokføringsloven § 13" in reply.body


def test_the_suppression_checklist_is_ticked_from_the_card(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = by_mail(listener, engine, desk_settings, sender, subject="Reservasjon",
                  body="Jeg ønsker ikke mer markedsføring fra dere. Stopp nyhetsbrevet.")
    assert stage.sync_once() == 1  # the opt-out confirmation is drafted at once
    sender.send_due()
    [card] = slack_api.named("chat.postMessage")
    ticks = [e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
             if e["action_id"].startswith("dsr_tick:suppression:")]
    assert ticks
    for n, element in enumerate(ticks, 1):
        click(stage.port, APPROVER, element["action_id"], element["value"])
        wait_for(lambda n=n: sum(1 for k in kinds(engine, ref)
                                 if k == ("marketing_stopped", f"slack:{APPROVER}")) >= n)


def test_assign_to_me_puts_the_approver_on_the_card_and_in_the_trail(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    sender.send_due()
    [card] = slack_api.named("chat.postMessage")
    assert "dsr_assign" in buttons(card) and "nobody" in card_text(card)
    click(stage.port, APPROVER, "dsr_assign", ref)
    wait_for(lambda: case(engine, ref).assignee == APPROVER)
    assert ("assigned", f"slack:{APPROVER}") in kinds(engine, ref)
    sender.send_due()
    assert f"<@{APPROVER}>" in card_text(slack_api.named("chat.update")[-1])


# -- the case changes by email; notes ------------------------------------------------------------


def test_a_follow_up_by_mail_updates_the_card(
        listener, engine, desk_settings, sender, stage, slack_api):
    first = request()
    verified_case(listener, engine, desk_settings, sender, stage,
                        message_id=first["Message-ID"])
    send(listener.port, request(subject="Re: Innsyn", body="Og slett alt om meg etterpå.",
                                in_reply_to=first["Message-ID"]))
    assert intake.drain(engine, desk_settings) == 1
    assert stage.sync_once() == 1
    assert stage.sync_once() == 0  # asking twice queues once
    sender.send_due()
    update = slack_api.named("chat.update")[-1]
    assert "erasure" in card_text(update)


def test_a_reply_in_the_cards_thread_is_an_internal_note(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    body = json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback", "event_id": "Ev1", "event_time": 1700000100,
                       "event": {"type": "message", "channel": "CREVIEW", "user": APPROVER,
                                 "text": "Ringte henne, hun bekrefter adressen.",
                                 "ts": "1700000100.000001", "thread_ts": "1700000000.000001",
                                 "channel_type": "channel"}})
    assert post(stage.port, body, signed_headers(body, content_type="application/json"))[0] == 200
    wait_for(lambda: ("note", f"slack:{APPROVER}") in kinds(engine, ref))
    # Slack retrying the event keeps the note once.
    headers = signed_headers(body, content_type="application/json") | {"X-Slack-Retry-Num": "1"}
    assert post(stage.port, body, headers)[0] == 200
    with session_scope(engine) as session:
        workflow.record_note(session, ref, "staff", "sist", ts="1700000200.000001")
    wait_for(lambda: ("note", "staff") in kinds(engine, ref))
    assert kinds(engine, ref).count(("note", f"slack:{APPROVER}")) == 1


# -- resilience ----------------------------------------------------------------------------------


def test_a_429_then_success_posts_the_card_exactly_once(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = by_mail(listener, engine, desk_settings, sender)
    with session_scope(engine) as session:
        workflow.verify(session, desk_settings, ref, "known_channel", "staff")
    slack_api.fail("chat.postMessage", 429, {"Retry-After": "7"})
    slack_api.fail("chat.postMessage", 503, body={"ok": False, "error": "service_unavailable"})
    assert stage.sync_once() == 1
    now = utcnow()
    assert sender.send_due(now=now) == 1
    with Session(engine) as session:
        [row] = session.execute(select(Outbox).where(Outbox.kind == "slack")).scalars().all()
        assert row.state == "pending" and "rate limited" in row.last_error
        assert row.next_attempt_at >= now + timedelta(seconds=7) - timedelta(seconds=1)
    assert sender.send_due(now=now + timedelta(seconds=1)) == 0  # Retry-After not yet passed
    assert sender.send_due(now=now + timedelta(seconds=8)) == 1  # 503: back off again
    assert slack_api.named("chat.postMessage") == []
    assert sender.send_due(now=now + timedelta(hours=1)) == 1
    assert len(slack_api.named("chat.postMessage")) == 1
    assert sender.send_due(now=now + timedelta(hours=2)) == 0
    assert stage.sync_once() == 0
    assert len(slack_api.named("chat.postMessage")) == 1


def test_a_channel_slack_refuses_marks_the_row_failed(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = by_mail(listener, engine, desk_settings, sender)
    with session_scope(engine) as session:
        workflow.verify(session, desk_settings, ref, "known_channel", "staff")
    slack_api.fail("chat.postMessage", 200, body={"ok": False, "error": "channel_not_found"})
    stage.sync_once()
    sender.send_due()
    with Session(engine) as session:
        [row] = session.execute(select(Outbox).where(Outbox.kind == "slack")).scalars().all()
        assert row.state == "failed" and "channel_not_found" in row.last_error


# -- /dsr and App Home ---------------------------------------------------------------------------


def test_dsr_new_opens_a_case_from_the_real_receipt_time(engine, desk_settings, stage, slack_api):
    command(stage.port, APPROVER, "new", slack_api.url + "respond")
    [opened] = wait_for(lambda: slack_api.named("views.open"))
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    assert view["callback_id"] == "dsr_new_modal"
    received = 1_780_000_000  # 2026-05-28 20:26:40 UTC
    submit(stage.port, APPROVER, "dsr_new_modal", "", {
        "org": {"type": "static_select", "selected_option": {"value": "proffsecurity"}},
        "name": text_value("Kari Nordmann"),
        "email": {"type": "email_text_input", "value": "kari@example.no"},
        "what": text_value("Hun ringte og vil ha slettet alt dere har om henne."),
        "channel": {"type": "static_select", "selected_option": {"value": "phone"}},
        "received": {"type": "datetimepicker", "selected_date_time": received},
    })

    def opened_case():
        with Session(engine) as session:
            return session.execute(select(Case)).scalars().first()

    logged = wait_for(opened_case)
    assert logged.channel == "phone" and logged.org == "proffsecurity"
    assert logged.requester == "kari@example.no" and logged.requester_name == "Kari Nordmann"
    assert int(logged.received_at.timestamp()) == received
    assert "erasure" in json.loads(logged.intents)
    wait_for(lambda: any(logged.ref in c["text"] for c in slack_api.named("chat.postEphemeral")))


def test_dsr_due_and_the_app_home_list_open_cases_most_urgent_first(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = by_mail(listener, engine, desk_settings, sender)
    with session_scope(engine) as session:
        old = workflow.open_request(
            session, desk_settings, org_id="bagges", channel="letter",
            received_at=utcnow() - timedelta(days=27), requester="per@example.no",
            body="Jeg vil ha innsyn i hva dere har lagret om meg.").ref
    command(stage.port, APPROVER, "due", slack_api.url + "respond")
    [answer] = wait_for(lambda: slack_api.named("respond"))
    assert old in answer["text"] and ref not in answer["text"]
    body = json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback", "event_id": "Ev2", "event_time": 1700000100,
                       "event": {"type": "app_home_opened", "user": APPROVER, "channel": "D1",
                                 "tab": "home"}})
    post(stage.port, body, signed_headers(body, content_type="application/json"))
    [published] = wait_for(lambda: slack_api.named("views.publish"))
    view = json.loads(published["view"]) if isinstance(published["view"], str) else published["view"]
    shown = json.dumps(view)
    assert published["user_id"] == APPROVER
    assert old in shown and ref in shown and shown.index(old) < shown.index(ref)


def test_two_approvers_clicking_at_once_send_one_reply(
        listener, engine, desk_settings, sender, stage, slack_api, sink):
    import threading

    ref = by_mail(listener, engine, desk_settings, sender, subject="Spørsmål",
                  body="Hvor lenge lagrer dere opptak av telefonsamtaler?")
    assert json.loads(case(engine, ref).intents) == ["question"]  # answered without ID
    assert stage.sync_once() == 1
    sender.send_due()
    before = len(sink.messages)
    clicks = [threading.Thread(target=click, args=(stage.port, user, "dsr_approve", ref))
              for user in (APPROVER, GROUP_MEMBER, APPROVER)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    wait_for(lambda: case(engine, ref).state == "approved")
    wait_for(lambda: len(slack_api.named("chat.postEphemeral")) == 2)  # the two that came late
    sender.send_due()
    assert len(sink.messages) == before + 1
    assert sum(1 for k in kinds(engine, ref) if k[0] == "approved") == 1


# -- dsr serve -----------------------------------------------------------------------------------


def test_dsr_serve_runs_the_desk_in_http_mode_when_a_bot_token_is_set(
        desk_settings, engine, slack_api, monkeypatch):
    from assistant.config import load_settings
    from assistant.service import Service

    monkeypatch.setenv("DSR_SLACK__HTTP_PORT", "0")
    service = Service(load_settings(None), engine, smtp_port=free_port(), worker_poll=0.05,
                      sender_poll=0.05)
    service.start()
    try:
        assert service.slack is not None and not service.slack.socket_mode
        body = "payload=%7B%7D"
        assert post(service.slack.port, body, {"Content-Type":
                                               "application/x-www-form-urlencoded"})[0] == 401
        status, _ = command(service.slack.port, APPROVER, "due", slack_api.url + "respond")
        assert status == 200
        wait_for(lambda: slack_api.named("respond"))
    finally:
        service.stop()
    assert service.slack.server is None


def test_an_app_token_chooses_socket_mode(desk_settings, engine, monkeypatch):
    from assistant.config import load_settings

    monkeypatch.setenv("DSR_SLACK__APP_TOKEN", "xapp-1-test")
    desk = SlackStage(load_settings(None), engine)
    assert desk.socket_mode and desk.port is None
    # Slack signs nothing in Socket Mode; the connection itself is the proof (not tested here:
    # it needs Slack's servers).


def test_with_no_bot_token_slack_is_off(settings, engine):
    from assistant.service import Service

    service = Service(settings, engine, smtp_port=free_port())
    service.start()
    try:
        assert service.slack is None
    finally:
        service.stop()


# -- chat intake --------------------------------------------------------------------------------


def message_event(text: str, *, ts: str, channel: str = "DSTAFF", channel_type: str = "im",
                  user: str = APPROVER, thread_ts: str | None = None, event_id: str = "Ev9") -> str:
    event = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
             "channel_type": channel_type}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback", "event_id": event_id, "event_time": int(float(ts)),
                       "event": event})


def test_a_staff_note_to_the_bot_opens_a_case_about_the_person_it_names(
        engine, desk_settings, stage, slack_api, sender):
    body = message_event("kunde ringte nå, vil ha alt slettet, epost kari.nordmann@example.no",
                         ts="1780000000.000100")
    assert post(stage.port, body, signed_headers(body, content_type="application/json"))[0] == 200

    def opened():
        with Session(engine) as session:
            return session.execute(select(Case)).scalars().first()

    logged = wait_for(opened)
    wait_for(lambda: slack_api.named("chat.postMessage") or sender.send_due() and False)
    assert logged.channel == "slack" and logged.org == desk_settings.organizations[0].id
    assert logged.requester == "kari.nordmann@example.no"
    assert logged.requester_name == "Kari Nordmann"
    assert int(logged.received_at.timestamp()) == 1780000000
    assert "erasure" in json.loads(logged.intents)
    confirmation = slack_api.named("chat.postMessage")[0]
    assert confirmation["thread_ts"] == "1780000000.000100" and confirmation["channel"] == "DSTAFF"
    assert logged.ref in json.dumps(confirmation["blocks"])
    assert {"dsr_intents", "dsr_requester"} <= set(buttons(confirmation))

    # Slack retrying the same event opens nothing more.
    post(stage.port, body, signed_headers(body, content_type="application/json"))
    # A correction from the thread's button.
    submit(stage.port, APPROVER, "dsr_requester_modal", logged.ref, {
        "name": text_value("Kari Nordmann-Berg"),
        "email": {"type": "email_text_input", "value": "kari@example.no"}})
    wait_for(lambda: case(engine, logged.ref).requester == "kari@example.no")
    assert case(engine, logged.ref).requester_name == "Kari Nordmann-Berg"
    # A message naming the case joins it as a note.
    body = message_event(f"{logged.ref}: hun ringte igjen og bekreftet adressen",
                         ts="1780000100.000100")
    post(stage.port, body, signed_headers(body, content_type="application/json"))
    wait_for(lambda: ("note", f"slack:{APPROVER}") in kinds(engine, logged.ref))
    with Session(engine) as session:
        assert len(session.execute(select(Case)).scalars().all()) == 1


def test_http_mode_without_a_signing_secret_is_refused_at_start(desk_settings, engine, monkeypatch):
    from assistant.config import load_settings

    monkeypatch.delenv("DSR_SLACK__SIGNING_SECRET")
    with pytest.raises(ValueError, match="signing_secret"):
        SlackStage(load_settings(None), engine)


def test_a_card_update_overtaken_by_a_newer_one_is_not_sent(
        listener, engine, desk_settings, sender, stage, slack_api):
    ref = verified_case(listener, engine, desk_settings, sender, stage)
    slack_api.fail("chat.update", 429, {"Retry-After": "5"})
    with session_scope(engine) as session:
        workflow.extend(session, desk_settings, ref, "Tre systemer hos to leverandører.", "staff")
    assert stage.sync_once() == 1
    now = utcnow()
    sender.send_due(now=now)  # rate limited: waits
    with session_scope(engine) as session:
        workflow.record_note(session, ref, "staff", "ringte henne")
    assert stage.sync_once() == 1
    sender.send_due(now=utcnow())  # the newer update goes out (the older one still waits)
    assert len(slack_api.named("chat.update")) == 1
    sender.send_due(now=now + timedelta(seconds=10))  # the older one is not worth sending
    assert len(slack_api.named("chat.update")) == 1
    with Session(engine) as session:
        rows = session.execute(select(Outbox).where(Outbox.kind == "slack")).scalars().all()
        assert {r.state for r in rows} == {"sent"}
        assert any("overtaken" in (r.last_error or "") for r in rows)


def test_the_click_is_answered_before_the_work_is_done(
        listener, engine, desk_settings, sender, stage, slack_api, monkeypatch):
    import threading

    ref = verified_case(listener, engine, desk_settings, sender, stage)
    release, started = threading.Event(), threading.Event()
    real = workflow.record_refusal

    def held(*args, **kwargs):
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(workflow, "record_refusal", held)
    # Slack has its answer while the listener is still held in its work.
    assert click(stage.port, STRANGER, "dsr_approve", ref)[0] == 200
    assert started.wait(15) and ("desk_refused", f"slack:{STRANGER}") not in kinds(engine, ref)
    release.set()
    wait_for(lambda: ("desk_refused", f"slack:{STRANGER}") in kinds(engine, ref))


def test_the_desk_starts_while_slack_is_unreachable(desk_settings, engine, monkeypatch):
    from assistant.config import load_settings

    monkeypatch.setenv("DSR_SLACK__API_URL", f"http://127.0.0.1:{free_port()}/api/")
    desk = SlackStage(load_settings(None), engine, port=0)
    desk.start()
    try:
        assert desk.port
    finally:
        desk.stop()
