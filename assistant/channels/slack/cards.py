"""The review card: a case in Block Kit, and its posts and updates queued in the outbox.

A card is posted once per case (outbox dedup key ``slack:card:<case id>``) to the review channel
when the case has a draft waiting; afterwards, whenever the case's audit trail has moved on (a
staff action here or at the CLI, a code reply or a follow-up by mail), one update is queued
(``slack:card:<case id>:<newest event id>``), so asking twice queues once, and an update
overtaken by a newer one is skipped by the sender. Card rows never write audit events, so an
update never calls for another update.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from ... import desk
from ...config import Settings
from ...outbox import CARD_KEY
from ...store.models import Draft, Event, Outbox, utcnow
from ...vocabulary import SLACK_USER_RE

TEXT_LIMIT = 2900  # a section's text may hold 3000 characters
DRAFT_BLOCKS = 4
EVENTS_SHOWN = 6
ACTIONS = ("dsr_approve", "dsr_edit", "dsr_reject", "dsr_extend", "dsr_verify", "dsr_intents")
TICK = "dsr_tick"
SETTLE = "dsr_settle"
KEEP = "dsr_keep"
OUTCOME_LABELS = {"done": "Done", "none": "None held", "suppressed": "Suppressed"}
ACTION_WORDS = {
    "approved": "approved", "rejected": "rejected", "notice_approved": "approved the notice",
    "notice_rejected": "rejected the notice", "extended": "extended the deadline",
    "verified": "verified the requester", "drafted": "drafted", "collected": "ticked a system",
    "marketing_stopped": "stopped marketing in a system", "erasure_done": "settled a system",
    "erasure_kept": "settled a system (kept)", "erasure_suppressed": "settled a system (suppressed)",
    "message_linked": "a mail joined the case", "answered": "the reply was delivered",
    "intent_added": "added intents", "rectified": "recorded a correction", "note": "wrote a note",
    "desk_refused": "was refused", "acknowledged": "acknowledged", "opened": "opened the case",
    "assigned": "assigned the case",
}
def person(who: str | None) -> str:
    """An assignee as Slack shows it: a user ID becomes a mention, a name stays text."""
    if not who:
        return "nobody"
    return f"<@{who}>" if SLACK_USER_RE.match(who) else _text(who)


def _text(value: str) -> str:
    """Slack mrkdwn needs &, < and > escaped; a requester's words never become markup."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text},
                              "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    return button


def _evidence(view: dict[str, Any]) -> str:
    found = view.get("evidence") or {}
    lines = [f"{intent}: {', '.join(words)}" for intent, words in found.items() if words]
    return ("\n_matched_ " + _text("; ".join(lines)))[:600] if lines else ""


