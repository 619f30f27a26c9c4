"""The Bolt app: buttons, modals, `/dsr`, App Home and chat notes, all acting through workflow.

Every listener acknowledges first (Slack wants an answer within 3 seconds; Bolt runs the rest of
the listener after the ack, `process_before_response=False`) and then does its work in a fresh
database session of its own. Only approvers (user IDs, or user group IDs resolved through
usergroups.users.list and cached) reach the listeners that act; a click by anyone else falls
through to a listener that refuses with an ephemeral message and an audit event. Whatever changed,
the card is brought up to date through the outbox (cards.sync_card), never posted directly.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy.engine import Engine

from ... import desk, workflow
from ...config import Settings
from ...logs import get_logger
from ...store import gate as write_gate
from ...store.db import session_scope
from ...vocabulary import INTENTS, STAFF_CHANNELS, STAFF_VERIFICATION_METHODS
from . import cards
from . import intake as chat

log = get_logger("slack")

GROUP_CACHE_SECONDS = 300.0
# What a modal's plain text input may hold.
INPUT_LIMIT = 3000
DUE_SOON_WORKING_DAYS = 7


def actor(user_id: str) -> str:
    return f"slack:{user_id}"


class Approvers:
    """Who may act: `slack.approvers` user IDs, and members of the user groups (IDs "S…") named
    there, looked up through the API and kept for a few minutes."""

    def __init__(self, settings: Settings, client: WebClient) -> None:
        self.ids = list(settings.slack.approvers)
        self.client = client
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def _members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._groups.get(group)
            if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
                return cached[1]
        try:
            users = frozenset(self.client.usergroups_users_list(usergroup=group).get("users") or ())
        except Exception as exc:  # noqa: BLE001 - an unreachable API grants nothing
            log.warning("user group lookup failed", extra={"group": group,
                                                           "error": type(exc).__name__})
            return cached[1] if cached else frozenset()
        with self._lock:
            self._groups[group] = (time.monotonic(), users)
        return users

    def allows(self, user_id: str | None) -> bool:
        if not user_id:
            return False
        if user_id in self.ids:
            return True
        return any(user_id in self._members(g) for g in self.ids if g.startswith("S"))


EDIT_PARTS = 10


def split_for_inputs(text: str, limit: int = INPUT_LIMIT) -> list[str]:
    """A draft in pieces a modal's text inputs can hold, cut at line ends; joined with newlines
    they give the draft back."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        while len(line) > limit:  # one very long line: cut it where it must be
            if current:
                parts.append("\n".join(current))
                current, size = [], 0
            parts.append(line[:limit])
            line = line[limit:]
        if current and size + 1 + len(line) > limit:
            parts.append("\n".join(current))
            current, size = [], 0
        size += len(line) + (1 if current else 0)
        current.append(line)
    parts.append("\n".join(current))
    return parts


def _user(body: dict[str, Any]) -> str | None:
    return (body.get("user") or {}).get("id") or body.get("user_id")


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text[:75]}


def _input(block_id: str, label: str, element: dict[str, Any], optional: bool = False) -> dict:
    return {"type": "input", "block_id": block_id, "label": _plain(label), "element": element,
            "optional": optional}


def _text_input(action_id: str = "value", initial: str | None = None,
                multiline: bool = True) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id,
                               "multiline": multiline, "max_length": INPUT_LIMIT}
    if initial:
        element["initial_value"] = initial[:INPUT_LIMIT]
    return element


