"""From a request someone made to a case with a drafted reply: the core's one road.

Channels (CLI today; email and Slack later) hand over what the person wrote; this module
understands it, opens the case, keeps the text (masked) beside the case and drafts the reply
as soon as the case may have one: at once when verification is not needed, else on
verification. Nothing here sends anything; reviewers and senders act on the drafts.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import cases
from .config import Organization, Settings
from .drafting import Draft as DraftText
from .drafting import OrgInfo, draft_extension, draft_refusal, draft_reply
from .logs import get_logger
from .store.models import Case, Draft, ErasureTask, Message
from .understand.pii import mask_personal_numbers
from .understand.pipeline import understand_text
from .understand.policies import Policy, load_policy
from .understand.records import Record, find_record

# What a person wrote passes through here; only its outcome (intents, ids, sizes) is logged.
log = get_logger("workflow")


def org_info(org: Organization, policy: Policy | None = None) -> OrgInfo:
    retention = tuple(getattr(policy, "retention_law", ()) or ()) if policy else ()
    return OrgInfo(id=org.id, name=org.name, addresses=tuple(org.addresses),
                   systems=tuple(org.systems), language=org.language, retention_law=retention)


@lru_cache(maxsize=64)
def _policy_at(path: str, mtime: float) -> Policy:
    return load_policy(Path(path))


def policy_for(settings: Settings, org: Organization) -> Policy | None:
    """The organisation's policy, re-read when the file changes (officers edit it live)."""
    path = settings.policy_path(org)
    if path is None or not path.exists():
        return None
    return _policy_at(str(path), path.stat().st_mtime)


def record_request_text(session: Session, case: Case, *, channel: str, received_at: datetime,
                        subject: str, body: str, requester: str | None) -> Message:
    """Keep what a person said by phone or chat beside the case, as a message would be kept."""
    raw = f"Subject: {subject}\n\n{body}".encode()
    message = Message(
        dedup_key=f"{channel}:{uuid.uuid4()}", channel=channel, raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(), received_at=received_at,
        envelope_from=requester, envelope_to="[]", status="processed", case_id=case.id,
        subject=mask_personal_numbers(subject) or None, text=mask_personal_numbers(body),
        processed_at=received_at,
    )
    session.add(message)
    return message


def open_request(
    session: Session, settings: Settings, *, org_id: str, channel: str, received_at: datetime,
    requester: str | None, requester_name: str | None = None, subject: str = "", body: str = "",
    intents: list[str] | None = None, actor: str = "dsr",
) -> Case:
    """Understand the request (unless staff named the intents), open its case, draft if allowed."""
    org = settings.organization(org_id)
    language: str | None = None
    unclear = False
    classified = intents is None
    if intents is None:
        result = understand_text(body, subject=subject, default_language=org.language)
        intents, language, unclear = list(result.intents), result.language, result.unclear
    case = cases.open_case(
        session, settings, org_id=org_id, channel=channel, received_at=received_at,
        requester=requester, requester_name=requester_name, intents=intents, language=language,
        unclear=unclear or not intents, actor=actor,
    )
    log.debug("request understood", extra={
        "ref": case.ref, "intents": intents, "language": case.language, "unclear": case.unclear,
        "by": "classifier" if classified else "staff"})
    if body or subject:
        message = record_request_text(session, case, channel=channel, received_at=received_at,
                                      subject=subject, body=body, requester=requester)
        session.flush()
        log.debug("request text kept", extra={"ref": case.ref, "message_id": message.id,
                                              "chars": len(body) + len(subject)})
    if case.state == "verified":
        draft_for_case(session, settings, case, actor=actor)
    return case


def record_for(settings: Settings, org: Organization) -> Record | None:
    """The organisation's record of processing: next to its policy, else in the policy folders."""
    return find_record(org.id, settings.policy_path(org))


def _erasure_checklist(session: Session, case: Case) -> dict[str, Any] | None:
    """The case's erasure checklist as drafting reads it; None when the case has none."""
    tasks = cases.erasure_tasks(session, case)
    if not tasks:
        return None
    return {t.system: {"outcome": t.state, "law": t.law or "", "until": t.kept_until}
            for t in tasks}


def settle(session: Session, settings: Settings, ref: str, system: str, outcome: str, by: str,
           law: str | None = None, note: str | None = None, until: date | None = None
           ) -> ErasureTask:
    """Settle one system of the erasure checklist; a pending reply is written anew from the
    checklist as it now stands, so it never says a kept system was deleted."""
    task = cases.settle_erasure(session, ref, system, outcome, by, law=law, note=note, until=until)
    case = cases.get_case(session, ref)
    if case.state == "drafted":
        draft_for_case(session, settings, case, actor=by)
    return task