def card_blocks(view: dict[str, Any], org_name: str) -> list[dict[str, Any]]:
    """The card's blocks; buttons that no longer apply are left out."""
    case = view["case"]
    ref = case["ref"]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{ref} · {org_name}"[:150]}},
    ]
    requester = case["requester_name"] or ""
    if case["requester"]:
        requester = f"{requester} <{case['requester']}>".strip()
    verified = (f"yes ({case['verification_method']})" if case["verified"] else "not yet")
    left = view.get("working_days_left")
    due = case["due"] or "unknown"
    if left is not None:
        due += f" ({left} working days left)"
    if case["extended"]:
        due += f" · extended: {case['extension_reason'] or ''}"
    intents = ", ".join(case["intents"]) or (
        f"unclear ({view['triage']})" if view.get("triage") else "unclear")
    blocks.append({"type": "section", "fields": [
        {"type": "mrkdwn", "text": f"*Requester*\n{_text(requester or 'unknown')}"},
        {"type": "mrkdwn", "text": f"*State*\n{case['state']}"},
        {"type": "mrkdwn", "text": f"*Intents*\n{_text(intents)}{_evidence(view)}"[:2000]},
        {"type": "mrkdwn", "text": f"*Verified*\n{verified}"},
        {"type": "mrkdwn", "text": f"*Due*\n{_text(due)}"},
        {"type": "mrkdwn", "text": f"*Channel*\n{case['channel']}"},
        {"type": "mrkdwn", "text": f"*Assignee*\n{person(case.get('assignee'))}"},
    ]})
    finished = case["state"] in ("answered", "closed", "rejected")
    for kind, items in view["checklists"].items():
        if not items:
            continue
        title = {"access": "Access collection", "suppression": "Opt-out suppression"}.get(kind, kind)
        blocks.append(_section(f"*{title}*"))
        for item in items:
            line = f"{'✅' if item['state'] != 'pending' else '⬜'} {_text(item['system'])}: {item['state']}"
            if item["settled_by"]:
                line += f" ({_text(item['settled_by'])})"
            block = _section(line)
            outcomes = ("done", "none") if kind == "access" else ("done",)
            if item["state"] == "pending" and not finished:
                blocks.append(block)
                blocks.append({"type": "actions", "elements": [
                    _button(OUTCOME_LABELS[o], f"{TICK}:{kind}:{item['system']}:{o}"[:255],
                            json.dumps({"ref": ref, "kind": kind, "system": item["system"],
                                        "outcome": o}))
                    for o in outcomes]})
            else:
                blocks.append(block)
    if view["erasure_tasks"]:
        blocks.append(_section("*Erasure*"))
        for task in view["erasure_tasks"]:
            line = f"{'✅' if task['state'] != 'pending' else '⬜'} {_text(task['system'])}: {task['state']}"
            if task["law"]:
                line += f" (kept under {_text(task['law'])} until {task['until']})"
            blocks.append(_section(line))
            if task["state"] == "pending" and not finished:
                blocks.append({"type": "actions", "elements": [
                    _button(OUTCOME_LABELS[o], f"{SETTLE}:{task['system']}:{o}"[:255],
                            json.dumps({"ref": ref, "system": task["system"], "outcome": o}))
                    for o in ("done", "suppressed")] + [
                    _button("Kept by law…", f"{KEEP}:{task['system']}"[:255],
                            json.dumps({"ref": ref, "system": task["system"]}))]})
    for draft in view["drafts"]:
        flagged = [s for s in draft["sections"] if s["flagged"]]
        if flagged:
            blocks.append(_section("*⚠ Flagged policy passages*\n" + "\n".join(
                f"• {_text(s['heading'])}: {_text('; '.join(s['findings']))}" for s in flagged)))
        label = "Draft" if draft["state"] == "pending" else f"Draft ({draft['state']})"
        if draft["edited"]:
            label += ", edited"
        body = f"*{label}: {_text(draft['kind'])}* · {_text(draft['subject'])}\n```{_text(draft['body'])}```"
        for n in range(DRAFT_BLOCKS):
            part = body[n * TEXT_LIMIT:(n + 1) * TEXT_LIMIT]
            if part:
                blocks.append(_section(part))
        if draft["staff_lines"]:
            blocks.append(_section("*For staff before approving:*\n" + "\n".join(
                f"• {_text(line)}" for line in draft["staff_lines"])))
    done = [e for e in view["events"] if e["kind"] in ACTION_WORDS and e["actor"] != "dsr"]
    if done:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(
            f"{(e['at'] or '')[:16].replace('T', ' ')} {_text(e['actor'])} "
            f"{ACTION_WORDS[e['kind']]}" for e in done[-EVENTS_SHOWN:])}]})
    buttons = []
    if view["pending"] and case["state"] not in ("closed",):
        buttons += [_button("Approve & send", "dsr_approve", ref, "primary"),
                    _button("Edit", "dsr_edit", ref),
                    _button("Reject", "dsr_reject", ref, "danger")]
    if not finished and not case["extended"]:
        buttons.append(_button("Extend", "dsr_extend", ref))
    if not finished and not case["verified"]:
        buttons.append(_button("Mark verified", "dsr_verify", ref))
    if not finished:
        buttons.append(_button("Change intents", "dsr_intents", ref))
        buttons.append(_button("Assign to me", "dsr_assign", ref))
    if buttons:
        blocks.append({"type": "actions", "block_id": "case_actions", "elements": buttons})
    return blocks[:50]


def card_text(view: dict[str, Any]) -> str:
    case = view["case"]
    return f"{case['ref']}: {case['state']}, due {case['due']}"


def _card_rows(session: Session, case_id: int) -> list[Outbox]:
    return list(session.execute(select(Outbox).where(
        Outbox.kind == "slack", Outbox.case_id == case_id,
        (Outbox.dedup_key == f"{CARD_KEY}{case_id}")
        | Outbox.dedup_key.like(f"{CARD_KEY}{case_id}:%")).order_by(Outbox.id)).scalars())


def card_message(session: Session, case_id: int) -> tuple[str, str] | None:
    """(channel, ts) of the case's posted card; None while it is not posted."""
    for row in _card_rows(session, case_id):
        if row.dedup_key == f"{CARD_KEY}{case_id}" and row.state == "sent":
            answer = json.loads(row.payload).get("response") or {}
            if answer.get("ts"):
                return answer["channel"], answer["ts"]
    return None


def _newest_event(session: Session, case_id: int) -> int:
    return session.execute(select(func.max(Event.id)).where(Event.case_id == case_id)).scalar() or 0


