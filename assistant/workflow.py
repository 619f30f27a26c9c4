"""From a request someone made to a case with a drafted reply: the core's one road.

Channels (the CLI, the email intake worker, the Slack desk) hand over what the person wrote; this
module understands it, opens the case, keeps the text (masked) beside the case and drafts the
reply as soon as the case may have one: at once when verification is not needed, else on
verification. Nothing here sends anything: mail to the requester is written as an outbox row
(in the same transaction as the change that calls for it) and the outbox sender delivers it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import re
import secrets
import tomllib
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.utils import getaddresses
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import cases, resources
from .code_key import CodeKey, code_key
from .config import Organization, Settings
from .deadlines import OSLO
from .drafting import Draft as DraftText
from .drafting import (
    OrgInfo,
    draft_acknowledgement,
    draft_extension,
    draft_refusal,
    draft_reply,
    draft_verification,
)
from .logs import get_logger
from .mail import compose as outgoing
from .store.models import (
    Case,
    Draft,
    ErasureTask,
    Event,
    Message,
    Outbox,
    Verification,
    utcnow,
)
from .text import fold
from .understand.pii import mask_personal_numbers
from .understand.pipeline import understand_text
from .understand.policies import Policy, load_policy
from .understand.records import Record, find_record, load_record, record_path
from .vocabulary import Intent, VerificationMethod

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
    intents: list[str] | None = None, actor: str = "dsr", message: Message | None = None,
    acknowledge: bool | None = None, now: datetime | None = None,
    understood: Any = None,
) -> Case:
    """Understand the request (unless staff named the intents), open its case, draft if allowed.

    `message` is the stored mail the request came in (the intake worker links it instead of
    writing a copy). `acknowledge` queues the receipt mail to the requester; by default a request
    that came by email is acknowledged, one staff logged by hand is not (staff told the person).
    `understood`: what `understand_text(body, subject=subject, default_language=<the
    organisation's language>)` returned, when the caller classified before its transaction."""
    org = settings.organization(org_id)
    language: str | None = None
    unclear = False
    classified = intents is None
    if intents is None:
        result = understood if understood is not None else understand_text(
            body, subject=subject, default_language=org.language)
        intents, language, unclear = list(result.intents), result.language, result.unclear
    case = cases.open_case(
        session, settings, org_id=org_id, channel=channel, received_at=received_at,
        requester=requester, requester_name=requester_name, intents=intents, language=language,
        unclear=unclear or not intents, actor=actor,
    )
    log.debug("request understood", extra={
        "ref": case.ref, "intents": intents, "language": case.language, "unclear": case.unclear,
        "by": "classifier" if classified else "staff"})
    if message is not None:
        message.case_id = case.id
        message.subject = mask_personal_numbers(subject) or None
        message.text = mask_personal_numbers(body)
        session.add(message)
    elif body or subject:
        kept = record_request_text(session, case, channel=channel, received_at=received_at,
                                   subject=subject, body=body, requester=requester)
        session.flush()
        log.debug("request text kept", extra={"ref": case.ref, "message_id": kept.id,
                                              "chars": len(body) + len(subject)})
    lay_out_checklists(session, settings, case, intents, actor)
    if case.state == "verified":
        # What `_request_text` would read back: the request is the case's only message.
        asked = " ".join(part for part in (mask_personal_numbers(subject) or None,
                                           mask_personal_numbers(body)) if part) or None
        draft_for_case(session, settings, case, actor=actor, question=asked)
    elif Intent.OPT_OUT.value in intents:
        draft_opt_out_confirmation(session, settings, case, actor=actor)
    if acknowledge is None:
        acknowledge = channel == "email"
    if acknowledge:
        acknowledge_case(session, settings, case, now=now, message=message)
    return case


def record_for(settings: Settings, org: Organization) -> Record | None:
    """The organisation's record of processing: next to its policy, else in the policy folders;
    read again only when its file changes (parsing it cost more than the rest of a draft)."""
    path = record_path(org.id, settings.policy_path(org))
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return find_record(org.id, settings.policy_path(org))
    return _record_at(str(path), mtime)


@lru_cache(maxsize=64)
def _record_at(path: str, mtime_ns: int) -> Record:
    return load_record(Path(path))


# Where marketing is stopped when the record names no marketing system: one line staff tick.
ALL_MARKETING = "markedsføring (alle kanaler)"


def marketing_systems(settings: Settings, org: Organization) -> list[str]:
    """The systems of the record's direct-marketing activities; the opt-out is carried out there."""
    record = record_for(settings, org)
    found = [s for a in (record.activities if record else ()) if a.marketing for s in a.systems]
    return list(dict.fromkeys(found)) or [ALL_MARKETING]


