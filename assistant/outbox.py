"""The outbox sender: delivers queued mail to the relay (or a local Maildir), with retry.

`workflow` writes one outbox row per mail, in the same transaction as the change that calls for
it, under a unique dedup key (one acknowledgement per case, one row per approved draft). This
module only delivers rows:

- A row is claimed with one conditional UPDATE (``pending`` -> ``sending``, with a lease in
  ``next_attempt_at``), ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and that is committed before the
  relay is contacted, so no database lock is held during the network talk.
- It is marked ``sent`` only after the relay accepted it. A relay that refuses for now, or is down,
  puts the row back to ``pending`` with exponential backoff; a permanent refusal (5xx) marks it
  ``failed`` for a person. A sender that dies mid-delivery leaves the row ``sending``; when the
  lease runs out it is claimed again (at-least-once: the relay may then see the same Message-ID
  twice, the only case where a mail can be doubled).
- Without a relay (`outbound.host` unset) the mail is written to the Maildir `outbound.maildir`;
  a local file write, so claim, write and `sent` are one transaction and no lease is needed.
- Delivering an approved reply makes the case ``answered`` (cases.mark_delivered); every other mail
  about a case is an audit event.
- Slack rows (kind ``slack``, written by the review desk and the scheduler) hold the JSON
  ``{"method": "chat.postMessage" | "chat.update", "args": {...}}`` and are delivered by
  `deliver_slack` through slack_sdk's WebClient at ``slack.api_url``, with the same claim, lease and
  backoff; a 429 puts the row back until its Retry-After has passed. The answer of a post (its
  ``channel`` and ``ts``) is kept in the payload under ``"response"``, so a card can be updated in
  place. A card update overtaken by a newer update of the same card is skipped.
"""

from __future__ import annotations

import json
import logging
import mailbox
import smtplib
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from . import cases
from .config import Settings
from .store import gate as write_gate
from .store.db import session_scope
from .store.models import Case, Draft, Message, Outbox, utcnow

log = logging.getLogger("dsr.outbox")

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 60  # with the backoff capped at an hour: about two and a half days of trying


class TemporaryFailure(Exception):
    """The relay could not take the mail now; try again later."""


class PermanentFailure(Exception):
    """The relay refused the mail for good (5xx); a person must look at it."""


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


SLACK_METHODS = ("chat.postMessage", "chat.update")
# A card's rows (the post, then its updates) share this dedup key prefix: slack:card:<case id>
CARD_KEY = "slack:card:"


def claim_next(session: Session, now: datetime, lease: timedelta = LEASE,
               kind: str = "email") -> Outbox | None:
    """Claim the next due row of `kind` (or one whose sender died) for `lease`; None when none."""
    if kind not in ("email", "slack"):
        raise ValueError(f"unknown outbox kind {kind!r}")
    postgres = session.get_bind().dialect.name == "postgresql"
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    row = session.execute(text(
        "UPDATE outbox SET state = :sending, attempts = attempts + 1, next_attempt_at = :until"
        " WHERE state IN (:pending, :sending) AND id = ("
        " SELECT id FROM outbox WHERE kind = :kind AND state IN (:pending, :sending)"
        f" AND next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT 1{lock}) RETURNING id"
    ), {"sending": SENDING, "pending": PENDING, "now": _naive(now), "kind": kind,
        "until": _naive(now + lease)}).first()
    if row is None:
        return None
    return session.get(Outbox, row[0], populate_existing=True)


def envelope_sender(session: Session, row: Outbox) -> str:
    kept = session.execute(select(Message.envelope_from).where(
        Message.dedup_key == f"out:{row.dedup_key}"[:512])).scalar()
    return kept or ""


