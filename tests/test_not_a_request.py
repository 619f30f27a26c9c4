"""Issue 18, recall first, at the inbox: a message that may be a request opens a case (unclear
when no intent is sure) and is acknowledged; what is certainly not a request (an order
question, a thank-you, an order confirmation) is kept without a case or a receipt, and a person
can list those and open a case from one they judge a request after all."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from assistant import intake
from assistant.cli import cli
from assistant.store.db import open_store, session_scope
from assistant.store.models import Case, Message, Outbox

ORDER_QUESTION = "Hvor er pakken min? Ordre 55120 skulle kommet i går."
VAGUE = "Angående personvern"
REQUEST = "Hei, jeg vil se hvilke opplysninger dere har om meg."


def run(tmp_path: Path, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args),
                                env={"DSR_DATABASE__URL": f"sqlite:///{tmp_path}/dsr.db"})
    assert result.exit_code == expect, (args, result.output, result.exception)
    return result.output


def mail_file(folder: Path, name: str, sender: str, subject: str, body: str) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, "kundesenter@branninfo.no", subject
    mail["Date"] = format_datetime(datetime.now(timezone.utc) - timedelta(days=1))
    mail["Message-ID"] = f"<{name}@example.no>"
    mail.set_content(body)
    (folder / f"{name}.eml").write_bytes(bytes(mail))


def imported(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    mail_file(folder, "order", "ola@example.no", "Pakke", ORDER_QUESTION)
    mail_file(folder, "vague", "kari@example.no", "Hei", VAGUE)
    mail_file(folder, "request", "per@example.no", "Innsyn", REQUEST)
    mail_file(folder, "thanks", "liv@example.no", "Re: levering", "Takk for hjelpen!")
    run(tmp_path, "import", str(folder))


def rows(tmp_path: Path):
    engine = open_store(f"sqlite:///{tmp_path}/dsr.db")
    with session_scope(engine, write=False) as session:
        messages = {m.message_id: (m.status, m.auto, m.case_id)
                    for m in session.execute(select(Message).where(Message.direction == "in")).scalars()}
        unclear = {c.id: c.unclear for c in session.execute(select(Case)).scalars()}
        receipts = session.execute(select(Outbox.case_id)).scalars().all()
    return messages, unclear, receipts


def test_a_possible_request_opens_a_case_and_a_certain_non_request_opens_none(tmp_path):
    imported(tmp_path)
    messages, unclear, receipts = rows(tmp_path)
    for kept_out in ("<order@example.no>", "<thanks@example.no>"):
        assert messages[kept_out] == ("ignored", intake.NOT_A_REQUEST, None), kept_out
    vague_case = messages["<vague@example.no>"][2]
    request_case = messages["<request@example.no>"][2]
    assert vague_case is not None and unclear[vague_case] is True
    assert request_case is not None and unclear[request_case] is False
    assert len(unclear) == 2, "no case for what is certainly not a request"
    assert vague_case in receipts and request_case in receipts
    assert len(set(receipts)) == 2, "no receipt to someone who asked about a parcel"


def test_staff_list_what_was_set_aside_and_open_a_case_from_it_once(tmp_path):
    imported(tmp_path)
    listed = json.loads(run(tmp_path, "messages", "list", "--json"))
    assert sorted(m["subject"] for m in listed) == ["Pakke", "Re: levering"]
    assert {m["reason"] for m in listed} == {intake.NOT_A_REQUEST}
    assert ORDER_QUESTION not in json.dumps(listed), \
        "the list shows subjects, never bodies"
    order = next(m for m in listed if m["subject"] == "Pakke")
    assert order["from"] == "ola@example.no", "imported mail has no envelope: the From header"

    out = run(tmp_path, "messages", "open", str(order["id"]), "--intent", "access", "--by", "kari")
    ref = out.split()[0]
    assert ref.startswith("DSR-") and f"from message {order['id']}" in out
    shown = json.loads(run(tmp_path, "cases", "show", ref, "--json"))
    assert shown["intents"] == ["access"] and shown["requester"] == "ola@example.no"
    assert shown["received_at"][:10] == (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat(), \
        "the deadline runs from when the mail reached us"
    kinds = [e["kind"] for e in shown["events"]]
    assert "opened_from_message" in kinds and "acknowledged" in kinds

    assert [m["subject"] for m in json.loads(run(tmp_path, "messages", "list", "--json"))] == ["Re: levering"]
    again = run(tmp_path, "messages", "open", str(order["id"]), "--by", "kari", expect=1)
    assert "already belongs to a case" in again
    missing = run(tmp_path, "messages", "open", "9999", "--by", "kari", expect=1)
    assert "no incoming message 9999" in missing


def test_without_an_intent_the_opened_case_is_unclear_for_a_person(tmp_path):
    imported(tmp_path)
    thanks = next(m for m in json.loads(run(tmp_path, "messages", "list", "--json"))
                  if m["subject"] == "Re: levering")
    ref = run(tmp_path, "messages", "open", str(thanks["id"]), "--by", "kari").split()[0]
    shown = json.loads(run(tmp_path, "cases", "show", ref, "--json"))
    assert shown["intents"] == [] and shown["unclear"] is True


def test_the_list_can_show_every_message_that_opened_no_case(tmp_path):
    imported(tmp_path)
    assert run(tmp_path, "messages", "list").count(intake.NOT_A_REQUEST) == 2
    assert len(json.loads(run(tmp_path, "messages", "list", "--all", "--json"))) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty, "messages", "list").strip() == "no messages"


def test_the_managers_digest_counts_what_was_set_aside(tmp_path):
    imported(tmp_path)
    digest = run(tmp_path, "digest", "--print")
    assert "lagret uten sak: 2 (dsr messages list)" in digest, "in the managers' language (nb)"
    order = next(m for m in json.loads(run(tmp_path, "messages", "list", "--json"))
                 if m["subject"] == "Pakke")
    run(tmp_path, "messages", "open", str(order["id"]), "--by", "kari")
    assert "lagret uten sak: 1 " in run(tmp_path, "digest", "--print")


def test_each_organisations_managers_see_only_their_own_count(tmp_path):
    from assistant import scheduler
    from assistant.config import load_settings

    imported(tmp_path)
    settings = load_settings(None)
    engine = open_store(f"sqlite:///{tmp_path}/dsr.db")
    with session_scope(engine, write=False) as session:
        digest = scheduler.build_digest(session, settings)
    assert digest["set_aside_by_org"] == {"branninfo": 2}
    _, branninfo, _ = scheduler.render_digest(digest, "en", "branninfo")
    _, bagges, html = scheduler.render_digest(digest, "en", "bagges")
    assert "kept without a case: 2" in branninfo
    assert "kept without a case" not in bagges and "kept without a case" not in html


def test_from_someone_with_an_open_case_it_joins_that_case_even_unthreaded(tmp_path):
    """"Har dere fått ID-en min?" with no In-Reply-To and no reference is no new request, but
    it is about the case the sender has open: staff must see it there, not in a side list."""
    imported(tmp_path)
    folder = tmp_path / "later"
    folder.mkdir()
    mail_file(folder, "followup", "Per <PER@example.no>", "Hei igjen", "Takk, ha en fin dag!")
    mail_file(folder, "stranger", "eva@example.no", "Hei igjen", "Takk, ha en fin dag!")
    run(tmp_path, "import", str(folder))
    messages, _unclear, _receipts = rows(tmp_path)
    request_case = messages["<request@example.no>"][2]
    assert messages["<followup@example.no>"] == ("processed", None, request_case)
    assert messages["<stranger@example.no>"] == ("ignored", intake.NOT_A_REQUEST, None)
