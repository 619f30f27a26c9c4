"""The one vocabulary: every name a case, a message or a lexicon may use, defined once.

Copies of these lists drifted apart (a reply prefix known to the lexicons but not to the learned
model, eight intents typed out in six modules), so each list lives here and everything else
imports it; tests/test_vocabulary.py fails when a lexicon, policy, template, CLI option, the
README or cases.py names a value that is missing here.

The enums are StrEnums: a member *is* its string, so the database, JSON output and templates keep
the plain values ("access", "awaiting_verification") and no schema changes. This module imports
nothing else of the package, so any module may import it.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Intent(StrEnum):
    """What a data subject asks for (GDPR Art. 15-21), plus a question about the policy."""

    ACCESS = "access"
    ERASURE = "erasure"
    PORTABILITY = "portability"
    OPT_OUT = "opt_out"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    QUESTION = "question"


# Plain strings, in the order the classifier, the learned model and the reports have always used.
INTENTS: tuple[str, ...] = tuple(intent.value for intent in Intent)

# Rights in the order of the GDPR articles, so a reply covering several reads like the law.
RIGHTS_ORDER: tuple[str, ...] = tuple(intent.value for intent in (
    Intent.ACCESS, Intent.RECTIFICATION, Intent.ERASURE, Intent.RESTRICTION,
    Intent.PORTABILITY, Intent.OBJECTION, Intent.OPT_OUT, Intent.QUESTION,
))


class CaseState(StrEnum):
    """Where a case is; cases.TRANSITIONS says which moves between them are allowed."""

    RECEIVED = "received"
    AWAITING_VERIFICATION = "awaiting_verification"
    VERIFIED = "verified"
    DRAFTED = "drafted"
    APPROVED = "approved"
    ANSWERED = "answered"
    CLOSED = "closed"
    REJECTED = "rejected"


STATES: tuple[str, ...] = tuple(state.value for state in CaseState)


class Channel(StrEnum):
    """How a request reached us. imap and smtp are the email listeners, import is a backfill by
    `dsr import`; the others are what staff log by hand (`dsr cases new --channel`)."""

    PHONE = "phone"
    CHAT = "chat"
    LETTER = "letter"
    IN_PERSON = "in_person"
    EMAIL = "email"
    SLACK = "slack"
    IMAP = "imap"
    SMTP = "smtp"
    IMPORT = "import"


# The channels a person can name when logging a request; the listeners record imap/smtp.
STAFF_CHANNELS: tuple[str, ...] = tuple(channel.value for channel in (
    Channel.PHONE, Channel.CHAT, Channel.LETTER, Channel.IN_PERSON, Channel.EMAIL, Channel.SLACK,
))


class VerificationMethod(StrEnum):
    """How the requester's identity was checked; never by keeping a copy of an ID document."""

    EMAIL_CODE = "email_code"
    KNOWN_CHANNEL = "known_channel"
    ID_DOCUMENT_SEEN = "id_document_seen"
    NOT_REQUIRED = "not_required"  # set by the engine for a request that discloses nothing


# What staff may record (`dsr cases verify --method`); not_required is never chosen by a person.
STAFF_VERIFICATION_METHODS: tuple[str, ...] = tuple(
    method.value for method in VerificationMethod if method is not VerificationMethod.NOT_REQUIRED
)