class Sender:
    """Delivers due outbox rows until stopped."""

    def __init__(self, engine: Engine, settings: Settings, *, base_delay: float = 30.0,
                 max_delay: float = 3600.0, poll_seconds: float = 1.0, timeout: float = 30.0,
                 lease: timedelta = LEASE, gate: write_gate.WriteGate | None = None) -> None:
        self.engine, self.settings, self.gate = engine, settings, gate
        self._flow = write_gate.Flow(gate)  # its watch on the listener, from one pass to the next
        self.base_delay, self.max_delay = base_delay, max_delay
        self.poll_seconds, self.timeout, self.lease = poll_seconds, timeout, lease
        self._wake = threading.Event()
        self._slack_client: object | None = None

    # -- transport -------------------------------------------------------------------------------

    def deliver(self, payload: bytes, sender: str, recipient: str) -> None:
        """Hand one mail to the relay, or write it to the Maildir when no relay is configured."""
        out = self.settings.outbound
        if not out.host:
            folder = self.settings.resolve_path(out.maildir) or Path(out.maildir)
            try:
                mailbox.Maildir(str(folder), create=True).add(payload)
            except OSError as exc:
                raise TemporaryFailure(f"maildir: {type(exc).__name__}") from None
            return
        options = ["SMTPUTF8"] if not (sender.isascii() and recipient.isascii()) else []
        try:
            with smtplib.SMTP(out.host, out.port, timeout=self.timeout) as smtp:
                if out.starttls:
                    smtp.starttls()
                if out.username:
                    smtp.login(out.username, out.password or "")
                smtp.sendmail(sender, [recipient], payload, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise _by_code(min(codes) if codes else 451, "recipient refused") from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise _by_code(exc.smtp_code, type(exc).__name__) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(f"authentication refused ({exc.smtp_code})") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(type(exc).__name__) from None

    # -- one row ---------------------------------------------------------------------------------

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1)))

    def send_one(self, now: datetime | None = None) -> str | None:
        """Claim one due row and deliver it; its new state, or None when nothing is due."""
        moment = now or utcnow()
        if not self.settings.outbound.host:
            return self._send_local(moment)
        with write_gate.background(self.gate), session_scope(self.engine) as session:
            row = claim_next(session, moment, self.lease)
            if row is None:
                return None
            row_id, attempts = row.id, row.attempts
            payload, recipient = row.payload, row.recipient or ""
            sender = envelope_sender(session, row)
        try:
            self.deliver(payload, sender, recipient)
        except PermanentFailure as exc:
            return self._settle(row_id, attempts, FAILED, str(exc), moment)
        except TemporaryFailure as exc:
            if attempts >= MAX_ATTEMPTS:
                return self._settle(row_id, attempts, FAILED, f"gave up: {exc}", moment)
            return self._settle(row_id, attempts, PENDING, str(exc), moment)
        return self._settle(row_id, attempts, SENT, None, moment)

    def _send_local(self, moment: datetime) -> str | None:
        """To the local Maildir: a file write, so claim, write and mark sent in one transaction
        (no lease to wait out after a crash; a crash between the write and the commit writes
        the same mail, same Message-ID, again)."""
        with write_gate.background(self.gate), session_scope(self.engine) as session:
            row = claim_next(session, moment, self.lease)
            if row is None:
                return None
            try:
                self.deliver(row.payload, "", row.recipient or "")
            except (TemporaryFailure, PermanentFailure) as exc:
                permanent = isinstance(exc, PermanentFailure) or row.attempts >= MAX_ATTEMPTS
                row.state, row.last_error = (FAILED if permanent else PENDING), str(exc)
                if not permanent:
                    row.next_attempt_at = moment + self.backoff(row.attempts)
            else:
                row.state, row.last_error, row.sent_at = SENT, None, utcnow()
                self._record_delivery(session, row)
            session.add(row)
            row_id, attempts, state, error = row.id, row.attempts, row.state, row.last_error
        self._log(row_id, attempts, state, error)
        return state

    def _settle(self, row_id: int, attempts: int, state: str, error: str | None,
                moment: datetime, *, retry_at: datetime | None = None, what: str = "mail",
                response: dict | None = None) -> str:
        with write_gate.background(self.gate), session_scope(self.engine) as session:
            row = session.execute(select(Outbox).where(Outbox.id == row_id).with_for_update()
                                  ).scalars().one()
            if row.state != SENDING or row.attempts != attempts:
                # The lease ran out and another sender took it over: its word counts.
                return row.state
            row.state, row.last_error = state, error
            if state == PENDING:
                row.next_attempt_at = retry_at or (moment + self.backoff(attempts))
            if state == SENT:
                row.sent_at = utcnow()
                if row.kind == "slack":
                    kept = json.loads(row.payload)
                    kept["response"] = response or {}
                    row.payload = json.dumps(kept, ensure_ascii=False).encode()
                else:
                    self._record_delivery(session, row)
            session.add(row)
        self._log(row_id, attempts, state, error, what)
        return state

    @staticmethod
    def _log(row_id: int, attempts: int, state: str, error: str | None, what: str = "mail") -> None:
        extra = {"outbox": row_id, "attempts": attempts, "state": state}
        if state == SENT:
            log.info(f"{what} delivered", extra=extra)
        elif state == PENDING:
            log.warning(f"{what} delayed", extra=extra | {"error": error})
        else:
            log.error(f"{what} failed", extra=extra | {"error": error})

    @staticmethod
    def _record_delivery(session: Session, row: Outbox) -> None:
        kept = session.execute(select(Message).where(
            Message.dedup_key == f"out:{row.dedup_key}"[:512])).scalars().first()
        if kept is not None:
            kept.status = SENT
            session.add(kept)
            # What stays in the outbox after delivery is the kept copy: a one-time code in the
            # payload was only needed until the relay had it.
            row.payload = kept.raw
        if row.case_id is not None:
            case = session.get(Case, row.case_id)
            draft = session.get(Draft, row.draft_id) if row.draft_id is not None else None
            if case is not None:
                cases.mark_delivered(session, case, draft=draft, outbox_id=row.id)

    # -- loop ------------------------------------------------------------------------------------

    def send_due(self, now: datetime | None = None, limit: int | None = None,
                 stop: threading.Event | None = None) -> int:
        """Deliver what is due (mail, then Slack when Slack is on); how many rows were handled
        (sent, delayed or failed)."""
        done = 0
        flow = self._flow
        for send in (self.send_one, self.send_slack_one):
            if send is self.send_slack_one and not self.settings.slack.enabled:
                break
            while limit is None or done < limit:
                if stop is not None and stop.is_set():
                    break
                if flow.give_way(stop):  # the SMTP listener first in a flood
                    continue
                if send(now) is None:
                    break
                done += 1
        return done

    # -- Slack -----------------------------------------------------------------------------------

    def slack_client(self) -> object:
        if self._slack_client is None:
            from slack_sdk import WebClient

            slack = self.settings.slack
            self._slack_client = WebClient(token=slack.bot_token, base_url=slack.api_url,
                                           timeout=int(self.timeout))
        return self._slack_client

    def send_slack_one(self, now: datetime | None = None) -> str | None:
        """Claim one due Slack row and deliver it; its new state, or None when nothing is due."""
        moment = now or utcnow()
        with write_gate.background(self.gate), session_scope(self.engine) as session:
            row = claim_next(session, moment, self.lease, kind="slack")
            if row is None:
                return None
            row_id, attempts, payload = row.id, row.attempts, row.payload
            if _overtaken(session, row):
                row.state, row.last_error, row.sent_at = SENT, "overtaken by a newer update", utcnow()
                session.add(row)
                log.info("slack update skipped", extra={"outbox": row_id, "why": "overtaken"})
                return SENT
        try:
            response = deliver_slack(self.slack_client(), payload)
        except SlackRateLimited as exc:
            retry_at = moment + timedelta(seconds=exc.retry_after)
            return self._settle(row_id, attempts, PENDING, str(exc), moment, retry_at=retry_at,
                                what="slack")
        except PermanentFailure as exc:
            return self._settle(row_id, attempts, FAILED, str(exc), moment, what="slack")
        except TemporaryFailure as exc:
            if attempts >= MAX_ATTEMPTS:
                return self._settle(row_id, attempts, FAILED, f"gave up: {exc}", moment,
                                    what="slack")
            return self._settle(row_id, attempts, PENDING, str(exc), moment, what="slack")
        return self._settle(row_id, attempts, SENT, None, moment, what="slack", response=response)

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                self.send_due(stop=stop)
            except OperationalError:
                log.warning("database unavailable; retrying")
            except Exception as exc:  # noqa: BLE001
                log.error("sender step failed", extra={"error": type(exc).__name__})
            if stop.is_set():
                break
            self._wake.wait(self.poll_seconds)