def _options(values: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    return [{"text": _plain(v), "value": v} for v in values]


def _modal(callback_id: str, title: str, ref: str, blocks: list[dict], submit: str) -> dict:
    return {"type": "modal", "callback_id": callback_id, "title": _plain(title[:24]),
            "submit": _plain(submit), "close": _plain("Cancel"),
            "private_metadata": ref, "blocks": blocks}


def _value(view: dict[str, Any], block_id: str) -> Any:
    element = view["state"]["values"][block_id]["value"]
    kind = element.get("type")
    if kind == "static_select":
        return (element.get("selected_option") or {}).get("value")
    if kind == "multi_static_select":
        return [o["value"] for o in element.get("selected_options") or []]
    if kind == "datetimepicker":
        return element.get("selected_date_time")
    if kind == "datepicker":
        return element.get("selected_date")
    return element.get("value")


class Desk:
    """The Bolt app and what its listeners share: settings, the database, the approvers."""

    def __init__(self, settings: Settings, engine: Engine, *, client: WebClient | None = None,
                 on_change: Callable[[], None] | None = None,
                 gate: write_gate.WriteGate | None = None) -> None:
        self.settings, self.engine, self.gate = settings, engine, gate
        slack = settings.slack
        self.client = client or WebClient(token=slack.bot_token, base_url=slack.api_url)
        self.on_change = on_change or (lambda: None)
        self.approvers = Approvers(settings, self.client)
        self.app = App(client=self.client, signing_secret=slack.signing_secret or "",
                       process_before_response=False,
                       # auth.test on the first request, not at start: the service starts (and
                       # mail keeps flowing) while Slack is unreachable.
                       token_verification_enabled=False,
                       request_verification_enabled=not slack.app_token)
        self._register()

    # -- helpers ---------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A fresh write session; on SQLite it takes its turn at the service's write gate ahead
        of the background stages (a person is waiting)."""
        with write_gate.urgent(self.gate), session_scope(self.engine) as session:
            yield session

    def is_approver(self, body: dict[str, Any]) -> bool:
        return self.approvers.allows(_user(body))

    def tell(self, user: str | None, text: str, channel: str | None = None) -> None:
        """An ephemeral word to one person (not durable, so not through the outbox)."""
        channel = channel or self.settings.slack.review_channel
        if not user or not channel:
            return
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except Exception as exc:  # noqa: BLE001
            log.warning("ephemeral message failed", extra={"error": type(exc).__name__})

    def act(self, ref: str, user: str | None, what: str, action: Callable[[Any], Any],
            channel: str | None = None) -> bool:
        """Run one case action in a fresh session, then bring the card up to date. A refused
        action (an illegal transition, a second approval) is told to the person; nothing else."""
        try:
            with self.write() as session:
                action(session)
                session.flush()
                # The card's update is queued in the same transaction as the change it shows.
                cards.sync_card(session, self.settings, ref)
        except workflow.CaseError as exc:
            log.info("desk action refused", extra={"ref": ref, "action": what})
            self.tell(user, f"{ref}: {exc}", channel)
            return False
        self.on_change()
        log.info("desk action", extra={"ref": ref, "action": what, "by": actor(user or "?")})
        return True

    def refuse(self, body: dict[str, Any], what: str, ref: str | None) -> None:
        user = _user(body)
        if ref:
            try:
                with self.write() as session:
                    workflow.record_refusal(session, ref, actor(user or "?"), what)
            except workflow.CaseError:
                pass
        log.warning("desk action refused: not an approver", extra={"action": what})
        channel = (body.get("channel") or {}).get("id") if isinstance(body.get("channel"), dict) \
            else body.get("channel_id")
        self.tell(user, "Only the approvers named in the dsr configuration may do that.", channel)

    def open_modal(self, body: dict[str, Any], view: dict[str, Any]) -> None:
        self.client.views_open(trigger_id=body["trigger_id"], view=view)

    # -- listeners -------------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        approver = [lambda body: self.is_approver(body)]

        @app.action("dsr_approve", matchers=approver)
        def approve(ack, body, action):  # noqa: ANN001
            ack()
            ref, user = action["value"], _user(body)
            self.act(ref, user, "approve", lambda s: workflow.approve(
                s, self.settings, ref, by=actor(user)))

        @app.action("dsr_edit", matchers=approver)
        def edit(ack, body, action):  # noqa: ANN001
            ack()
            ref = action["value"]
            with session_scope(self.engine, write=False) as session:
                view = desk.desk_view(session, self.settings, ref)
            pending = [d for d in view["drafts"] if d["state"] == "pending"]
            if not pending:
                self.tell(_user(body), f"{ref} has no draft waiting for review.")
                return
            parts = split_for_inputs(pending[0]["body"])
            if len(parts) > EDIT_PARTS:
                self.tell(_user(body), f"{ref}: the draft is too long to edit in Slack; use "
                          f"`dsr drafts approve {ref} --edit-file F`.")
                return
            self.open_modal(body, _modal("dsr_edit_modal", f"Edit {ref}", ref, [
                _input(f"body_{n}", "The reply" if n == 0 else f"The reply, part {n + 1}",
                       _text_input(initial=part), optional=n > 0)
                for n, part in enumerate(parts)], "Save"))

        @app.action("dsr_reject", matchers=approver)
        def reject(ack, body, action):  # noqa: ANN001
            ack()
            ref = action["value"]
            self.open_modal(body, _modal("dsr_reject_modal", f"Reject {ref}", ref, [
                _input("reason", "Why (the requester is told)", _text_input())], "Reject"))

        @app.action("dsr_extend", matchers=approver)
        def extend(ack, body, action):  # noqa: ANN001
            ack()
            ref = action["value"]
            self.open_modal(body, _modal("dsr_extend_modal", f"Extend {ref}", ref, [
                _input("reason", "Why more time is needed", _text_input())], "Extend"))

        @app.action("dsr_verify", matchers=approver)
        def verify(ack, body, action):  # noqa: ANN001
            ack()
            ref = action["value"]
            self.open_modal(body, _modal("dsr_verify_modal", f"Verify {ref}", ref, [
                _input("method", "How the identity was checked", {
                    "type": "static_select", "action_id": "value",
                    "options": _options(STAFF_VERIFICATION_METHODS)})], "Verified"))

        @app.action("dsr_intents", matchers=approver)
        def intents(ack, body, action):  # noqa: ANN001
            ack()
            ref = action["value"]
            self.open_modal(body, _modal("dsr_intents_modal", f"Intents {ref}", ref, [
                _input("intents", "What the person asks for", {
                    "type": "multi_static_select", "action_id": "value",
                    "options": _options(INTENTS)})], "Redraft"))

        @app.action("dsr_assign", matchers=approver)
        def assign(ack, body, action):  # noqa: ANN001
            ack()
            ref, user = action["value"], _user(body)
            self.act(ref, user, "assign", lambda s: workflow.assign(s, ref, user, by=actor(user)))

        @app.action(re.compile(f"^{cards.TICK}:"), matchers=approver)
        def tick(ack, body, action):  # noqa: ANN001
            ack()
            item, user = json.loads(action["value"]), _user(body)
            self.act(item["ref"], user, "tick", lambda s: workflow.tick(
                s, self.settings, item["ref"], item["kind"], item["system"], item["outcome"],
                by=actor(user)))

        @app.action(re.compile(f"^{cards.SETTLE}:"), matchers=approver)
        def settle(ack, body, action):  # noqa: ANN001
            ack()
            item, user = json.loads(action["value"]), _user(body)
            self.act(item["ref"], user, "settle", lambda s: workflow.settle(
                s, self.settings, item["ref"], item["system"], item["outcome"], by=actor(user)))

        @app.action(re.compile(f"^{cards.KEEP}:"), matchers=approver)
        def keep(ack, body, action):  # noqa: ANN001
            ack()
            item = json.loads(action["value"])
            self.open_modal(body, _modal(
                "dsr_keep_modal", "Kept by law", json.dumps(item), [
                    _input("law", "The provision (e.g. bokføringsloven § 13)",
                           _text_input(multiline=False)),
                    _input("until", "Kept until", {"type": "datepicker", "action_id": "value"}),
                ], "Settle"))

        @app.action("dsr_requester", matchers=approver)
        def requester(ack, body, action):  # noqa: ANN001
            ack()
            ref = action["value"]
            self.open_modal(body, _modal("dsr_requester_modal", f"Requester {ref}", ref, [
                _input("name", "Name", _text_input(multiline=False), True),
                _input("email", "Email", {"type": "email_text_input", "action_id": "value"},
                       True)], "Save"))

        @app.action("dsr_show")
        def show(ack, body, action, respond):  # noqa: ANN001
            ack()
            respond(response_type="ephemeral", replace_original=False,
                    **self.case_message(action["value"]))

        @app.action(re.compile("^dsr_"))
        def refused(ack, body, action):  # noqa: ANN001
            ack()
            value = action.get("value") or ""
            ref = json.loads(value)["ref"] if value.startswith("{") else value
            self.refuse(body, action["action_id"].split(":")[0], ref or None)

        # -- modals ------------------------------------------------------------------------------

        def required(view: dict[str, Any], block: str, ack: Callable[..., None]) -> str | None:
            value = (_value(view, block) or "").strip()
            if not value:
                ack(response_action="errors", errors={block: "Required."})
                return None
            return value

        @app.view("dsr_edit_modal", matchers=approver)
        def edited(ack, body, view):  # noqa: ANN001
            blocks = sorted((b for b in view["state"]["values"] if b.startswith("body_")),
                            key=lambda b: int(b.split("_")[1]))
            text = "\n".join(_value(view, b) or "" for b in blocks).strip("\n")
            if not text.strip():
                ack(response_action="errors", errors={"body_0": "Required."})
                return
            ack()
            ref, user = view["private_metadata"], _user(body)
            self.act(ref, user, "edit", lambda s: workflow.edit_draft(s, ref, text, actor(user)))

        @app.view("dsr_reject_modal", matchers=approver)
        def rejected(ack, body, view):  # noqa: ANN001
            reason = required(view, "reason", ack)
            if reason is None:
                return
            ack()
            ref, user = view["private_metadata"], _user(body)
            self.act(ref, user, "reject", lambda s: workflow.reject(
                s, self.settings, ref, reason, by=actor(user)))

        @app.view("dsr_extend_modal", matchers=approver)
        def extended(ack, body, view):  # noqa: ANN001
            reason = required(view, "reason", ack)
            if reason is None:
                return
            ack()
            ref, user = view["private_metadata"], _user(body)
            self.act(ref, user, "extend", lambda s: workflow.extend(
                s, self.settings, ref, reason, by=actor(user)))

        @app.view("dsr_verify_modal", matchers=approver)
        def verified(ack, body, view):  # noqa: ANN001
            method = required(view, "method", ack)
            if method is None:
                return
            ack()
            ref, user = view["private_metadata"], _user(body)
            self.act(ref, user, "verify", lambda s: workflow.verify(
                s, self.settings, ref, method, by=actor(user)))

        @app.view("dsr_intents_modal", matchers=approver)
        def changed(ack, body, view):  # noqa: ANN001
            chosen = _value(view, "intents") or []
            if not chosen:
                ack(response_action="errors", errors={"intents": "Choose at least one."})
                return
            ack()
            ref, user = view["private_metadata"], _user(body)
            self.act(ref, user, "intents", lambda s: workflow.change_intents(
                s, self.settings, ref, chosen, by=actor(user)))

        @app.view("dsr_keep_modal", matchers=approver)
        def kept(ack, body, view):  # noqa: ANN001
            law = required(view, "law", ack)
            if law is None:
                return
            until = _value(view, "until")
            if not until:
                ack(response_action="errors", errors={"until": "Required."})
                return
            ack()
            item, user = json.loads(view["private_metadata"]), _user(body)
            self.act(item["ref"], user, "settle", lambda s: workflow.settle(
                s, self.settings, item["ref"], item["system"], "kept", by=actor(user), law=law,
                until=date.fromisoformat(until)))

        @app.view("dsr_requester_modal", matchers=approver)
        def corrected(ack, body, view):  # noqa: ANN001
            ack()
            ref, user = view["private_metadata"], _user(body)
            self.act(ref, user, "requester", lambda s: workflow.correct_requester(
                s, ref, email=_value(view, "email"), name=_value(view, "name"), by=actor(user)))

        @app.view("dsr_new_modal")
        def logged(ack, body, view):  # noqa: ANN001
            ack()
            self.log_request(_user(body), view)

        @app.view(re.compile("^dsr_"))
        def refused_view(ack, body, view):  # noqa: ANN001
            ack()
            meta = view.get("private_metadata") or ""
            ref = json.loads(meta)["ref"] if meta.startswith("{") else meta
            self.refuse(body, view["callback_id"], ref or None)

        # -- /dsr ------------------------------------------------------------------------------

        @app.command("/dsr")
        def command(ack, body, respond):  # noqa: ANN001
            ack()
            words = (body.get("text") or "").split()
            verb = words[0].lower() if words else "help"
            if verb == "new":
                self.open_modal(body, new_request_modal(self.settings))
            elif verb == "case" and len(words) > 1:
                respond(response_type="ephemeral", **self.case_message(words[1].upper()))
            elif verb == "due":
                respond(response_type="ephemeral", text=self.due_text())
            else:
                respond(response_type="ephemeral",
                        text="`/dsr new` log a request made by phone, letter or in person · "
                             "`/dsr case REF` show a case · `/dsr due` cases due within "
                             f"{DUE_SOON_WORKING_DAYS} working days")

        @app.event("app_home_opened")
        def home(event):  # noqa: ANN001
            if event.get("tab") not in (None, "home"):
                return
            self.client.views_publish(user_id=event["user"], view=self.home_view())

        @app.event("message")
        def message(event):  # noqa: ANN001
            if event.get("bot_id") or event.get("subtype") or not event.get("text"):
                return
            if event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
                self.note(event)
            elif (event.get("channel_type") == "im"
                  or (event.get("channel") and event.get("channel") == self.settings.slack.intake_channel)):
                self.chat_intake(event)

    # -- what listeners show and do ------------------------------------------------------------

    def case_message(self, ref: str) -> dict[str, Any]:
        try:
            with session_scope(self.engine, write=False) as session:
                view = desk.desk_view(session, self.settings, ref)
        except workflow.CaseError as exc:
            return {"text": str(exc)}
        org = self.settings.organization(view["case"]["org"]).name
        return {"text": cards.card_text(view), "blocks": cards.card_blocks(view, org)}

    def _open_views(self) -> list[dict[str, Any]]:
        with session_scope(self.engine, write=False) as session:
            return [desk.desk_view(session, self.settings, ref)
                    for ref in workflow.open_refs(session)]

    def due_text(self) -> str:
        due = [v for v in self._open_views() if v["working_days_left"] is not None
               and v["working_days_left"] <= DUE_SOON_WORKING_DAYS]
        if not due:
            return f"No open case is due within {DUE_SOON_WORKING_DAYS} working days."
        return "\n".join(f"*{v['case']['ref']}* {v['case']['org']} · {v['case']['state']} · due "
                         f"{v['case']['due']} ({v['working_days_left']} working days)" for v in due)

    def home_view(self) -> dict[str, Any]:
        views = self._open_views()
        blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain("Open requests")}]
        for v in views[:40]:
            case = v["case"]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
                f"*{case['ref']}* · {case['org']} · {', '.join(case['intents']) or 'unclear'} · "
                f"{case['state']} · due {case['due']}"
                + (f" ({v['working_days_left']} working days)"
                   if v["working_days_left"] is not None else ""))}})
        if not views:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "No open cases."}})
        return {"type": "home", "blocks": blocks}

    def log_request(self, user: str | None, view: dict[str, Any]) -> str | None:
        """`/dsr new`: a request made by phone, letter or in person; the clock runs from when it
        was really received."""
        stamp = _value(view, "received")
        received = (datetime.fromtimestamp(int(stamp), timezone.utc) if stamp
                    else datetime.now(timezone.utc))
        org_id = _value(view, "org") or self.settings.organizations[0].id
        channel = _value(view, "channel") or "phone"
        ref = None
        with self.write() as session:
            case = workflow.open_request(
                session, self.settings, org_id=org_id, channel=channel, received_at=received,
                requester=(_value(view, "email") or "").strip().lower() or None,
                requester_name=(_value(view, "name") or "").strip() or None,
                subject="", body=_value(view, "what") or "", actor=actor(user or "?"))
            ref = case.ref
            session.flush()
            cards.sync_card(session, self.settings, ref)
        self.on_change()
        self.tell(user, f"{ref} opened: received {received.isoformat()} by {channel}.")
        return ref

    def chat_intake(self, event: dict[str, Any]) -> str | None:
        """A message to the bot or in the intake channel: stored once, then a note on the case it
        names, or a new case (channel slack) confirmed in its thread."""
        with self.write() as session:
            stored = chat.store_chat(session, event)
            if stored is None:
                return None  # Slack retried; the first delivery was kept
            message_id = stored.id
        text, user = event["text"], event.get("user") or "?"
        prefix = re.escape(self.settings.cases.reference_prefix)
        named = re.search(rf"(?<![A-Za-z0-9]){prefix}-\d{{4}}-\d{{4,}}", text, re.I)
        org = self.settings.slack.intake_org or self.settings.organizations[0].id
        with self.write() as session:
            from ...store.models import Message

            message = session.get(Message, message_id)
            if named:
                try:
                    case = workflow.note_message(session, named.group(0).upper(), message,
                                                 actor(user))
                except workflow.CaseError:
                    named = None
                else:
                    ref = case.ref
            if not named:
                email, name = chat.requester_of(text)
                case = workflow.open_request(
                    session, self.settings, org_id=org, channel="slack",
                    received_at=chat.received_at(event["ts"]), requester=email,
                    requester_name=name, subject="", body=text, message=message,
                    actor=actor(user), acknowledge=False)
                message.status = "processed"
                session.add(message)
                ref = case.ref
                session.flush()
                view = desk.desk_view(session, self.settings, ref)
                org_name = self.settings.organization(org).name
                cards.queue_thread_reply(
                    session, view["case_id"], event["channel"], event["ts"],
                    cards.card_text(view), cards.intake_blocks(view, org_name),
                    key=f"slack:intake:{event['channel']}:{event['ts']}")
            session.flush()
            cards.sync_card(session, self.settings, ref)
        self.on_change()
        log.info("chat message taken in", extra={"ref": ref, "linked": bool(named)})
        return ref

    def note(self, event: dict[str, Any]) -> None:
        """A reply in a card's thread is kept as an internal note on the case."""
        thread, channel = event.get("thread_ts"), event.get("channel")
        with self.write() as session:
            ref = cards.case_of_card(session, channel, thread) or chat.case_of_chat(
                session, channel, thread)
            if ref is None:
                return
            workflow.record_note(session, ref, actor(event.get("user") or "?"),
                                 event["text"][:2000], ts=event.get("ts"))


def new_request_modal(settings: Settings) -> dict[str, Any]:
    orgs = [{"text": _plain(o.name), "value": o.id} for o in settings.organizations]
    return {
        "type": "modal", "callback_id": "dsr_new_modal", "title": _plain("Log a request"),
        "submit": _plain("Open case"), "close": _plain("Cancel"), "blocks": [
            _input("org", "Organisation", {"type": "static_select", "action_id": "value",
                                           "options": orgs, "initial_option": orgs[0]}),
            _input("name", "Name", _text_input(multiline=False)),
            _input("email", "Email", {"type": "email_text_input", "action_id": "value"}, True),
            _input("what", "What they asked for", _text_input()),
            _input("channel", "How", {"type": "static_select", "action_id": "value",
                                      "options": _options([c for c in STAFF_CHANNELS
                                                           if c != "email"])}),
            _input("received", "When it was received", {"type": "datetimepicker",
                                                         "action_id": "value"}),
        ]}