class EventKind(StrEnum):
    """The kinds of audit events; the audit trail is read by people and scripts, so a kind is
    never made up on the spot."""

    OPENED = "opened"
    VERIFICATION_REQUESTED = "verification_requested"
    VERIFICATION_SKIPPED = "verification_skipped"
    VERIFIED = "verified"
    EXTENDED = "extended"
    CLOSED = "closed"
    REOPENED = "reopened"
    DRAFTED = "drafted"
    APPROVED = "approved"
    REJECTED = "rejected"
    NOTICE_APPROVED = "notice_approved"
    NOTICE_REJECTED = "notice_rejected"
    ERASURE_CHECKLIST = "erasure_checklist"
    ERASURE_DONE = "erasure_done"
    ERASURE_KEPT = "erasure_kept"
    ERASURE_SUPPRESSED = "erasure_suppressed"
    # The access collection and the marketing suppression checklists (Art. 15(3), 21(3)).
    CHECKLIST = "checklist"  # a checklist was laid out for the case
    COLLECTED = "collected"  # one system's data collected for the copy (or none held there)
    MARKETING_STOPPED = "marketing_stopped"  # one system suppressed for marketing
    RECTIFIED = "rectified"  # staff recorded what was corrected (Art. 16); the reply states it
    # The email channel: what reached the requester and what came back from them.
    ACKNOWLEDGED = "acknowledged"  # receipt (with a one-time code when ID is needed) queued
    ACKNOWLEDGEMENT_SKIPPED = "acknowledgement_skipped"  # imported mail already past its due date
    CODE_RESENT = "code_resent"
    VERIFICATION_FAILED = "verification_failed"  # a wrong, expired or misdirected code
    MESSAGE_LINKED = "message_linked"  # a follow-up mail joined its case
    # Staff opened the case from a mail that had opened none (`dsr messages open`).
    OPENED_FROM_MESSAGE = "opened_from_message"
    INTENT_ADDED = "intent_added"  # a follow-up asked for something more
    MAIL_SENT = "mail_sent"  # the relay (or the Maildir) took a mail about the case
    ANSWERED = "answered"  # the approved reply was delivered
    # The scheduler: deadlines in motion.
    ESCALATION = "escalation"  # one step of the escalation ladder (detail: step, due, to, as_of)
    DEADLINE_MOVED = "deadline_moved"  # the working-day calendar changed under an open case
    # The Slack review desk.
    DRAFT_EDITED = "draft_edited"  # staff changed a pending draft; dsr's text stays as version 1
    INTENTS_CHANGED = "intents_changed"  # staff corrected what the request asks for; redrafted
    DESK_REFUSED = "desk_refused"  # someone who is not an approver tried to act on the case
    REQUESTER_CORRECTED = "requester_corrected"  # staff corrected the name or address understood
    NOTE = "note"  # an internal note (a reply in the card's thread); never sent to the requester
    ASSIGNED = "assigned"  # the case was given to a staff member (or taken back: assignee none)


# `messages.auto` of a message the classifier is sure asks for nothing: intake sets it, the
# digest counts it, `dsr messages` lists it.
NOT_A_REQUEST = "not-a-request"


class ClockMode(StrEnum):
    """Whether the deadline clock waits for ID: EU guidance is unsettled, so it is a setting
    (`cases.verification_clock`); deadlines.clock_start is the one rule that applies it."""

    RUNS = "runs"  # counts from receipt (default; the cautious reading of Art. 12(3))
    FROM_VERIFICATION = "from_verification"  # the UK ICO reading: counts once ID is verified


# Subject prefixes of a reply or forward in the mail clients our senders use: Re (en), SV/VS
# (nb/nn/da/sv Outlook: svar, videresendt), VB (sv: vidarebefordrat), AW (de), Fw/Fwd,
# TR (fr: transféré), Antw (nl), Videresend (Gmail nb). A reply's subject was written by whoever
# started the thread, so it says nothing about what the sender asks now.
REPLY_PREFIXES: tuple[str, ...] = (
    "re", "sv", "aw", "vs", "fw", "fwd", "tr", "antw", "vb", "videresend",
)
# One or more prefixes, each optionally counted ("Re[2]:") and followed by a colon:
# "SV: SV: Re: innsyn". Every reader of subjects uses this one object.
REPLY_PREFIX_RE: re.Pattern[str] = re.compile(
    r"^\s*(?:(?:" + "|".join(sorted(REPLY_PREFIXES, key=len, reverse=True))
    + r")\s*(?:\[\d+\])?\s*:\s*)+",
    re.IGNORECASE,
)


def is_reply_subject(subject: str) -> bool:
    """True when the subject starts with a reply or forward prefix ("VB: Innsyn")."""
    return REPLY_PREFIX_RE.match(subject or "") is not None


def strip_reply_prefixes(subject: str) -> str:
    """The subject without its leading reply/forward prefixes ("SV: Re: Innsyn" -> "Innsyn")."""
    return REPLY_PREFIX_RE.sub("", subject or "", count=1)

# A Slack user ID ("U…", or "W…" on Enterprise Grid): an assignee that Slack can mention.
SLACK_USER_RE: re.Pattern[str] = re.compile(r"^[UW][A-Z0-9]{2,}$")