def lay_out_checklists(session: Session, settings: Settings, case: Case, intents: list[str],
                       actor: str) -> None:
    """Access: every system is searched for the copy. Opt-out: every marketing system is told."""
    org = settings.organization(case.org)
    if Intent.ACCESS.value in intents and org.systems:
        cases.create_checklist(session, case, "access", org.systems, actor)
    if Intent.OPT_OUT.value in intents:
        cases.create_checklist(session, case, "suppression", marketing_systems(settings, org), actor)


def _suppression(session: Session, case: Case) -> dict[str, str] | None:
    if cases.opened_here(session, case):
        # Its checklist rows were written with plain statements: nothing to flush first.
        with session.no_autoflush:
            items = cases.checklist(session, case, "suppression")
    else:
        items = cases.checklist(session, case, "suppression")
    return {i.system: i.state for i in items} if items else None


def draft_opt_out_confirmation(session: Session, settings: Settings, case: Case,
                               actor: str = "dsr") -> Draft:
    """Art. 21(3): marketing stops at once, even beside a request that waits for ID. The
    confirmation is drafted now; it says what was stopped only where staff ticked it."""
    org = settings.organization(case.org)
    policy = policy_for(settings, org)
    due: date = case.due or cases.compute_deadlines(case.received_at).due
    text = draft_reply(org_info(org, policy), policy, case.ref, [Intent.OPT_OUT.value],
                       case.language, due, verified=case.verified, record=record_for(settings, org),
                       requester_name=case.requester_name, suppression=_suppression(session, case))
    return cases.add_draft(session, case, kind=text.kind, language=text.language,
                           subject=text.subject, body=text.body,
                           quoted_sections=text.quoted_sections, actor=actor)


def tick(session: Session, settings: Settings, ref: str, kind: str, system: str, outcome: str,
         by: str, note: str | None = None) -> Any:
    """Tick one system of the access collection or the suppression; what is pending is
    written anew from the checklist as it now stands."""
    item = cases.tick(session, ref, kind, system, outcome, by, note=note)
    case = cases.get_case(session, ref)
    pending = [d for d in _pending_drafts(session, case)]
    if any(cases.is_notice(d.kind, case) and d.kind == Intent.OPT_OUT.value for d in pending):
        draft_opt_out_confirmation(session, settings, case, actor=by)
    if case.state == "drafted":
        draft_for_case(session, settings, case, actor=by)
    return item


def _pending_drafts(session: Session, case: Case) -> list[Draft]:
    return list(session.execute(
        select(Draft).where(Draft.case_id == case.id, Draft.state == "pending")
    ).scalars())


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


_READ = object()  # compose's `question` default: read the request from the case's first message