def _request_text(session: Session, case: Case) -> str | None:
    first = session.execute(
        select(Message).where(Message.case_id == case.id, Message.direction == "in")
        .order_by(Message.received_at, Message.id)
    ).scalars().first()
    if first is None:
        return None
    return " ".join(part for part in (first.subject, first.text) if part) or None


def compose(session: Session, settings: Settings, case: Case) -> DraftText:
    """The reply text for the case as it stands, from templates and the organisation's policy."""
    org = settings.organization(case.org)
    policy = policy_for(settings, org)
    intents = json.loads(case.intents)
    due: date = case.due or cases.compute_deadlines(case.received_at).due
    return draft_reply(
        org_info(org, policy), policy, case.ref, intents, case.language, due,
        question=_request_text(session, case) if "question" in intents else None,
        extended_due=case.due if case.extended else None,
        extension_reason=case.extension_reason if case.extended else None,
        verified=case.verified, record=record_for(settings, org),
        requester_name=case.requester_name,
        erasure_checklist=_erasure_checklist(session, case) if "erasure" in intents else None,
        corrected=cases.corrections(session, case) if "rectification" in intents else None,
    )


def draft_for_case(session: Session, settings: Settings, case: Case, actor: str = "dsr") -> Draft:
    text = compose(session, settings, case)
    log.debug("reply composed", extra={"ref": case.ref, "kind": text.kind, "language": text.language,
                                       "quoted_sections": len(text.quoted_sections)})
    return cases.add_draft(session, case, kind=text.kind, language=text.language,
                           subject=text.subject, body=text.body,
                           quoted_sections=text.quoted_sections, actor=actor)


def verify(session: Session, settings: Settings, ref: str, method: str, by: str,
           now: datetime | None = None) -> Case:
    """Verification opens the way to the reply, so the draft is written right away."""
    case = cases.verify(session, settings, ref, method, by, now=now)
    draft_for_case(session, settings, case)
    return case


def extend(session: Session, settings: Settings, ref: str, reason: str, by: str,
           now: datetime | None = None) -> Case:
    """The requester must be told of an extension and why (Art. 12(3)): a notice is drafted for
    review, and a pending reply is rewritten to carry the new date."""
    case = cases.extend(session, settings, ref, reason, by, now=now)
    org = settings.organization(case.org)
    notice = draft_extension(org_info(org, policy_for(settings, org)), case.ref, case.language,
                             case.due, case.extension_reason or reason)
    cases.add_draft(session, case, kind="extension", language=notice.language,
                    subject=notice.subject, body=notice.body, actor=by)
    if case.state == "drafted":
        draft_for_case(session, settings, case)
    return case


def redraft(session: Session, settings: Settings, ref: str, by: str) -> Draft:
    """A fresh reply from the case as it stands (after a reopen, or after the policy or the
    record was edited); it supersedes the pending reply. Refused where the case cannot have a
    reply (cases.NO_REDRAFT)."""
    case = cases.get_case(session, ref, for_update=True)
    cases.check_redraft(case)
    return draft_for_case(session, settings, case, actor=by)


def rectify(session: Session, settings: Settings, ref: str, what: str, by: str) -> Draft:
    """Record what was corrected (Art. 16) and redraft: the reply states it."""
    case = cases.record_rectification(session, ref, what, by)
    return draft_for_case(session, settings, case, actor=by)


def reject(session: Session, settings: Settings, ref: str, reason: str, by: str,
           now: datetime | None = None) -> Draft:
    """Rejecting the drafted reply rejects the request, and the requester must be told why and
    where to turn (Art. 12(4)): a refusal letter is drafted for review, like a notice. Rejecting
    a notice only drops that notice."""
    rejected = cases.reject_draft(session, ref, reason, by, now=now)
    if rejected.kind in cases.NOTICE_KINDS:
        return rejected
    case = cases.get_case(session, ref)
    org = settings.organization(case.org)
    letter = draft_refusal(org_info(org, policy_for(settings, org)), case.ref, case.language,
                           mask_personal_numbers(rejected.reason or reason),
                           json.loads(case.intents), case.requester_name)
    cases.add_draft(session, case, kind=letter.kind, language=letter.language,
                    subject=letter.subject, body=letter.body, actor=by)
    return rejected
