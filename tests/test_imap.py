"""The IMAP listener against real servers on loopback: pymap always, Dovecot when installed.

Every message is stored once and committed before it is moved or flagged; UIDVALIDITY changes,
dropped connections and a second listener on the same mailbox store nothing twice."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from imap_servers import Dovecot, Pymap, Server, dovecot_missing
from sqlalchemy import func, select, update

from assistant.channels import imap as imap_module
from assistant.channels.imap import ImapListener
from assistant.config import ImapSettings
from assistant.store.db import open_store, session_scope
from assistant.store.models import MailboxState, Message

WAIT = 60.0  # generous: a slow CI machine must not fail these; nothing asserts a duration


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["pymap", "dovecot"])
def server(request: pytest.FixtureRequest, tmp_path) -> Iterator[Server]:
    if request.param == "dovecot":
        reason = dovecot_missing()
        if reason:
            pytest.skip(reason)
        srv: Server = Dovecot(tmp_path)
    else:
        srv = Pymap(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if isinstance(srv, Dovecot):
            srv.cleanup()


@pytest.fixture
def pymap(tmp_path) -> Iterator[Server]:
    srv = Pymap(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sqlite_engine(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'dsr.db'}")


def settings_for(srv: Server, **overrides) -> ImapSettings:
    values = dict(host=srv.host, port=srv.port, tls=False, username=srv.username,
                  password=srv.password, folder="INBOX", archive_folder="Processed")
    values.update(overrides)
    return ImapSettings(**values)


def listener(srv: Server, engine, **options) -> ImapListener:
    options.setdefault("backoff_initial", 0.05)
    options.setdefault("backoff_max", 0.5)
    options.setdefault("lock_retry_seconds", 0.1)
    options.setdefault("timeout", 10)
    return ImapListener(settings_for(srv), engine, **options)


def mail(n: int, tag: str = "a") -> bytes:
    return (f"From: Kari Nordmann <kari{n}@example.no>\r\nTo: {Pymap.username}\r\n"
            f"Subject: Innsyn {tag}{n}\r\nMessage-ID: <{tag}{n}.dsr-test@example.no>\r\n"
            f"Date: Mon, 30 Nov 2026 10:00:00 +0100\r\n\r\nJeg ber om innsyn ({tag}{n}).\r\n"
            ).encode()


WHEN = datetime(2026, 11, 30, 9, 15, tzinfo=timezone(timedelta(hours=1)))


def append(srv: Server, *raws: bytes, when: datetime = WHEN) -> None:
    client = srv.client()
    try:
        for raw in raws:
            client.append("INBOX", raw, msg_time=when)
    finally:
        client.logout()


def folder(srv: Server, name: str) -> dict[int, dict]:
    """UID -> FLAGS and bytes of what is in a folder (empty when it does not exist)."""
    client = srv.client()
    try:
        if not client.folder_exists(name):
            return {}
        client.select_folder(name, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return {}
        return client.fetch(uids, ["FLAGS", "BODY.PEEK[]"])
    finally:
        client.logout()


def stored(engine) -> list[Message]:
    with session_scope(engine) as session:
        return list(session.execute(select(Message).order_by(Message.id)).scalars())


def count(engine) -> int:
    with session_scope(engine) as session:
        return session.execute(select(func.count()).select_from(Message)).scalar_one()


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("dsr.imap")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def log_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in records)


class Running:
    """A listener's run() in a thread, stopped and joined at the end."""

    def __init__(self, lst: ImapListener) -> None:
        self.listener = lst
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lst.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> ImapListener:
        self.thread.start()
        return self.listener

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the listener did not stop"


# --------------------------------------------------------------------- one pass