def compose(session: Session, settings: Settings, case: Case, question: Any = _READ) -> DraftText:
    """The reply text for the case as it stands, from templates and the organisation's policy.
    `question`: the request's text when the caller has it (what `_request_text` would read)."""
    org = settings.organization(case.org)
    policy = policy_for(settings, org)
    intents = json.loads(case.intents)
    due: date = case.due or cases.compute_deadlines(case.received_at).due
    if "question" not in intents:
        question = None
    elif question is _READ:
        question = _request_text(session, case)
    return draft_reply(
        org_info(org, policy), policy, case.ref, intents, case.language, due,
        question=question,
        extended_due=case.due if case.extended else None,
        extension_reason=case.extension_reason if case.extended else None,
        verified=case.verified, record=record_for(settings, org),
        requester_name=case.requester_name,
        erasure_checklist=_erasure_checklist(session, case) if "erasure" in intents else None,
        suppression=_suppression(session, case) if Intent.OPT_OUT.value in intents else None,
        corrected=cases.corrections(session, case) if "rectification" in intents else None,
    )


def draft_for_case(session: Session, settings: Settings, case: Case, actor: str = "dsr",
                   question: Any = _READ) -> Draft:
    text = compose(session, settings, case, question=question)
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
    if cases.is_notice(rejected.kind, cases.get_case(session, ref)):
        return rejected
    case = cases.get_case(session, ref)
    org = settings.organization(case.org)
    letter = draft_refusal(org_info(org, policy_for(settings, org)), case.ref, case.language,
                           mask_personal_numbers(rejected.reason or reason),
                           json.loads(case.intents), case.requester_name)
    cases.add_draft(session, case, kind=letter.kind, language=letter.language,
                    subject=letter.subject, body=letter.body, actor=by)
    return rejected


# -- email: acknowledgement, one-time code, follow-ups, approval ---------------------------------
#
# The one-time code (EDPB Guidelines 01/2022 §§69-78: proportionate, no ID copies): digits from
# `secrets`, kept only as a salted HMAC-SHA256 under a key that is not in the database (code_key.py:
# a slow hash of a six-digit code is brute-forced offline from a dump anyway; the key stops that),
# compared in constant time, a few attempts, valid for days (people read mail late), and sent
# again on request, rate-limited.

CODE_DIGITS = 6
CODE_VALID_FOR = timedelta(days=7)
CODE_ATTEMPTS = 5
RESEND_INTERVAL = timedelta(minutes=10)
MAX_CODE_SENDS = 5
# Candidates read from one reply: enough for a code typed beside a phone number or a date,
# too few for a mail listing a million numbers to guess its way in.
MAX_CODE_CANDIDATES = 3
_HMAC = "hmac-sha256"
_PBKDF2 = "pbkdf2-sha256"
_CODE_MASK = "•" * CODE_DIGITS
_CODE_IN_TEXT = re.compile(rf"(?<![\w-])(\d{{{CODE_DIGITS // 2}}})[ -]?(\d{{{CODE_DIGITS - CODE_DIGITS // 2}}})(?![\w-])")
ACTOR_REQUESTER = "requester"


def _utc(now: datetime | None) -> datetime:
    return now.astimezone(timezone.utc) if now is not None else utcnow()


def _hash_code(code: str, salt: str, key: CodeKey) -> str:
    return f"{_HMAC}${key.kid}${key.digest(code, salt)}"


def _pbkdf2(code: str, salt: str, iterations: int) -> str:
    """The hash of codes sent before the keyed HMAC; such codes still verify until they expire."""
    digest = hashlib.pbkdf2_hmac("sha256", code.encode(), bytes.fromhex(salt), iterations)
    return f"{_PBKDF2}${iterations}${digest.hex()}"


def _code_matches(code: str, verification: Verification, key: CodeKey) -> bool | None:
    """Whether the code is the verification's; None when it cannot be told, because the code
    was hashed under another key (instances that do not share `verification.key_file`)."""
    if not verification.code_hash or not verification.salt:
        return False
    try:
        kind, parameter, _digest = verification.code_hash.split("$")
        if kind == _HMAC:
            if parameter != key.kid:
                return None
            expected = _hash_code(code, verification.salt, key)
        elif kind == _PBKDF2:
            expected = _pbkdf2(code, verification.salt, int(parameter))
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode(), verification.code_hash.encode())