def _by_code(code: int | None, what: str) -> Exception:
    if code is not None and 500 <= code < 600:
        return PermanentFailure(f"{what} ({code})")
    return TemporaryFailure(f"{what} ({code})")


class SlackRateLimited(TemporaryFailure):
    """Slack answered 429: try again once Retry-After has passed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited (retry after {retry_after} s)")
        self.retry_after = retry_after


# Slack errors that a later try may get past; any other `ok: false` needs a person.
_SLACK_TEMPORARY = {"ratelimited", "service_unavailable", "internal_error", "fatal_error",
                    "request_timeout"}


def deliver_slack(client: object, payload: bytes) -> dict:
    """Make the one Web API call an outbox row holds; {"channel", "ts"} of what Slack answered.
    Raises SlackRateLimited on 429, TemporaryFailure when Slack is down or answers 5xx, and
    PermanentFailure for a row Slack refuses for good (an unknown channel, a bad token)."""
    from slack_sdk.errors import SlackApiError, SlackClientError

    try:
        data = json.loads(payload)
        method, args = data["method"], dict(data["args"])
    except (ValueError, KeyError, TypeError):
        raise PermanentFailure("slack: the row is not {method, args} JSON") from None
    if method not in SLACK_METHODS:
        raise PermanentFailure(f"slack: method {method!r} is not delivered from the outbox")
    try:
        answer = client.api_call(method, json=args)  # type: ignore[attr-defined]
    except SlackApiError as exc:
        status = exc.response.status_code
        if status == 429:
            raw = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
            try:
                wait = max(1, int(raw if not isinstance(raw, list) else raw[0]))
            except (TypeError, ValueError):
                wait = 30
            raise SlackRateLimited(wait) from None
        error = str(exc.response.get("error") or status)
        if status >= 500 or error in _SLACK_TEMPORARY:
            raise TemporaryFailure(f"slack: {error}") from None
        raise PermanentFailure(f"slack: {error}") from None
    except (SlackClientError, OSError, TimeoutError) as exc:
        raise TemporaryFailure(f"slack: {type(exc).__name__}") from None
    return {"channel": answer.get("channel"), "ts": answer.get("ts")}


def _overtaken(session: Session, row: Outbox) -> bool:
    """A card update with a newer update of the same card queued after it is not worth sending
    (it would show an older state of the case)."""
    if not row.dedup_key.startswith(CARD_KEY) or row.dedup_key.count(":") < 3:
        return False
    card = row.dedup_key.rsplit(":", 1)[0]
    newer = session.execute(select(Outbox.id).where(
        Outbox.kind == "slack", Outbox.id > row.id,
        Outbox.dedup_key.like(card.replace("%", "") + ":%"))).first()
    return newer is not None