def test_new_mail_is_stored_once_then_moved_to_the_archive(server, sqlite_engine, captured):
    raws = [mail(i) for i in range(3)]
    append(server, *raws)
    lst = listener(server, sqlite_engine)

    result = lst.poll_once()
    assert (result.stored, result.duplicates, result.archived) == (3, 0, 3)
    rows = stored(sqlite_engine)
    assert [row.raw for row in rows] == raws
    for row in rows:
        assert row.channel == "imap" and row.status == "stored"
        assert row.received_at == WHEN  # INTERNALDATE, aware
        assert row.envelope_to == f'["{server.username}"]'
    assert folder(server, "INBOX") == {}
    archived = folder(server, "Processed")  # created by the listener
    assert sorted(item[b"BODY[]"] for item in archived.values()) == sorted(raws)

    again = lst.poll_once()
    assert (again.stored, again.duplicates, again.archived) == (0, 0, 0)
    assert count(sqlite_engine) == 3
    with session_scope(sqlite_engine) as session:
        state = session.execute(select(MailboxState)).scalar_one()
        assert (state.host, state.username, state.folder) == (server.host, server.username, "INBOX")
        assert state.last_uid == result.last_uid and state.uidvalidity == result.uidvalidity
    assert server.username not in log_text(captured)
    assert "Innsyn" not in log_text(captured)


def test_without_move_the_mail_is_flagged_seen_and_left_in_place(server, sqlite_engine):
    append(server, mail(1), mail(2))
    lst = listener(server, sqlite_engine, use_move=False)
    assert lst.poll_once().stored == 2
    inbox = folder(server, "INBOX")
    assert len(inbox) == 2 and all(b"\\Seen" in item[b"FLAGS"] for item in inbox.values())
    assert folder(server, "Processed") == {}
    append(server, mail(3))
    result = lst.poll_once()
    assert (result.stored, result.duplicates) == (1, 0)  # only the new UID is fetched
    assert count(sqlite_engine) == 3


def test_a_failed_commit_leaves_the_mail_unseen_in_the_inbox(server, sqlite_engine, monkeypatch):
    append(server, mail(1))
    lst = listener(server, sqlite_engine)

    def broken_store(*args, **kwargs):
        raise RuntimeError("database is read-only")

    monkeypatch.setattr(imap_module, "store_raw", broken_store)
    with pytest.raises(RuntimeError):
        lst.poll_once()
    inbox = folder(server, "INBOX")
    assert len(inbox) == 1
    assert all(b"\\Seen" not in item[b"FLAGS"] for item in inbox.values())  # BODY.PEEK[]
    assert folder(server, "Processed") == {}
    assert count(sqlite_engine) == 0
    with session_scope(sqlite_engine) as session:
        assert session.execute(select(MailboxState)).first() is None

    monkeypatch.undo()
    assert lst.poll_once().stored == 1
    assert folder(server, "INBOX") == {} and len(folder(server, "Processed")) == 1


def test_a_readonly_database_leaves_the_mail_where_it_was(pymap, tmp_path):
    url = f"sqlite:///{tmp_path / 'ro.db'}"
    open_store(url)
    append(pymap, mail(1))
    from sqlalchemy import create_engine

    readonly = create_engine(f"sqlite:///file:{tmp_path / 'ro.db'}?mode=ro&uri=true")
    with pytest.raises(Exception):  # noqa: B017  (whatever the driver raises for a write)
        listener(pymap, readonly).poll_once()
    inbox = folder(pymap, "INBOX")
    assert len(inbox) == 1 and all(b"\\Seen" not in i[b"FLAGS"] for i in inbox.values())


def test_mail_left_behind_by_a_failed_move_is_moved_later_not_stored_again(server, sqlite_engine,
                                                                           monkeypatch):
    append(server, mail(1), mail(2))
    lst = listener(server, sqlite_engine)
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError

    def refuse(self, messages, target):
        raise IMAPClientError("MOVE refused")

    monkeypatch.setattr(IMAPClient, "move", refuse)
    result = lst.poll_once()
    assert (result.stored, result.archived) == (2, 0)
    assert len(folder(server, "INBOX")) == 2
    monkeypatch.undo()
    # A fresh listener (as after a crash): what is at or below last_uid was stored; move it.
    result = listener(server, sqlite_engine).poll_once()
    assert (result.stored, result.duplicates, result.archived) == (0, 0, 2)
    assert folder(server, "INBOX") == {} and len(folder(server, "Processed")) == 2
    assert count(sqlite_engine) == 2