def _new_code(settings: Settings, verification: Verification, now: datetime) -> str:
    """A fresh code for the verification; only its keyed hash is kept."""
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    verification.salt = secrets.token_hex(16)
    verification.code_hash = _hash_code(code, verification.salt, code_key(settings))
    verification.attempts = 0
    verification.sends += 1
    verification.last_sent_at = now
    verification.expires_at = now + CODE_VALID_FOR
    return code


def open_verification(session: Session, case: Case) -> Verification | None:
    """The case's email code verification that is still open, newest first."""
    return session.execute(
        select(Verification).where(Verification.case_id == case.id,
                                   Verification.method == VerificationMethod.EMAIL_CODE.value,
                                   Verification.completed_at.is_(None))
        .order_by(Verification.id.desc())
    ).scalars().first()


@dataclass(frozen=True)
class Sender:
    """Who a mail about the case comes from: the organisation address the person wrote to."""

    address: str
    name: str


def _last_incoming(session: Session, case: Case) -> Message | None:
    return session.execute(
        select(Message).where(Message.case_id == case.id, Message.direction == "in",
                              Message.message_id.is_not(None))
        .order_by(Message.received_at.desc(), Message.id.desc())
    ).scalars().first()


def _sender_for(settings: Settings, org: Organization, parent: Message | None) -> Sender:
    if parent is not None:
        written_to = json.loads(parent.envelope_to or "[]")
        for address in written_to:
            if address.lower() in org.addresses:
                return Sender(address.lower(), org.name)
        for address in _header_recipients(parent.raw):
            if address in org.addresses:
                return Sender(address, org.name)
    return Sender(org.addresses[0], org.name)


def _header_recipients(raw: bytes) -> list[str]:
    """To and Cc of a stored message, from its header block only."""
    head = raw[:65_536].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    try:
        msg = email.message_from_bytes(head, policy=email.policy.compat32)
        values = [str(v) for name in ("To", "Cc") for v in (msg.get_all(name) or [])]
        return [address.strip().lower() for _, address in getaddresses(values) if address]
    except Exception:  # noqa: BLE001
        return []


def queue_mail(session: Session, settings: Settings, case: Case, *, subject: str, body: str,
               dedup_key: str, draft: Draft | None = None, secret: str | None = None,
               now: datetime | None = None, parent_row: Message | None = None) -> Outbox | None:
    """Write one mail to the requester into the outbox (nothing is sent here). The dedup key is
    unique in the table: asking twice queues once. A copy is kept as an outgoing message (its
    Message-ID is how a reply to it finds the case), with `secret` (a one-time code) masked."""
    if not case.requester:
        return None
    moment = _utc(now)
    org = settings.organization(case.org)
    if parent_row is None or parent_row.message_id is None:
        parent_row = _last_incoming(session, case)
    sender = _sender_for(settings, org, parent_row)
    parent = None
    if parent_row is not None:
        parent = outgoing.Parent(parent_row.message_id, outgoing.references_of(parent_row.raw),
                                parent_row.subject or "")
    message_id = outgoing.new_message_id(sender.address.rpartition("@")[2])
    fields = {"from_addr": sender.address, "from_name": sender.name, "to": case.requester,
              "subject": subject, "ref": case.ref, "message_id": message_id, "date": moment,
              "parent": parent}
    kept_body = body.replace(secret, _CODE_MASK) if secret else body
    if kept_body == body:
        payload = kept = outgoing.build(body=body, **fields)
    else:
        payload, kept = outgoing.build_masked(body=body, secret=secret or "", mask=_CODE_MASK,
                                              **fields)
    row = Outbox(dedup_key=dedup_key, kind="email", case_id=case.id,
                 draft_id=draft.id if draft is not None else None, recipient=case.requester,
                 payload=payload, next_attempt_at=moment, created_at=moment)
    # Plain statements, no flush: the dedup key decides (asked twice, queued once).
    if cases.insert_row(session, row, unique="dedup_key") is None:
        return session.execute(select(Outbox).where(Outbox.dedup_key == dedup_key)).scalars().first()
    cases.insert_rows(session, Message, [dict(
        dedup_key=f"out:{dedup_key}"[:512], channel="email", direction="out", raw=kept,
        sha256=hashlib.sha256(kept).hexdigest(), message_id=message_id, received_at=moment,
        envelope_from=sender.address, envelope_to=json.dumps([case.requester]), status="queued",
        case_id=case.id, subject=outgoing.reply_subject(parent.subject, subject, case.ref)
        if parent else subject, text=kept_body, processed_at=moment,
    )])
    log.info("mail queued", extra={"ref": case.ref, "outbox": row.id, "key": dedup_key.split(":")[0]})
    return row


