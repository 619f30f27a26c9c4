"""The escalation ladder, the reminders, the digest and a calendar that changes, on given dates
(Easter, 17 May, Christmas) against a real database: SQLite, and PostgreSQL when configured."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from email import message_from_bytes
from email.policy import default

from sqlalchemy import select

from assistant import cases, scheduler, workflow
from assistant.deadlines import OSLO
from assistant.store.db import session_scope
from assistant.store.models import Case, Escalation, Event, Outbox


def at_noon(d: date) -> datetime:
    return datetime.combine(d, time(12), tzinfo=OSLO)


def open_case(engine, settings, received: date, intents=("question",), org="branninfo",
              requester="kari@example.no") -> str:
    with session_scope(engine) as s:
        case = workflow.open_request(s, settings, org_id=org, channel="phone",
                                     received_at=at_noon(received), requester=requester,
                                     intents=list(intents), actor="tester", now=at_noon(received))
        return case.ref


def sweep_days(engine, settings, first: date, last: date) -> dict[date, list[str]]:
    """Sweep once at 07:00 and once at noon on every day; what each day escalated."""
    out: dict[date, list[str]] = {}
    d = first
    while d <= last:
        done = scheduler.sweep(engine, settings, datetime.combine(d, time(7), tzinfo=OSLO))
        done += scheduler.sweep(engine, settings, at_noon(d))
        if done:
            out[d] = [f"{e.ref} {e.step.split(':')[0]}" for e in done]
        d += timedelta(days=1)
    return out


def events(engine, ref: str, kind: str) -> list[dict]:
    with session_scope(engine, write=False) as s:
        case = cases.get_case(s, ref)
        rows = s.execute(select(Event).where(Event.case_id == case.id, Event.kind == kind)
                         .order_by(Event.id)).scalars().all()
        return [json.loads(r.detail) for r in rows]


def test_the_ladder_around_easter(engine, settings):
    # Received 10 March 2026: due Thursday 9 April, the week after Easter (2, 3 and 6 April off).
    ref = open_case(engine, settings, date(2026, 3, 10))
    got = sweep_days(engine, settings, date(2026, 3, 20), date(2026, 4, 14))
    assert got == {
        date(2026, 3, 26): [f"{ref} before7"],
        date(2026, 4, 1): [f"{ref} before3"],  # not on Maundy Thursday or Good Friday
        date(2026, 4, 8): [f"{ref} before1"],  # nor Easter Monday
        date(2026, 4, 9): [f"{ref} due"],
        date(2026, 4, 10): [f"{ref} overdue"],
        date(2026, 4, 13): [f"{ref} overdue"],  # every working day overdue, not at the weekend
        date(2026, 4, 14): [f"{ref} overdue"],
    }
    steps = [e["step"] for e in events(engine, ref, "escalation")]
    assert steps == ["before7:2026-04-09", "before3:2026-04-09", "before1:2026-04-09",
                     "due:2026-04-09", "overdue:2026-04-09:2026-04-10",
                     "overdue:2026-04-09:2026-04-13", "overdue:2026-04-09:2026-04-14"]


def test_the_ladder_around_17_may(engine, settings):
    # Received 16 April 2027: a month ends Sunday 16 May, 17 May is a holiday: due 18 May.
    ref = open_case(engine, settings, date(2027, 4, 16))
    got = sweep_days(engine, settings, date(2027, 5, 1), date(2027, 5, 19))
    assert got == {
        date(2027, 5, 5): [f"{ref} before7"],  # Ascension Day (6 May) is not counted
        date(2027, 5, 12): [f"{ref} before3"],
        date(2027, 5, 14): [f"{ref} before1"],
        date(2027, 5, 18): [f"{ref} due"],  # nothing on 17 May
        date(2027, 5, 19): [f"{ref} overdue"],
    }


def test_the_ladder_around_christmas(engine, settings):
    # Received 25 November 2026: 25 and 26 December off, then a Sunday: due Monday 28 December.
    ref = open_case(engine, settings, date(2026, 11, 25))
    got = sweep_days(engine, settings, date(2026, 12, 10), date(2026, 12, 29))
    assert got == {
        date(2026, 12, 16): [f"{ref} before7"],
        date(2026, 12, 22): [f"{ref} before3"],
        date(2026, 12, 24): [f"{ref} before1"],
        date(2026, 12, 28): [f"{ref} due"],
        date(2026, 12, 29): [f"{ref} overdue"],
    }


def test_repeated_sweeps_escalate_once_and_finished_cases_never(engine, settings):
    live = open_case(engine, settings, date(2026, 3, 10))
    closed = open_case(engine, settings, date(2026, 3, 10))
    with session_scope(engine) as s:
        cases.close(s, closed, "tester")
    for _ in range(3):
        scheduler.sweep(engine, settings, at_noon(date(2026, 4, 1)))
    with session_scope(engine, write=False) as s:
        rows = s.execute(select(Escalation)).scalars().all()
    assert [(r.step) for r in rows] == ["before3:2026-04-09"]
    assert events(engine, closed, "escalation") == []
    assert len(events(engine, live, "escalation")) == 1
    # Overdue, still never for the closed one.
    assert [e.ref for e in scheduler.sweep(engine, settings, at_noon(date(2026, 4, 20)))] == [live]


def test_a_missed_sweep_catches_up_once_with_the_step_reached(engine, settings):
    ref = open_case(engine, settings, date(2026, 3, 10))
    # Nobody swept from 26 March to 1 April: one escalation (before3), not before7 and before3.
    assert [e.step for e in scheduler.sweep(engine, settings, at_noon(date(2026, 4, 1)))] == \
        ["before3:2026-04-09"]
    assert events(engine, ref, "escalation")[0]["step"] == "before3:2026-04-09"


def test_no_escalation_on_a_holiday_or_a_weekend(engine, settings):
    open_case(engine, settings, date(2026, 3, 10))
    for day in (date(2026, 4, 2), date(2026, 4, 3), date(2026, 4, 4), date(2026, 4, 6)):
        assert scheduler.sweep(engine, settings, at_noon(day)) == []


def test_an_extension_moves_the_ladder(engine, settings):
    ref = open_case(engine, settings, date(2026, 3, 10))
    scheduler.sweep(engine, settings, at_noon(date(2026, 4, 8)))  # before1 for 9 April
    with session_scope(engine) as s:
        case = cases.extend(s, settings, ref, "many systems", "tester", now=at_noon(date(2026, 4, 8)))
        new_due = case.due
    assert new_due == date(2026, 6, 10)
    # The old date passes unremarked; the ladder now leads to 10 June.
    assert scheduler.sweep(engine, settings, at_noon(date(2026, 4, 9))) == []
    got = sweep_days(engine, settings, date(2026, 5, 25), date(2026, 6, 11))
    assert [v[0].split()[1] for v in got.values()] == ["before7", "before3", "before1", "due",
                                                       "overdue"]
    assert min(got) == date(2026, 6, 1)  # 7 working days before 10 June (Whit Monday 25 May off)


def test_verification_reminder_once_after_five_days(engine, settings):
    ref = open_case(engine, settings, date(2026, 3, 2), intents=("access",))
    assert scheduler.sweep(engine, settings, at_noon(date(2026, 3, 6))) == []  # four days
    first = scheduler.sweep(engine, settings, at_noon(date(2026, 3, 9)))
    assert [(e.ref, e.step, e.to) for e in first] == [(ref, "verification_reminder", ["requester"])]
    assert scheduler.sweep(engine, settings, at_noon(date(2026, 3, 10))) == []
    with session_scope(engine, write=False) as s:
        mails = s.execute(select(Outbox).where(Outbox.kind == "email")).scalars().all()
    assert [m.recipient for m in mails] == ["kari@example.no"]  # the code, once
    assert len(events(engine, ref, "code_resent")) == 1


def test_an_unsettled_checklist_is_named_two_working_days_before_due(engine, settings):
    ref = open_case(engine, settings, date(2026, 3, 10), intents=("access",))
    with session_scope(engine) as s:
        workflow.verify(s, settings, ref, "email_code", "tester")
    done = scheduler.sweep(engine, settings, at_noon(date(2026, 4, 7)))  # 2 working days left
    assert [e.step for e in done] == ["checklist:2026-04-09", "before3:2026-04-09"]
    detail = events(engine, ref, "escalation")[0]
    assert detail["step"] == "checklist:2026-04-09"
    assert detail["unsettled"] and all(u.startswith("access: ") for u in detail["unsettled"])


def slack_and_managers(settings) -> None:
    """Slack on with a review and a manager channel; Branninfo has one manager by email."""
    settings.slack.bot_token = "xoxb-test"
    settings.slack.review_channel = "CREVIEW"
    settings.slack.manager_channel = "CMANAGERS"
    settings.organization("branninfo").managers = ["leder@branninfo.no"]


def test_slack_rows_and_managers_mail(engine, settings):
    slack_and_managers(settings)
    ref = open_case(engine, settings, date(2026, 3, 10))
    scheduler.sweep(engine, settings, at_noon(date(2026, 4, 1)))  # before3: review channel only
    scheduler.sweep(engine, settings, at_noon(date(2026, 4, 9)))  # due: managers, both ways
    scheduler.sweep(engine, settings, at_noon(date(2026, 4, 9)))
    with session_scope(engine, write=False) as s:
        rows = s.execute(select(Outbox).order_by(Outbox.id)).scalars().all()
    assert [(r.kind, r.recipient) for r in rows] == [
        ("slack", "CREVIEW"), ("slack", "CMANAGERS"), ("email", "leder@branninfo.no")]
    payload = json.loads(rows[0].payload)
    assert payload["method"] == "chat.postMessage"
    assert payload["args"]["channel"] == "CREVIEW" and ref in payload["args"]["text"]
    assert payload["args"]["blocks"][0]["type"] == "section"
    mail = rows[2].payload.decode()
    assert "Auto-Submitted: auto-generated" in mail and ref in mail
    assert "kari@example.no" not in mail  # staff get the reference, not the person


def test_an_escalation_mentions_the_assignee_in_slack_and_names_them_in_mail(engine, settings):
    slack_and_managers(settings)
    assigned = open_case(engine, settings, date(2026, 3, 10))
    named = open_case(engine, settings, date(2026, 3, 10), requester="ola@example.no")
    nobody = open_case(engine, settings, date(2026, 3, 10), requester="per@example.no")
    with session_scope(engine) as s:
        workflow.assign(s, assigned, "UKARI123", by="tester")
        workflow.assign(s, named, "Ola Nordmann", by="tester")
    scheduler.sweep(engine, settings, at_noon(date(2026, 4, 9)))  # due: Slack and managers' mail
    with session_scope(engine, write=False) as s:
        rows = s.execute(select(Outbox).order_by(Outbox.id)).scalars().all()
        by_case = {}
        for r in rows:
            by_case.setdefault(s.get(Case, r.case_id).ref, {})[r.kind] = r.payload
    slack = {ref: json.dumps(json.loads(p["slack"])["args"]["blocks"]) for ref, p in by_case.items()}
    mail = {ref: message_from_bytes(p["email"], policy=default).get_content()
            for ref, p in by_case.items()}
    assert "<@UKARI123>" in slack[assigned] and "UKARI123 (Slack)" in mail[assigned]
    assert "<@" not in mail[assigned]
    assert "Ola Nordmann" in slack[named] and "Ola Nordmann" in mail[named]
    assert "Ansvarlig" not in slack[nobody] and "Ansvarlig" not in mail[nobody]


def test_a_closed_date_added_moves_open_dates_never_earlier(engine, settings, tmp_path):
    ref = open_case(engine, settings, date(2026, 3, 10))
    done = open_case(engine, settings, date(2026, 3, 10))
    with session_scope(engine) as s:
        cases.close(s, done, "tester")
    scheduler.sweep(engine, settings, at_noon(date(2026, 3, 20)))  # the calendar is recorded
    assert events(engine, ref, "deadline_moved") == []
    settings.cases.extra_closed_dates = [date(2026, 4, 9)]  # the office closes on the due day
    moved = scheduler.move_dates_if_calendar_changed(engine, settings)  # as at start
    assert moved == [(ref, date(2026, 4, 9), date(2026, 4, 10))]
    assert events(engine, ref, "deadline_moved")[0]["due"] == "2026-04-10"
    assert events(engine, done, "deadline_moved") == []
    assert scheduler.move_dates_if_calendar_changed(engine, settings) == []  # once
    # The closed day is taken back: a date already given is never moved earlier.
    settings.cases.extra_closed_dates = []
    assert scheduler.sweep(engine, settings, at_noon(date(2026, 3, 23))) == []
    with session_scope(engine, write=False) as s:
        assert cases.get_case(s, ref).due == date(2026, 4, 10)


def test_the_digest_most_urgent_first_and_claimed_once(engine, settings):
    settings.organization("branninfo").managers = ["leder@branninfo.no"]
    late = open_case(engine, settings, date(2026, 3, 2))  # due 2 April... overdue by 14 April
    soon = open_case(engine, settings, date(2026, 3, 20), org="bagges")
    waiting = open_case(engine, settings, date(2026, 4, 1), intents=("access",))
    now = at_noon(date(2026, 4, 14))
    with session_scope(engine, write=False) as s:
        built = scheduler.build_digest(s, settings, now)
    assert [o["id"] for o in built["orgs"]] == ["branninfo", "bagges"]
    branninfo = built["orgs"][0]
    assert [c["ref"] for c in branninfo["overdue"]] == [late]
    assert branninfo["overdue"][0]["days"] > 0
    assert [c["ref"] for c in branninfo["awaiting"]] == [waiting]
    assert [c["ref"] for c in built["orgs"][1]["due_soon"]] == [soon]
    assert built["total"]["open_total"] == 3
    subject, body, html = scheduler.render_digest(built, "en")
    assert body.index(late) < body.index(soon)
    assert "In total" in body and "<table>" in html
    first = scheduler.send_digest(engine, settings, now)
    assert first is not None and first["to"] == ["mail:leder@branninfo.no"]
    assert scheduler.send_digest(engine, settings, now + timedelta(hours=2)) is None
    with session_scope(engine, write=False) as s:
        rows = s.execute(select(Outbox).where(Outbox.dedup_key.like("digest:%"))).scalars().all()
    assert len(rows) == 1
    mail = rows[0].payload.decode()
    assert "multipart/alternative" in mail and "text/html" in mail


def test_the_digest_answered_in_the_period_with_median(engine, settings, tmp_path):
    from assistant.outbox import Sender
    from assistant.store.models import utcnow

    settings.outbound.maildir = str(tmp_path / "maildir")
    now = utcnow()  # the answer is stamped by the clock; nothing below asserts the clock
    refs = []
    for days_ago in (10, 4):
        received = (now - timedelta(days=days_ago)).astimezone(OSLO).date()
        refs.append(open_case(engine, settings, received))
    for ref in refs:
        with session_scope(engine) as s:
            workflow.approve(s, settings, ref, "tester", edited_body="Svar på spørsmålet.")
    Sender(engine, settings).send_due()
    with session_scope(engine, write=False) as s:
        built = scheduler.build_digest(s, settings, now + timedelta(minutes=1))
    (branninfo,) = built["orgs"]
    assert branninfo["answered"] == 2 and branninfo["open_total"] == 0
    assert branninfo["median_days"] == 7  # (10 + 4) / 2
    assert built["total"]["median_days"] == 7


def test_ladder_step_is_pure():
    from assistant.deadlines import default_calendar

    cal = default_calendar()
    due = date(2026, 4, 9)
    assert scheduler.ladder_step(cal, date(2026, 3, 25), due, [7, 3, 1]) is None
    assert scheduler.ladder_step(cal, date(2026, 3, 26), due, [7, 3, 1])[0] == "before7:2026-04-09"
    assert scheduler.ladder_step(cal, date(2026, 4, 3), due, [7, 3, 1]) is None  # Good Friday
    assert scheduler.ladder_step(cal, date(2026, 4, 7), due, [7, 3, 1], 2, True)[1] == "checklist"
    assert scheduler.ladder_step(cal, date(2026, 4, 10), due, [7, 3, 1]) == \
        ("overdue:2026-04-09:2026-04-10", "overdue", 1)


def test_cli_sweep_prints_what_it_escalated(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from assistant.cli import cli

    monkeypatch.setenv("DSR_DATABASE__URL", f"sqlite:///{tmp_path / 'dsr.db'}")
    runner = CliRunner()
    made = runner.invoke(cli, ["cases", "new", "--org", "branninfo", "--requester", "a@b.no",
                               "--received", "2026-03-10", "--intent", "question", "--by", "k"])
    assert made.exit_code == 0, made.output
    result = runner.invoke(cli, ["sweep", "--now", "2026-04-01"])
    assert result.exit_code == 0, result.output
    assert "DSR-2026-0001" in result.stdout and "before3:2026-04-09" in result.stdout
    again = runner.invoke(cli, ["sweep", "--now", "2026-04-01"])
    assert again.exit_code == 0 and "DSR-2026-0001" not in again.stdout
    printed = runner.invoke(cli, ["digest", "--now", "2026-04-14", "--print"])
    assert printed.exit_code == 0 and "DSR-2026-0001" in printed.stdout
    assert runner.invoke(cli, ["sweep", "--now", "tomorrow"]).exit_code == 2


def test_the_digest_on_slack_is_one_outbox_row_of_blocks(engine, settings):
    settings.slack.bot_token = "xoxb-test"
    settings.slack.manager_channel = "CMANAGERS"
    late = open_case(engine, settings, date(2026, 3, 2))
    now = at_noon(date(2026, 4, 14))
    sent = scheduler.send_digest(engine, settings, now)
    assert sent is not None and sent["to"] == ["slack:CMANAGERS"]
    assert scheduler.send_digest(engine, settings, now) is None  # claimed for this period
    assert scheduler.send_digest(engine, settings, now + timedelta(days=1)) is not None
    with session_scope(engine, write=False) as s:
        rows = s.execute(select(Outbox).where(Outbox.kind == "slack")
                         .order_by(Outbox.id)).scalars().all()
    assert [r.dedup_key for r in rows] == ["digest:2026-04-14:slack", "digest:2026-04-15:slack"]
    call = json.loads(rows[0].payload)
    assert call["method"] == "chat.postMessage" and call["args"]["channel"] == "CMANAGERS"
    blocks = call["args"]["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks) <= 50
    assert any(late in b.get("text", {}).get("text", "") for b in blocks)


def test_cli_digest_queues_once_per_period(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from assistant.cli import cli

    monkeypatch.setenv("DSR_DATABASE__URL", f"sqlite:///{tmp_path / 'dsr.db'}")
    runner = CliRunner()
    first = runner.invoke(cli, ["digest", "--now", "2026-04-14"])
    assert first.exit_code == 0 and "digest 2026-04-14 queued" in first.stdout
    again = runner.invoke(cli, ["digest", "--now", "2026-04-14T15:00"])
    assert again.exit_code == 0 and "already sent" in again.stderr


def test_concurrent_sweeps_escalate_each_step_once(engine, settings):
    import threading

    settings.organization("branninfo").managers = ["leder@branninfo.no"]
    refs = [open_case(engine, settings, date(2026, 3, 10)) for _ in range(12)]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                scheduler.sweep(engine, settings, at_noon(date(2026, 4, 9)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if engine.dialect.name == "sqlite":  # writers wait for the file lock; none may fail silently
        assert all("locked" in str(e) for e in errors), errors
        scheduler.sweep(engine, settings, at_noon(date(2026, 4, 9)))
    else:
        assert errors == []
    with session_scope(engine, write=False) as s:
        steps = s.execute(select(Escalation.step)).scalars().all()
        mails = s.execute(select(Outbox.dedup_key).where(Outbox.kind == "email")).scalars().all()
    assert sorted(steps) == ["due:2026-04-09"] * len(refs)
    assert len(mails) == len(refs)
    for ref in refs:
        assert len(events(engine, ref, "escalation")) == 1


def test_the_digest_lists_the_most_urgent_and_counts_the_rest(engine, settings, monkeypatch):
    monkeypatch.setattr(scheduler, "LISTED", 1)
    first = open_case(engine, settings, date(2026, 3, 2))
    second = open_case(engine, settings, date(2026, 3, 3))
    with session_scope(engine, write=False) as s:
        built = scheduler.build_digest(s, settings, at_noon(date(2026, 4, 14)))
    _, body, html = scheduler.render_digest(built, "en")
    assert first in body and second not in body and "… and 1 more" in body
    assert "… and 1 more" in html