# --------------------------------------------------------------------- UIDVALIDITY

def test_a_new_uidvalidity_rescans_the_folder_and_stores_nothing_twice(server, sqlite_engine):
    append(server, mail(1), mail(2))
    lst = listener(server, sqlite_engine, use_move=False)
    first = lst.poll_once()
    assert first.stored == 2
    # The server renumbered the folder (as after a restore or a migration of the mail store).
    with session_scope(sqlite_engine) as session:
        session.execute(update(MailboxState).values(uidvalidity=first.uidvalidity + 1))
    result = lst.poll_once()
    assert (result.stored, result.duplicates) == (0, 2)
    assert count(sqlite_engine) == 2


def test_a_server_restart_stores_nothing_twice(server, sqlite_engine):
    """pymap loses its mail and renumbers at restart: the same mail comes back under a new
    UIDVALIDITY. Dovecot keeps both: nothing is fetched again."""
    append(server, mail(1), mail(2))
    lst = listener(server, sqlite_engine, use_move=False)
    before = lst.poll_once()
    assert before.stored == 2
    server.restart()
    if server.renumbers_on_restart:
        append(server, mail(1), mail(2))
    append(server, mail(3))
    after = lst.poll_once()
    assert after.stored == 1
    if server.renumbers_on_restart:
        assert after.uidvalidity != before.uidvalidity and after.duplicates == 2
    assert count(sqlite_engine) == 3


# --------------------------------------------------------------------- the loop

def test_idle_picks_up_new_mail(server, sqlite_engine):
    lst = listener(server, sqlite_engine, idle_renew_seconds=600)  # woken by EXISTS, not renewal
    with Running(lst):
        wait_until(lambda: lst.passes >= 1, "the first pass")
        append(server, mail(1))
        wait_until(lambda: count(sqlite_engine) == 1, "the message stored")
        wait_until(lambda: len(folder(server, "Processed")) == 1, "the message moved")
        append(server, mail(2))
        wait_until(lambda: count(sqlite_engine) == 2, "the second message stored")
    assert folder(server, "INBOX") == {}


def test_without_idle_the_listener_polls(server, sqlite_engine, captured):
    lst = listener(server, sqlite_engine, use_idle=False, poll_seconds=0.2)
    with Running(lst):
        wait_until(lambda: lst.passes >= 1, "the first pass")
        append(server, mail(1), mail(2))
        wait_until(lambda: count(sqlite_engine) == 2, "both messages stored")
        wait_until(lambda: len(folder(server, "Processed")) == 2, "both messages moved")
    assert any(r.getMessage() == "imap polling" for r in captured)


def test_a_dropped_connection_is_reconnected_and_mail_meanwhile_is_picked_up(
        server, sqlite_engine, captured):
    # The renewal is far off: the dead connection must be noticed inside IDLE itself.
    lst = listener(server, sqlite_engine, idle_renew_seconds=600)
    with Running(lst):
        wait_until(lambda: lst.passes >= 1, "the first pass")
        append(server, mail(1))
        wait_until(lambda: count(sqlite_engine) == 1, "the first message stored")
        server.kill()
        server.start()  # same port
        append(server, mail(2))
        wait_until(lambda: count(sqlite_engine) == 2, "the message sent while we were away")
        wait_until(lambda: len(folder(server, "Processed")) >= 1, "it was moved")
    text = log_text(captured)
    assert "imap connection failed" in text
    assert server.username not in text and server.password not in text