def acknowledge_case(session: Session, settings: Settings, case: Case,
                     now: datetime | None = None, message: Message | None = None) -> Outbox | None:
    """The receipt: reference, the date we answer by and, when ID is needed, a one-time code."""
    if not case.requester:
        return None
    moment = _utc(now)
    org = settings.organization(case.org)
    needs_code = case.state == "awaiting_verification"
    code = None
    if needs_code:
        # The row in one plain statement: nothing reads it back in this transaction.
        fields = SimpleNamespace(sends=0)
        code = _new_code(settings, fields, moment)  # type: ignore[arg-type]
        cases.insert_rows(session, Verification, [{
            "case_id": case.id, "method": VerificationMethod.EMAIL_CODE.value,
            "sent_to": case.requester, **vars(fields)}])
    due = case.due or cases.compute_deadlines(case.received_at).due
    text = draft_acknowledgement(org_info(org), case.ref, due, case.language, code, needs_code)
    row = queue_mail(session, settings, case, subject=text.subject, body=text.body,
                     dedup_key=f"ack:{case.id}", secret=code, now=moment, parent_row=message)
    cases.record_event(session, case, "dsr", "acknowledged", code_sent=code is not None,
                       outbox=row.id if row is not None else None)
    return row


def acknowledge_backfilled(session: Session, settings: Settings, case: Case,
                           now: datetime | None = None, message: Message | None = None
                           ) -> Outbox | None:
    """Mail found by `dsr import`: a receipt only while the requester is still waiting within
    the deadline. A request whose due date has passed gets no "we have received your request"
    months later; its case opens overdue, the ladder takes it to the managers, and the trail
    says no receipt was sent."""
    today = _utc(now).astimezone(OSLO).date()
    if case.due is not None and case.due < today:
        cases.record_event(session, case, "dsr", "acknowledgement_skipped",
                           reason="imported after its due date", due=case.due)
        return None
    return acknowledge_case(session, settings, case, now=now, message=message)


def resend_code(session: Session, settings: Settings, case: Case,
                now: datetime | None = None) -> str:
    """A new code by mail when the person asks; at most once per RESEND_INTERVAL and
    MAX_CODE_SENDS times in all. Returns 'code_resent' or why not."""
    moment = _utc(now)
    if case.state != "awaiting_verification" or not case.requester:
        return "resend_not_needed"
    verification = open_verification(session, case)
    if verification is None:
        verification = Verification(case_id=case.id, method=VerificationMethod.EMAIL_CODE.value,
                                    sent_to=case.requester)
    if verification.sends >= MAX_CODE_SENDS:
        cases.record_event(session, case, ACTOR_REQUESTER, "verification_failed",
                           reason="resend refused: too many codes sent")
        return "resend_refused"
    if verification.last_sent_at is not None and moment - verification.last_sent_at < RESEND_INTERVAL:
        return "resend_too_soon"
    code = _new_code(settings, verification, moment)
    session.add(verification)
    session.flush()
    org = settings.organization(case.org)
    text = draft_verification(org_info(org), case.ref, case.language, code, case.due)
    row = queue_mail(session, settings, case, subject=text.subject, body=text.body,
                     dedup_key=f"code:{verification.id}:{verification.sends}", secret=code,
                     now=moment)
    cases.record_event(session, case, "dsr", "code_resent", sends=verification.sends,
                       outbox=row.id if row is not None else None)
    return "code_resent"


