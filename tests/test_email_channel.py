"""The email channel on real servers: aiosmtpd as the listener under test (dsr's own) and as the
sink the outbox delivers to. Every test runs on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import json
import logging
import smtplib
import threading
from datetime import timedelta

import pytest
from mailservers import Sink, code_in, free_port, reply_to, request, send
from sqlalchemy import func, select, text
from sqlmodel import Session

from assistant import cases, intake, workflow
from assistant.channels.smtp import SmtpListener
from assistant.channels.store import SqliteBatchStore
from assistant.cli import cli
from assistant.outbox import Sender
from assistant.store.db import open_store, session_scope
from assistant.store.models import Case, Event, Message, Outbox, Verification, utcnow


@pytest.fixture
def sink():
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def mail_settings(db_url, sink, monkeypatch):
    from assistant.config import load_settings

    monkeypatch.setenv("DSR_DATABASE__URL", db_url)
    monkeypatch.setenv("DSR_OUTBOUND__HOST", "127.0.0.1")
    monkeypatch.setenv("DSR_OUTBOUND__PORT", str(sink.port))
    return load_settings(None)


@pytest.fixture
def engine(mail_settings):
    return open_store(mail_settings.database.url)


@pytest.fixture
def listener(mail_settings, engine):
    server = SmtpListener(mail_settings, engine, port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sender(engine, mail_settings):
    return Sender(engine, mail_settings, base_delay=1.0, timeout=10)


def all_cases(engine) -> list[Case]:
    with Session(engine) as session:
        return list(session.execute(select(Case).order_by(Case.id)).scalars())


def events(engine, ref: str) -> list[Event]:
    with Session(engine) as session:
        case = cases.get_case(session, ref)
        return list(session.execute(select(Event).where(Event.case_id == case.id)
                                    .order_by(Event.id)).scalars())


def opened_with_ack(listener, engine, mail_settings, sender, sink, **kwargs):
    """One request in by SMTP, processed, its acknowledgement delivered; (case, ack mail)."""
    send(listener.port, request(**kwargs))
    assert intake.drain(engine, mail_settings) == 1
    assert sender.send_due() == 1
    [case] = all_cases(engine)
    return case, sink.messages[-1]


# -- in: SMTP to case ------------------------------------------------------------------------------


def test_mail_in_by_smtp_becomes_one_case_and_the_acknowledgement_carries_a_code(
        listener, engine, mail_settings, sender, sink):
    original = request()
    send(listener.port, original)
    with Session(engine) as session:  # committed before the 250 the client just read
        [stored] = session.execute(select(Message)).scalars().all()
        assert stored.status == "stored" and stored.channel == "smtp"
        assert json.loads(stored.envelope_to) == ["kundesenter@branninfo.no"]
    assert intake.drain(engine, mail_settings) == 1
    [case] = all_cases(engine)
    assert (case.channel, case.org, case.state) == ("email", "branninfo", "awaiting_verification")
    assert case.requester == "ola.nordmann@example.no" and case.requester_name == "Ola Nordmann"
    assert json.loads(case.intents) == ["access"]
    assert case.received_at == stored.received_at

    assert sender.send_due() == 1
    [ack] = sink.messages
    assert sink.envelopes[0] == ("kundesenter@branninfo.no", ["ola.nordmann@example.no"])
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["From"].addresses[0].addr_spec == "kundesenter@branninfo.no"
    assert ack["In-Reply-To"] == original["Message-ID"]
    assert ack["References"] == original["Message-ID"]
    assert ack["Subject"] == f"Re: Innsyn [{case.ref}]"
    assert ack["Message-ID"].endswith("@branninfo.no>")
    code = code_in(ack)
    assert case.ref in ack.get_content()
    with Session(engine) as session:
        [verification] = session.execute(select(Verification)).scalars().all()
        assert code not in (verification.code_hash or "") and verification.salt
        # The one-time code survives nowhere in clear once the relay has the mail.
        for row in session.execute(select(Outbox)).scalars():
            assert code.encode() not in row.payload
        for row in session.execute(select(Message)).scalars():
            assert code.encode() not in row.raw and code not in (row.text or "")
    assert [e.kind for e in events(engine, case.ref)][-2:] == ["acknowledged", "mail_sent"]


def test_the_code_from_another_address_does_not_verify_and_from_the_requester_does(
        listener, engine, mail_settings, sender, sink):
    case, ack = opened_with_ack(listener, engine, mail_settings, sender, sink)
    code = code_in(ack)
    # Someone the mail was forwarded to answers with the right code.
    send(listener.port, reply_to(ack, f"Koden er {code}", sender="someone.else@example.com"))
    assert intake.drain(engine, mail_settings) == 1
    [still] = all_cases(engine)
    assert still.state == "awaiting_verification" and not still.verified
    failed = [e for e in events(engine, case.ref) if e.kind == "verification_failed"]
    assert json.loads(failed[-1].detail)["reason"] == "code from another address"

    send(listener.port, reply_to(ack, f"Her er koden: {code}"))
    assert intake.drain(engine, mail_settings) == 1
    [verified] = all_cases(engine)
    assert verified.verified and verified.verification_method == "email_code"
    assert verified.state == "drafted"  # the reply is drafted at once, for staff to review
    [event] = [e for e in events(engine, case.ref) if e.kind == "verified"]
    assert event.actor == "requester"
    assert len(all_cases(engine)) == 1


def test_a_wrong_code_counts_an_attempt_and_five_lock_the_code(
        listener, engine, mail_settings, sender, sink):
    case, ack = opened_with_ack(listener, engine, mail_settings, sender, sink)
    code = code_in(ack)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(workflow.CODE_ATTEMPTS):
        send(listener.port, request(subject=f"Re: Innsyn [{case.ref}]", body=f"Koden: {wrong}"))
    send(listener.port, request(subject=f"Re: Innsyn [{case.ref}]", body=f"Koden: {code}"))
    assert intake.drain(engine, mail_settings) == workflow.CODE_ATTEMPTS + 1
    [after] = all_cases(engine)
    assert after.state == "awaiting_verification"
    reasons = [json.loads(e.detail).get("reason") for e in events(engine, case.ref)
               if e.kind == "verification_failed"]
    assert reasons == ["wrong code"] * workflow.CODE_ATTEMPTS + ["too many attempts"]


def test_the_code_is_resent_on_request_rate_limited(listener, engine, mail_settings, sender, sink):
    case, ack = opened_with_ack(listener, engine, mail_settings, sender, sink)
    old = code_in(ack)
    # Written fresh (a reply quoting the acknowledgement carries the code, and would verify).
    thread = {"subject": f"Re: Innsyn [{case.ref}]", "in_reply_to": str(ack["Message-ID"])}
    send(listener.port, request(body="Jeg finner ikke koden, kan dere send koden på nytt?", **thread))
    assert intake.process_one(engine, mail_settings).outcome.endswith("resend_too_soon")
    later = utcnow() + timedelta(minutes=11)
    send(listener.port, request(body="Send koden på nytt, takk.", **thread))
    assert intake.process_one(engine, mail_settings, now=later).outcome.endswith("code_resent")
    assert sender.send_due(now=later) == 1
    resent = sink.messages[-1]
    new = code_in(resent)
    assert resent["In-Reply-To"] and f"[{case.ref}]" in resent["Subject"]
    send(listener.port, reply_to(resent, f"Koden er {old}"))  # the first code no longer counts
    assert intake.process_one(engine, mail_settings, now=later).outcome.endswith("code_wrong")
    send(listener.port, reply_to(resent, f"Koden er {new}"))
    assert intake.process_one(engine, mail_settings, now=later).outcome.endswith("verified")


def test_a_follow_up_that_asks_for_more_adds_the_intent_to_its_case(
        listener, engine, mail_settings, sender, sink):
    case, ack = opened_with_ack(listener, engine, mail_settings, sender, sink)
    send(listener.port, reply_to(ack, "Og slett alt dere har om meg etterpå."))
    outcome = intake.process_one(engine, mail_settings)
    assert outcome.ref == case.ref and "intent_added" in outcome.outcome
    [same] = all_cases(engine)
    assert json.loads(same.intents) == ["access", "erasure"]
    assert [e.kind for e in events(engine, case.ref)].count("intent_added") == 1
    with Session(engine) as session:
        assert len(cases.erasure_tasks(session, same)) == 3  # Branninfo's systems


def test_a_case_reference_in_the_subject_links_a_mail_without_thread_headers(
        listener, engine, mail_settings, sender, sink):
    case, _ack = opened_with_ack(listener, engine, mail_settings, sender, sink)
    send(listener.port, request(subject=f"Angående {case.ref}", body="Har dere fått brevet mitt?"))
    outcome = intake.process_one(engine, mail_settings)
    assert outcome.ref == case.ref and outcome.outcome.startswith("linked:reference")
    assert len(all_cases(engine)) == 1


# -- out: approval, threading, delivery -------------------------------------------------------------


def test_approval_sends_one_threaded_reply_and_a_second_approval_sends_nothing(
        listener, engine, mail_settings, sender, sink, monkeypatch):
    from click.testing import CliRunner

    case, ack = opened_with_ack(listener, engine, mail_settings, sender, sink)
    last = reply_to(ack, f"Her er koden: {code_in(ack)}")
    send(listener.port, last)
    intake.drain(engine, mail_settings)
    runner = CliRunner()
    for system in mail_settings.organization(case.org).systems:
        collected = runner.invoke(cli, ["cases", "collect", case.ref, "--system", system,
                                        "--by", "kari"])
        assert collected.exit_code == 0, collected.output
    approved = runner.invoke(cli, ["drafts", "approve", case.ref, "--by", "kari"])
    assert approved.exit_code == 0, approved.output
    assert all_cases(engine)[0].state == "approved"  # not answered until it is delivered
    again = runner.invoke(cli, ["drafts", "approve", case.ref, "--by", "kari"])
    assert again.exit_code == 1
    with session_scope(engine) as session, pytest.raises(cases.CaseError):
        workflow.approve(session, mail_settings, case.ref, "kari")

    assert sender.send_due() == 1
    assert sender.send_due() == 0
    reply = sink.messages[-1]
    assert len(sink.messages) == 2  # the acknowledgement, then the one reply
    assert reply["In-Reply-To"] == last["Message-ID"]
    assert reply["References"].split() == last["References"].split() + [last["Message-ID"]]
    assert reply["Subject"] == f"Re: Innsyn [{case.ref}]"
    assert reply["Subject"].count("Re:") == 1
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["From"].addresses[0].addr_spec == "kundesenter@branninfo.no"
    assert all_cases(engine)[0].state == "answered"
    assert [e.actor for e in events(engine, case.ref) if e.kind == "answered"] == ["dsr"]
    # A reply to our reply finds the case by the Message-ID we kept.
    send(listener.port, reply_to(reply, "Takk for svaret."))
    assert intake.process_one(engine, mail_settings).outcome.startswith("linked:in_reply_to")


@pytest.mark.parametrize("headers,sender_address,kind", [
    ({"Auto-Submitted": "auto-replied", "Subject": "Autosvar: Innsyn"}, "ola.nordmann@example.no", "auto-submitted"),
    ({"Content-Type": "multipart/report; report-type=delivery-status; boundary=x"},
     "mailer-daemon@example.no", "bounce"),
    ({"List-Id": "<personvern.lists.example.no>"}, "ola.nordmann@example.no", "list"),
])
def test_auto_replies_bounces_and_list_mail_get_no_answer(
        listener, engine, mail_settings, sender, sink, headers, sender_address, kind):
    msg = request(sender=sender_address)
    for key, value in headers.items():
        del msg[key]
        msg[key] = value
    send(listener.port, msg, sender="" if kind == "bounce" else None)
    outcome = intake.process_one(engine, mail_settings)
    assert outcome.status == "ignored" and outcome.outcome == f"auto:{kind}"
    assert all_cases(engine) == []
    assert sender.send_due() == 0 and sink.messages == []


def test_an_unknown_recipient_gets_550_and_oversize_mail_552(mail_settings, engine, monkeypatch):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        server = SmtpListener(mail_settings, engine, port=free_port())
        server.start()
        try:
            send(server.port, request(to="nobody@branninfo.no"))
        finally:
            server.stop()
    assert list(refused.value.recipients.values())[0][0] == 550
    small = mail_settings.model_copy(update={"smtp": mail_settings.smtp.model_copy(
        update={"max_message_bytes": 2_000})})
    server = SmtpListener(small, engine, port=free_port())
    server.start()
    try:
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) as big:
            send(server.port, request(body="innsyn " * 1_000))
    finally:
        server.stop()
    assert big.value.smtp_code == 552
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Message)).scalar() == 0


def test_a_database_failure_answers_451_so_the_sender_retries(listener, engine, mail_settings,
                                                             monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    # Both roads: on the event loop (SQLite, lock free) and in the storing thread.
    monkeypatch.setattr(SqliteBatchStore, "store", broken)
    monkeypatch.setattr(listener.handler, "store_many", broken)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(listener.port, request())
    assert refused.value.smtp_code == 451


def _send_together(port: int, count: int) -> tuple[list[int], list[threading.Thread]]:
    """`count` messages at once over as many connections; the reply code each got."""
    codes: list[int] = [0] * count

    def one(n: int) -> None:
        try:
            send(port, request(sender=f"together{n}@example.no", name=""))
            codes[n] = 250
        except smtplib.SMTPDataError as exc:
            codes[n] = exc.smtp_code

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    return codes, threads


def _stored_count(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(Message)).scalar()


def _held_listener(mail_settings, engine):
    """A listener whose writes wait behind a gate the test holds, so messages pile up."""
    from assistant.store.gate import WriteGate

    gate = WriteGate()
    server = SmtpListener(mail_settings, engine, port=free_port(), gate=gate)
    server.start()
    return server, gate


def _until(condition, seconds: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_messages_that_arrive_during_a_commit_are_committed_together_before_their_250(
        mail_settings, engine):
    server, gate = _held_listener(mail_settings, engine)
    sizes: list[int] = []
    real = server.handler.store_many

    def counting(items):
        sizes.append(len(items))
        return real(items)

    server.handler.store_many = counting
    try:
        with gate.background():  # the worker holds the write lock for a while
            # More than the transactions that may run at once (4 on PostgreSQL), so some wait.
            codes, threads = _send_together(server.port, 9)
            _until(lambda: server.handler._in_flight == 9)
            assert _stored_count(engine) == 0
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    assert codes == [250] * 9
    assert _stored_count(engine) == 9
    assert max(sizes) > 1 and sum(sizes) == 9  # grouped, each message once


def test_when_a_group_commit_fails_every_message_of_it_gets_451_and_none_is_stored(
        mail_settings, engine):
    server, gate = _held_listener(mail_settings, engine)
    sizes: list[int] = []

    def failing(items):
        sizes.append(len(items))
        with gate.urgent():
            raise RuntimeError("disk full")

    server.handler.store_many = failing
    try:
        with gate.background():
            codes, threads = _send_together(server.port, 4)
            _until(lambda: server.handler._in_flight == 4)
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    assert codes == [451] * 4
    assert sum(sizes) == 4
    assert _stored_count(engine) == 0


def test_smtputf8_addresses_and_a_non_ascii_body_are_accepted(listener, engine, mail_settings):
    msg = request(sender="bjørn@eksempel.no", body="Jeg ber om innsyn. Hilsen Bjørn Ærø")
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
        client.send_message(msg, from_addr="bjørn@eksempel.no", to_addrs=["kundesenter@branninfo.no"])
    assert intake.drain(engine, mail_settings) == 1
    assert all_cases(engine)[0].requester == "bjørn@eksempel.no"


def test_the_same_mail_twice_is_stored_once(listener, engine, mail_settings):
    msg = request()
    send(listener.port, msg)
    send(listener.port, msg)  # the client never saw our first 250 and retried
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Message)).scalar() == 1
    # The look-up of the duplicate leaves nothing open: the next mail is committed before its 250.
    send(listener.port, request(sender="next@example.no"))
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Message)).scalar() == 2


def test_the_relay_down_delays_replies_and_delivers_each_once_when_it_is_back(
        listener, engine, mail_settings, sender, sink):
    sink.stop()
    for n in range(3):
        send(listener.port, request(sender=f"person{n}@example.no", name=""))
    assert intake.drain(engine, mail_settings) == 3
    assert sender.send_due() == 3  # tried, delayed
    with Session(engine) as session:
        rows = list(session.execute(select(Outbox)).scalars())
        assert {r.state for r in rows} == {"pending"} and {r.attempts for r in rows} == {1}
        assert all(r.last_error for r in rows)
    later = utcnow() + timedelta(seconds=2)
    assert sender.send_due(now=later) == 3  # still down: backed off again
    sink.start()
    much_later = utcnow() + timedelta(hours=2)
    assert sender.send_due(now=much_later) == 3
    assert sender.send_due(now=much_later + timedelta(hours=2)) == 0
    assert sorted(r[1][0] for r in [(e[0], e[1]) for e in sink.envelopes]) == [
        "person0@example.no", "person1@example.no", "person2@example.no"]
    with Session(engine) as session:
        assert {r.state for r in session.execute(select(Outbox)).scalars()} == {"sent"}


def test_two_workers_on_one_database_handle_each_message_once(listener, engine, mail_settings):
    for n in range(30):
        send(listener.port, request(sender=f"p{n}@example.no", name=""))
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(intake.drain(engine, mail_settings)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 30
    assert len(all_cases(engine)) == 30
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Outbox)).scalar() == 30
        statuses = set(session.execute(select(Message.status).where(Message.direction == "in")).scalars())
        assert statuses == {"processed"}


def test_a_message_that_fails_is_kept_as_failed_and_the_worker_goes_on(
        listener, engine, mail_settings, monkeypatch):
    send(listener.port, request(sender="first@example.no"))
    send(listener.port, request(sender="second@example.no"))
    real = workflow.open_request
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("boom with ola@example.no in it")
        return real(*args, **kwargs)

    monkeypatch.setattr(workflow, "open_request", flaky)
    assert intake.drain(engine, mail_settings) == 2
    with Session(engine) as session:
        rows = list(session.execute(select(Message).where(Message.direction == "in")
                                    .order_by(Message.id)).scalars())
    assert [r.status for r in rows] == ["failed", "processed"]
    # The class and where it was raised, never the text (it quoted an address).
    assert rows[0].error.startswith("builtins.ValueError at intake.py:")
    assert "ola@example.no" not in rows[0].error and "boom" not in rows[0].error
    assert len(all_cases(engine)) == 1


def test_intake_logs_outcomes_without_addresses_or_text(listener, engine, mail_settings, caplog):
    send(listener.port, request(subject="Innsyn for Ola", body="Jeg vil ha innsyn, ring 91234567"))
    with caplog.at_level(logging.INFO, logger="dsr.intake"):
        logging.getLogger("dsr").propagate = True
        try:
            intake.drain(engine, mail_settings)
        finally:
            logging.getLogger("dsr").propagate = False
    lines = [r for r in caplog.records if r.name == "dsr.intake"]
    assert lines and lines[0].outcome == "opened" and lines[0].ref.startswith("DSR-")
    text = " ".join(r.getMessage() + json.dumps(vars(r), default=str) for r in lines)
    for secret in ("ola.nordmann", "example.no", "91234567", "Innsyn for Ola"):
        assert secret not in text


def test_without_a_relay_mail_goes_to_the_maildir(db_url, monkeypatch, tmp_path):
    import mailbox

    from assistant.config import load_settings

    monkeypatch.setenv("DSR_DATABASE__URL", db_url)
    monkeypatch.setenv("DSR_OUTBOUND__MAILDIR", str(tmp_path / "outbox"))
    settings = load_settings(None)
    engine = open_store(db_url)
    server = SmtpListener(settings, engine, port=free_port())
    server.start()
    try:
        send(server.port, request())
    finally:
        server.stop()
    assert intake.drain(engine, settings) == 1
    assert Sender(engine, settings).send_due() == 1
    box = mailbox.Maildir(str(tmp_path / "outbox"), create=False)
    [key] = box.keys()
    assert box.get_message(key)["Auto-Submitted"] == "auto-replied"
    with Session(engine) as session:
        assert [r.state for r in session.execute(select(Outbox)).scalars()] == ["sent"]


def test_a_database_refusal_names_its_error_code_and_never_the_values():
    """A failed message's reason must let a person find the cause (a flaky DataError once
    said only its class): the database's error code, not its text, which quotes the values."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import IntegrityError

    db = create_engine("sqlite://")
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE t (address TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES ('kari@example.no')"))
    with pytest.raises(IntegrityError) as caught, db.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES ('kari@example.no')"))
    reason = intake.failure_reason(caught.value)
    assert reason.startswith("sqlalchemy.exc.IntegrityError [SQLITE_CONSTRAINT_UNIQUE]")
    assert "kari" not in reason