def test_a_wrong_password_is_retried_with_backoff_and_logged_without_the_address(
        pymap, sqlite_engine, captured):
    lst = ImapListener(settings_for(pymap, password="wrong"), sqlite_engine, backoff_initial=0.05,
                       backoff_max=0.1, lock_retry_seconds=0.1, timeout=10)
    with Running(lst):
        wait_until(lambda: sum("imap connection failed" in r.getMessage() for r in captured) >= 3,
                   "three failed attempts")
    text = log_text(captured)
    assert pymap.username not in text


# --------------------------------------------------------------------- one listener per mailbox

def test_one_listener_per_mailbox(pymap, engine, captured):
    """SQLite: a lock file next to the database; PostgreSQL: an advisory lock."""
    first = listener(pymap, engine, use_idle=False, poll_seconds=3600)
    second = listener(pymap, engine, use_idle=False, poll_seconds=0.1)
    with Running(first):
        wait_until(lambda: first.holding.is_set() and first.passes >= 1, "the first listener")
        append(pymap, mail(1), mail(2))
        assert second.poll_once().locked_out
        with Running(second):
            wait_until(lambda: any("held by another listener" in r.getMessage() for r in captured),
                       "the second listener to find the mailbox taken")
            assert not second.holding.is_set()
            assert len(folder(pymap, "INBOX")) == 2 and count(engine) == 0
    # The first one stopped: now the second may take the mailbox.
    result = second.poll_once()
    assert (result.locked_out, result.stored, result.archived) == (False, 2, 2)
    assert count(engine) == 2 and len(folder(pymap, "Processed")) == 2


def test_two_running_listeners_store_and_move_each_message_once(pymap, engine):
    a = listener(pymap, engine, idle_renew_seconds=1)
    b = listener(pymap, engine, idle_renew_seconds=1)
    with Running(a), Running(b):
        wait_until(lambda: a.holding.is_set() or b.holding.is_set(), "one listener holding")
        raws = [mail(i, "two") for i in range(5)]
        append(pymap, *raws)
        wait_until(lambda: count(engine) == 5, "five messages stored")
        wait_until(lambda: len(folder(pymap, "Processed")) == 5, "five messages moved")
        assert not (a.holding.is_set() and b.holding.is_set())
    assert sorted(m.raw for m in stored(engine)) == sorted(raws)
    assert len(folder(pymap, "Processed")) == 5 and folder(pymap, "INBOX") == {}


def test_idle_is_renewed_with_a_noop_and_a_pass(pymap, sqlite_engine):
    lst = listener(pymap, sqlite_engine, idle_renew_seconds=0.2)
    with Running(lst):
        wait_until(lambda: lst.passes >= 4, "IDLE renewed several times")
    assert count(sqlite_engine) == 0


def test_mail_read_by_imap_becomes_one_case_with_its_acknowledgement(server, sqlite_engine):
    from assistant import intake
    from assistant.config import load_settings
    from assistant.store.models import Case, Outbox

    raw = (b"From: Kari Nordmann <kari@example.no>\r\nTo: kundesenter@branninfo.no\r\n"
           b"Subject: innsyn\r\nMessage-ID: <imap-case-1@example.no>\r\n"
           b"Date: Mon, 30 Nov 2026 10:00:00 +0100\r\n\r\n"
           b"Hei, jeg vil se hvilke opplysninger dere har om meg.\r\n")
    append(server, raw)
    assert listener(server, sqlite_engine).poll_once().stored == 1
    settings = load_settings(None)
    assert intake.drain(sqlite_engine, settings) == 1
    assert intake.drain(sqlite_engine, settings) == 0
    with session_scope(sqlite_engine) as session:
        found = session.execute(select(Case)).scalars().all()
        assert [(c.org, c.requester) for c in found] == [("branninfo", "kari@example.no")]
        assert found[0].received_at == WHEN  # the INTERNALDATE is the receipt time
        acks = session.execute(select(Outbox).where(Outbox.case_id == found[0].id)).scalars().all()
        assert [row.recipient for row in acks] == ["kari@example.no"]