def code_candidates(*texts: str) -> list[str]:
    """The code-shaped numbers in what the person wrote (their own words first)."""
    found: list[str] = []
    for text in texts:
        for match in _CODE_IN_TEXT.finditer(text or ""):
            code = match.group(1) + match.group(2)
            if code not in found:
                found.append(code)
            if len(found) >= MAX_CODE_CANDIDATES:
                return found
        if found:
            return found
    return found


def try_code(session: Session, settings: Settings, case: Case, *, from_address: str | None,
             candidates: list[str], now: datetime | None = None) -> str:
    """A reply carrying the one-time code verifies the case, when it comes from the address the
    code was sent to, in time, within the attempts. Returns what happened."""
    moment = _utc(now)
    verification = open_verification(session, case)
    if verification is None or case.state != "awaiting_verification" or not candidates:
        return "no_code"
    key = code_key(settings)
    checks = [_code_matches(code, verification, key) for code in candidates]
    if None in checks:
        # Hashed under another key: no answer is right or wrong, and no attempt is counted.
        log.error("a one-time code was hashed with another key; instances must share "
                  "verification.key_file", extra={"ref": case.ref})
        cases.record_event(session, case, "dsr", "verification_failed",
                           reason="code hashed with another key")
        return "code_key_mismatch"
    matched = any(checks)
    sender = (from_address or "").strip().lower()
    if sender != (verification.sent_to or "").lower():
        # The right code from another address proves nothing about the requester; no attempt is
        # counted either (a stranger must not be able to use up the person's attempts).
        cases.record_event(session, case, ACTOR_REQUESTER if matched else "unknown",
                           "verification_failed", reason="code from another address",
                           code_matched=matched)
        return "code_wrong_sender"
    if verification.expires_at is not None and moment > verification.expires_at:
        cases.record_event(session, case, ACTOR_REQUESTER, "verification_failed",
                           reason="code expired")
        return "code_expired"
    if verification.attempts >= CODE_ATTEMPTS:
        cases.record_event(session, case, ACTOR_REQUESTER, "verification_failed",
                           reason="too many attempts")
        return "code_locked"
    if not matched:
        verification.attempts += 1
        session.add(verification)
        cases.record_event(session, case, ACTOR_REQUESTER, "verification_failed",
                           reason="wrong code", attempts=verification.attempts)
        return "code_wrong"
    verification.completed_at = moment
    verification.completed_by = ACTOR_REQUESTER
    session.add(verification)
    verify(session, settings, case.ref, VerificationMethod.EMAIL_CODE.value, ACTOR_REQUESTER,
           now=moment)
    return "verified"


@lru_cache(maxsize=8)
def _phrases_at(path: str, mtime: float) -> dict[str, tuple[str, ...]]:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return {name: tuple(fold_phrase(p) for p in table.get("phrases", ()))
            for name, table in data.items() if isinstance(table, dict)}


def fold_phrase(text: str) -> str:
    return " ".join(fold(text).split())


def reply_phrases(kind: str) -> tuple[str, ...]:
    """Phrases people write back to our mails (mail_templates/commands.toml), folded."""
    path = resources.find("mail_templates", "commands.toml")
    if path is None:
        return ()
    return _phrases_at(str(path), path.stat().st_mtime).get(kind, ())


def asks_to_resend(text: str) -> bool:
    folded = fold_phrase(text or "")
    return any(phrase and phrase in folded for phrase in reply_phrases("resend_code"))


