"""The Slack review desk on real local servers: the Bolt app in HTTP mode receiving signed
requests, a local server answering the Slack Web API, aiosmtpd as the mail sink. The listeners
run after the ack on their own threads, so the tests wait for their effect (never for a time)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from mailservers import Sink, request, send
from slackservers import (
    BOT_TOKEN, SIGNING_SECRET, SlackApi, click, command, interaction, post, signed_headers,
    submit, wait_for,
)
from sqlalchemy import select
from sqlmodel import Session

from assistant import cases, intake, workflow
from assistant.channels.slack.stage import SlackStage
from assistant.channels.smtp import SmtpListener
from assistant.outbox import Sender
from assistant.store.db import open_store, session_scope
from assistant.store.models import Case, Draft, Event, Outbox, utcnow
from mailservers import free_port

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
                  "working days left", "Access collection"):
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
        assert session.execute(select(Outbox).where(Outbox.kind == "email", Outbox.draft_id.is_not(None))
                               ).scalars().all().__len__() == 1


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