def _row(session: Session, key: str, case_id: int, method: str, args: dict[str, Any],
         event_id: int, now: datetime) -> Outbox | None:
    if session.execute(select(Outbox.id).where(Outbox.dedup_key == key)).first():
        return None
    payload = {"method": method, "args": args, "event": event_id}
    row = Outbox(dedup_key=key, kind="slack", case_id=case_id, recipient=args.get("channel"),
                 payload=json.dumps(payload, ensure_ascii=False).encode(), next_attempt_at=now,
                 created_at=now)
    session.add(row)
    session.flush()
    return row


def sync_card(session: Session, settings: Settings, ref: str,
              now: datetime | None = None) -> Outbox | None:
    """Queue the case's card post (when a draft waits and no card exists) or its update (when the
    audit trail moved on since the card was last written); the row queued, else None."""
    channel = settings.slack.review_channel
    if not channel:
        return None
    moment = now or utcnow()
    view = desk.desk_view(session, settings, ref)
    case_id = view["case_id"]
    newest = _newest_event(session, case_id)
    rows = _card_rows(session, case_id)
    org_name = settings.organization(view["case"]["org"]).name
    if not rows:
        if not view["pending"]:
            return None
        return _row(session, f"{CARD_KEY}{case_id}", case_id, "chat.postMessage",
                    {"channel": channel, "text": card_text(view),
                     "blocks": card_blocks(view, org_name), "unfurl_links": False},
                    newest, moment)
    written = max(json.loads(r.payload).get("event", 0) for r in rows)
    if newest <= written:
        return None
    posted = card_message(session, case_id)
    if posted is None:
        return None  # the post is still on its way; the update follows once it has a ts
    return _row(session, f"{CARD_KEY}{case_id}:{newest}", case_id, "chat.update",
                {"channel": posted[0], "ts": posted[1], "text": card_text(view),
                 "blocks": card_blocks(view, org_name)}, newest, moment)


def cases_to_sync(session: Session) -> list[str]:
    """Cases that may need a card written: a draft waits, or a card exists."""
    from ...store.models import Case

    waiting = select(Draft.case_id).where(Draft.state == "pending")
    carded = select(Outbox.case_id).where(Outbox.kind == "slack",
                                          Outbox.dedup_key.like(f"{CARD_KEY}%"))
    return list(session.execute(select(Case.ref).where(
        Case.id.in_(waiting) | Case.id.in_(carded)).order_by(Case.id)).scalars())


def sync_cards(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """sync_card for every case that may need it; how many rows were queued."""
    return sum(1 for ref in cases_to_sync(session) if sync_card(session, settings, ref, now))


def case_of_card(session: Session, channel: str | None, ts: str) -> str | None:
    """The reference of the case whose card is the message (channel, ts); None if none is."""
    from ...store.models import Case

    rows = session.execute(select(Outbox).where(
        Outbox.kind == "slack", Outbox.state == "sent",
        Outbox.dedup_key.like(f"{CARD_KEY}%"))).scalars()
    for row in rows:
        answer = json.loads(row.payload).get("response") or {}
        if answer.get("ts") == ts and (channel is None or answer.get("channel") == channel):
            case = session.get(Case, row.case_id)
            return case.ref if case is not None else None
    return None


def queue_thread_reply(session: Session, case_id: int, channel: str, thread_ts: str, text: str,
                       blocks: list[dict[str, Any]], key: str,
                       now: datetime | None = None) -> Outbox | None:
    """A message in a thread (the confirmation of a chat intake), through the outbox, once."""
    return _row(session, key, case_id, "chat.postMessage",
                {"channel": channel, "thread_ts": thread_ts, "text": text, "blocks": blocks},
                _newest_event(session, case_id), now or utcnow())


def intake_blocks(view: dict[str, Any], org_name: str) -> list[dict[str, Any]]:
    """What was understood from a chat note, with buttons to correct it."""
    case = view["case"]
    who = case["requester_name"] or "unknown name"
    who += f" <{case['requester']}>" if case["requester"] else " (no address found)"
    verified = "verified" if case["verified"] else "ID not verified yet"
    text = (f"Opened *{case['ref']}* for {_text(org_name)}: {_text(who)}; asks for "
            f"{_text(', '.join(case['intents']) or 'something unclear')}; received "
            f"{(case['received_at'] or '')[:16].replace('T', ' ')} UTC, due {case['due']} "
            f"({verified}).")
    return [_section(text), {"type": "actions", "elements": [
        _button("Change intents", "dsr_intents", case["ref"]),
        _button("Correct requester", "dsr_requester", case["ref"]),
        _button("Show case", "dsr_show", case["ref"]),
    ]}]