def follow_up(session: Session, settings: Settings, case: Case, message: Message, *,
              from_address: str | None, subject: str, body: str, full_text: str = "",
              now: datetime | None = None) -> str:
    """A mail that follows up a case: it joins the case; from the requester it may carry the
    one-time code, ask for the code again, or ask for something more. Returns the outcome."""
    moment = _utc(now)
    message.case_id = case.id
    message.subject = mask_personal_numbers(subject) or None
    message.text = mask_personal_numbers(body)
    session.add(message)
    sender = (from_address or "").strip().lower()
    from_requester = bool(sender) and sender == (case.requester or "")
    outcomes: list[str] = []
    if from_requester and case.state not in ("closed", "rejected"):
        result = understand_text(body, subject="", default_language=case.language)
        new = [] if result.unclear else [i for i in result.intents if i not in json.loads(case.intents)]
        if new:
            org = settings.organization(case.org)
            added = cases.add_intents(session, case, new, ACTOR_REQUESTER, systems=org.systems,
                                      message=message.id)
            if added:
                outcomes.append("intent_added")
                lay_out_checklists(session, settings, case, added, ACTOR_REQUESTER)
                if (not case.verified and case.state in ("verified", "drafted", "answered")
                        and cases.needs_verification(json.loads(case.intents), settings)):
                    # An opt-out or a question needed no ID; what was added now does.
                    cases.require_verification(session, case, "dsr", added=added)
                    outcomes.append(resend_code(session, settings, case, now=moment))
                elif case.state in ("verified", "drafted", "answered"):
                    draft_for_case(session, settings, case)
                elif Intent.OPT_OUT.value in added:
                    draft_opt_out_confirmation(session, settings, case)
    if case.state == "awaiting_verification":
        candidates = code_candidates(body, full_text)
        if candidates:
            outcomes.append(try_code(session, settings, case, from_address=sender,
                                     candidates=candidates, now=moment))
        elif from_requester and asks_to_resend(body):
            outcomes.append(resend_code(session, settings, case, now=moment))
    cases.record_event(session, case, ACTOR_REQUESTER if from_requester else "unknown",
                       "message_linked", message=message.id, outcome=outcomes or ["linked"])
    return "+".join(outcomes) or "linked"


def approve(session: Session, settings: Settings, ref: str, by: str,
            edited_body: str | None = None, now: datetime | None = None) -> Draft:
    """Staff approval queues the mail in the same transaction: one outbox row per draft (its
    dedup key), so a second approval, or a retried one, sends nothing more."""
    draft = cases.approve_draft(session, ref, by, edited_body=edited_body, now=now)
    case = cases.get_case(session, ref)
    queue_mail(session, settings, case, subject=draft.subject, body=draft.body,
               dedup_key=f"draft:{draft.id}", draft=draft, now=now)
    return draft


# -- the review desk (Slack) ----------------------------------------------------------------------

# What a refused action raises; the desk catches it here without importing cases.
CaseError = cases.CaseError


def assign(session: Session, ref: str, assignee: str | None, by: str) -> Case:
    """Give the case to a staff member (a Slack user ID or a name), or to nobody."""
    return cases.assign(session, ref, assignee, by)


def record_refusal(session: Session, ref: str, actor: str, action: str) -> None:
    """Someone who is not an approver tried to act on the case: nothing changes but the trail."""
    cases.record_event(session, cases.get_case(session, ref), actor, "desk_refused", action=action)


def record_note(session: Session, ref: str, actor: str, text: str, ts: str | None = None) -> bool:
    """An internal note on the case (a reply in its card's thread); never sent to anyone. A note
    with a Slack ts is kept once (Slack retries an event it thinks was lost). True if kept."""
    case = cases.get_case(session, ref)
    if ts is not None:
        seen = session.execute(select(Event.id).where(
            Event.case_id == case.id, Event.kind == "note",
            Event.detail.like(f'%"ts": {json.dumps(ts)}%'))).first()
        if seen:
            return False
        cases.record_event(session, case, actor, "note", text=text, ts=ts)
    else:
        cases.record_event(session, case, actor, "note", text=text)
    return True


