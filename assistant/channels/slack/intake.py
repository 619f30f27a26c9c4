"""Chat intake: what staff (or a person) write to the bot, stored once, then made a case.

A direct message to the bot, or a message in `slack.intake_channel`, is stored first as a message
row keyed by its Slack channel and ts (a retry from Slack finds the row and stops there), then
handed to workflow: a message naming a case reference becomes a note on that case; any other
opens a case through the same understanding as mail (channel ``slack``), with the receipt time of
the Slack ts. Staff write in their own shorthand about someone else ("kunde ringte nå, vil ha alt
slettet, epost kari@example.no, Kari Nordmann"), so the requester's address and name are taken
from the note, never from the Slack user.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from ...store.models import Message

STATUS_CHAT = "chat"  # stored, not yet made a case (the email worker never claims it)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
NAME_LABEL = re.compile(r"(?:navn|name|heter)\s*[:=]?\s*([A-ZÆØÅ][\w'-]+(?:\s+[A-ZÆØÅ][\w'-]+){0,3})")
CAPITALISED = re.compile(r"(?<![\w.@])([A-ZÆØÅ][a-zæøåéü'-]+(?:\s+[A-ZÆØÅ][a-zæøåéü'-]+){1,3})\b")


def dedup_key(channel: str, ts: str) -> str:
    return f"slack:{channel}:{ts}"


def received_at(ts: str) -> datetime:
    return datetime.fromtimestamp(float(ts), timezone.utc)


def store_chat(session: Session, event: dict[str, Any]) -> Message | None:
    """Keep the message as it arrived; None when it was stored before (a retry)."""
    key = dedup_key(event["channel"], event["ts"])
    if session.execute(select(Message.id).where(Message.dedup_key == key)).first():
        return None
    raw = json.dumps({k: event.get(k) for k in ("channel", "channel_type", "user", "ts", "text")},
                     ensure_ascii=False).encode()
    message = Message(dedup_key=key, channel="slack", raw=raw,
                      sha256=hashlib.sha256(raw).hexdigest(), received_at=received_at(event["ts"]),
                      envelope_from=None, envelope_to="[]", status=STATUS_CHAT)
    session.add(message)
    session.flush()
    return message


def requester_of(text: str) -> tuple[str | None, str | None]:
    """(email, name) of the person a staff note is about: the address in the note, and the name
    it gives (after "navn:" or as capitalised words), else one made from the address."""
    found = EMAIL.search(text)
    email = found.group(0).lower().rstrip(".") if found else None
    name = None
    labelled = NAME_LABEL.search(text)
    if labelled:
        name = labelled.group(1)
    else:
        capitalised = CAPITALISED.search(text)  # two to four capitalised words: a name
        name = capitalised.group(1) if capitalised else None
    if name is None and email:
        local = email.split("@")[0]
        parts = [p for p in re.split(r"[._-]+", local) if p.isalpha()]
        if len(parts) >= 2:
            name = " ".join(p.capitalize() for p in parts)
    return email, name


def case_of_chat(session: Session, channel: str | None, ts: str) -> str | None:
    """The reference of the case a stored chat message opened or joined; None if none."""
    from ...store.models import Case

    if not channel:
        return None
    case_id = session.execute(select(Message.case_id).where(
        Message.dedup_key == dedup_key(channel, ts))).scalar()
    case = session.get(Case, case_id) if case_id is not None else None
    return case.ref if case is not None else None