def edit_draft(session: Session, ref: str, body: str, by: str) -> Draft:
    """Staff's wording replaces the pending draft's body (not sent yet); what dsr wrote stays as
    the earlier version."""
    if not body.strip():
        raise CaseError("the edited draft is empty")
    case = cases.get_case(session, ref, for_update=True)
    if case.state == "closed":
        raise CaseError(f"case {case.ref} is closed")
    draft = cases.pending_draft(session, case)
    cases.keep_generated(draft, body)
    session.add(draft)
    cases.record_event(session, case, by, "draft_edited", draft=draft.id)
    return draft


def change_intents(session: Session, settings: Settings, ref: str, intents: list[str],
                   by: str) -> Case:
    """Staff correct what the request asks for; checklists for the new intents are laid out and
    a case that may have a reply gets one written anew."""
    known = [i for i in dict.fromkeys(intents) if i in {x.value for x in Intent}]
    if not known:
        raise CaseError("name at least one intent")
    case = cases.get_case(session, ref, for_update=True)
    if case.state in ("closed", "rejected", "answered"):
        raise CaseError(f"case {case.ref} is {case.state}")
    before = json.loads(case.intents)
    case.intents = json.dumps(known)
    case.unclear = False
    session.add(case)
    cases.record_event(session, case, by, "intents_changed", before=before, after=known)
    added = [i for i in known if i not in before]
    org = settings.organization(case.org)
    lay_out_checklists(session, settings, case, added, by)
    if "erasure" in added and not cases.erasure_tasks(session, case):
        cases.create_erasure_tasks(session, case, list(org.systems), by)
    if case.state in ("verified", "drafted"):
        draft_for_case(session, settings, case, actor=by)
    return case


def correct_requester(session: Session, ref: str, *, email: str | None, name: str | None,
                      by: str) -> Case:
    """Staff correct who the request is from (a chat note understood wrongly)."""
    case = cases.get_case(session, ref, for_update=True)
    if case.state in ("closed", "rejected", "answered"):
        raise CaseError(f"case {case.ref} is {case.state}")
    changed = []
    if email is not None and email.strip().lower() != (case.requester or ""):
        case.requester, changed = email.strip().lower() or None, changed + ["email"]
    if name is not None and name.strip() != (case.requester_name or ""):
        case.requester_name, changed = name.strip() or None, changed + ["name"]
    if changed:
        session.add(case)
        cases.record_event(session, case, by, "requester_corrected", fields=changed)
    return case


def note_message(session: Session, ref: str, message: Message, actor: str) -> Case:
    """A chat message naming a case joins it as an internal note."""
    case = cases.get_case(session, ref)
    message.case_id = case.id
    message.text = mask_personal_numbers(message.text or "")
    message.status = "processed"
    session.add(message)
    cases.record_event(session, case, actor, "note", message=message.id)
    return case


def evidence(session: Session, case: Case) -> dict[str, list[str]]:
    """Per intent, the words in the request that matched it (what the reviewer is shown)."""
    return reading(session, case)[0]


def reading(session: Session, case: Case) -> tuple[dict[str, list[str]], str]:
    """What the reviewer is shown of the classifier's reading: per intent the words that
    matched it, and, for a request it found no intent in, why it still went to a person
    ("written in Devanagari script", "request cue "gdpr" below the threshold"): the words are
    the lexicons' and the reasons the classifier's, never the mail's own text."""
    text = _request_text(session, case)
    if not text:
        return {}, ""
    result = understand_text(text, default_language=case.language or "nb")
    found = {score.intent: list(score.evidence)[:5] for score in result.scores
             if score.evidence and score.intent in result.intents}
    return found, "" if result.intents else result.triage


def open_refs(session: Session) -> list[str]:
    """Open cases, most urgent first (for the desk's lists)."""
    return [c.ref for c in sorted(
        (c for c in cases.list_cases(session) if c.state not in cases.FINISHED_STATES),
        key=lambda c: (c.due or date.max, c.id))]
