"""IMAP intake: watch one mailbox folder, store each new message, then archive it.

Durable first (DESIGN.md): a message is fetched with ``BODY.PEEK[]`` (which leaves ``\\Seen``
unset), stored with :func:`store_raw` and committed, and only then moved to ``archive_folder``
(or flagged ``\\Seen`` when the server has no MOVE). A crash between the commit and the move
leaves the mail in the folder; the next pass moves it without storing it again.

Where the listener is in the folder lives in the ``mailbox_state`` table: the folder's
UIDVALIDITY and the highest UID stored, advanced in the same transaction as the message. A new
UIDVALIDITY means the server renumbered the folder: the listener rescans it from UID 1 and the
Message-ID + SHA-256 key of :func:`store_raw` keeps anything from being stored twice.

The loop of :meth:`ImapListener.run`: one pass at once, then IDLE (renewed every
``idle_renew_seconds``, about 9 minutes by default, because a dead connection can sit silent in
IDLE), a NOOP and a pass after each wake-up; a server without IDLE is polled every
``poll_seconds``. A dropped connection is retried with capped exponential backoff.

One listener per mailbox when several instances run: on PostgreSQL the listener holds
``pg_try_advisory_lock`` (keyed by host, user and folder) on a dedicated connection while it
listens; on SQLite it holds an ``flock`` on a lock file next to the database. An instance that
finds the mailbox taken waits and tries again.

Logs go to ``dsr.imap``: counts, UIDs and reasons; never an address, a subject or a body.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..store.db import session_scope
from ..store.models import MailboxState, utcnow
from ..vocabulary import Channel
from .oauth import OAuthError, TokenSource
from .store import store_raw

log = logging.getLogger("dsr.imap")

#: Renew IDLE this often: servers may drop an IDLE after 30 minutes (RFC 2177 asks clients to
#: re-issue it at least every 29), and a half-open connection is only noticed by talking.
IDLE_RENEW_SECONDS = 9 * 60
POLL_SECONDS = 60.0
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
LOCK_RETRY_SECONDS = 30.0
TIMEOUT_SECONDS = 60.0
#: Messages fetched per FETCH command: bounded memory on a large backlog.
FETCH_BATCH = 25
#: How long one idle_check may block, so a stop request is noticed promptly.
_IDLE_SLICE_SECONDS = 1.0

# What a broken connection looks like: imaplib's error and abort (IMAPClientError covers both),
# socket errors and timeouts (OSError), TLS errors (an OSError too).
# No OAuth token (the provider down or refusing) is retried the same way.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (IMAPClientError, OSError, ssl.SSLError,
                                                      socket.timeout, EOFError, OAuthError)


@dataclass
class PollResult:
    """What one pass over the folder did."""

    stored: int = 0          # new rows
    duplicates: int = 0      # already stored (a rescan, or the same mail by another channel)
    archived: int = 0        # moved to the archive folder or flagged \\Seen
    locked_out: bool = False  # another listener holds the mailbox: nothing was done
    uidvalidity: int | None = None
    last_uid: int = 0


@dataclass
class _Box:
    host: str
    username: str
    folder: str
    archive_folder: str | None
    lock_key: int = field(init=False)

    def __post_init__(self) -> None:
        ident = f"{self.host.lower()}\0{self.username}\0{self.folder}".encode()
        # PostgreSQL advisory keys are signed 64-bit integers.
        self.lock_key = int.from_bytes(hashlib.sha256(b"dsr-imap\0" + ident).digest()[:8],
                                       "big", signed=True)


class ImapListener:
    """Listens to the ``[imap]`` mailbox of the settings and stores what arrives.

    ``settings`` is the whole :class:`~assistant.config.Settings` (its ``imap`` table is used) or
    an :class:`~assistant.config.ImapSettings`. The keyword arguments exist for tests and
    unusual servers: ``use_idle=False`` polls even when IDLE is offered, ``use_move=False``
    flags ``\\Seen`` even when MOVE is offered."""

    def __init__(
        self, settings: Any, engine: Engine, *,
        idle_renew_seconds: float = IDLE_RENEW_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        backoff_initial: float = BACKOFF_INITIAL_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
        lock_retry_seconds: float = LOCK_RETRY_SECONDS,
        timeout: float = TIMEOUT_SECONDS,
        use_idle: bool = True,
        use_move: bool = True,
        client_factory: Callable[..., IMAPClient] = IMAPClient,
    ) -> None:
        imap = getattr(settings, "imap", settings)
        if imap is None:
            raise ValueError("no [imap] table in the settings")
        self.imap = imap
        self.engine = engine
        self.box = _Box(imap.host, imap.username, imap.folder, imap.archive_folder or None)
        self.idle_renew_seconds = idle_renew_seconds
        self.poll_seconds = poll_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.lock_retry_seconds = lock_retry_seconds
        self.timeout = timeout
        self.use_idle = use_idle
        self.use_move = use_move
        self._client_factory = client_factory
        self._tokens = TokenSource(imap) if getattr(imap, "auth", "password") == "xoauth2" else None
        self._client: IMAPClient | None = None
        self._lock: _MailboxLock | None = None
        #: UIDs stored but not yet archived (the move or flag failed); retried each pass.
        self._unacknowledged: set[int] = set()
        self._acked_uidvalidity: int | None = None
        #: Set while run() holds the mailbox; tests wait on it.
        self.holding = threading.Event()
        #: Passes completed by run(); tests wait on it.
        self.passes = 0

    # ----------------------------------------------------------------- the public surface

    def run(self, stop: threading.Event) -> None:
        """Listen until ``stop`` is set: take the mailbox, connect, pass, IDLE or poll, pass…;
        reconnect with backoff on a dropped connection. Never raises for a network or database
        failure (they are logged and retried)."""
        log.info("imap listener started", extra={"folder": self.box.folder})
        told = False  # "held by another listener" once at INFO, then at DEBUG
        try:
            while not stop.is_set():
                lock = self._new_lock()
                try:
                    if not lock.acquire():
                        log.log(logging.DEBUG if told else logging.INFO,
                                "imap mailbox held by another listener; waiting",
                                extra={"retry_in": self.lock_retry_seconds})
                        told = True
                        stop.wait(self.lock_retry_seconds)
                        continue
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("imap mailbox lock unavailable: %s", type(exc).__name__,
                                extra={"retry_in": self.lock_retry_seconds})
                    stop.wait(self.lock_retry_seconds)
                    continue
                self._lock = lock
                told = False
                self.holding.set()
                try:
                    self._listen_holding(stop)
                finally:
                    self.holding.clear()
                    self._lock = None
                    lock.release()
        finally:
            self._disconnect()
            log.info("imap listener stopped")

    def poll_once(self) -> PollResult:
        """One pass outside :meth:`run`: take the mailbox (or report it taken), connect, store
        and archive what is new, disconnect. Errors are raised to the caller."""
        lock = self._new_lock()
        if not lock.acquire():
            return PollResult(locked_out=True)
        try:
            self._connect()
            try:
                return self._pass()
            finally:
                self._disconnect()
        finally:
            lock.release()

    # ----------------------------------------------------------------- the loop

    def _listen_holding(self, stop: threading.Event) -> None:
        backoff = self.backoff_initial
        while not stop.is_set():
            if not self._lock or not self._lock.alive():
                log.warning("imap mailbox lock lost; taking it again")
                return
            try:
                self._connect()
                self._pass()
                self.passes += 1
                backoff = self.backoff_initial
                self._wait_and_pass(stop)
            except CONNECTION_ERRORS as exc:
                self._disconnect()
                # An OAuth failure's message is written for the operator and holds no secret.
                reason = f"OAuthError: {exc}" if isinstance(exc, OAuthError) else type(exc).__name__
                log.warning("imap connection failed: %s", reason,
                            extra={"retry_in": round(backoff, 2)})
            except SQLAlchemyError as exc:
                self._disconnect()
                log.warning("imap pass failed on the database: %s", type(exc).__name__,
                            extra={"retry_in": round(backoff, 2)})
            except Exception:  # never let the listener thread die; the formatter redacts
                self._disconnect()
                log.exception("imap pass failed", extra={"retry_in": round(backoff, 2)})
            if stop.is_set():
                return
            stop.wait(backoff * random.uniform(0.8, 1.0))
            backoff = min(backoff * 2, self.backoff_max)

    def _wait_and_pass(self, stop: threading.Event) -> None:
        """Wait for news (IDLE, or poll), then pass again; returns only on stop or by raising."""
        client = self._client
        assert client is not None
        idle = self.use_idle and client.has_capability("IDLE")
        if not idle:
            log.info("imap polling", extra={"every_seconds": self.poll_seconds})
        while not stop.is_set():
            if self._lock is not None and not self._lock.alive():
                raise _LockLost()
            if _news_pending(client):
                pass  # mail announced while the last pass ran: pass again before waiting
            elif idle:
                self._idle(client, stop)
            elif stop.wait(self.poll_seconds):
                return
            if stop.is_set():
                return
            client.noop()
            self._pass()
            self.passes += 1

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """IDLE until the server reports something, the renewal interval ends or stop is set.

        imapclient's ``idle_check`` returns an empty list, at once, when the server has closed
        the connection (it swallows the EOF): several quick empty returns in a row mean the
        connection is gone, and we reconnect instead of spinning until the renewal."""
        client.idle()
        deadline = time.monotonic() + self.idle_renew_seconds
        quick_empty = 0
        try:
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                slice_ = min(_IDLE_SLICE_SECONDS, remaining)
                started = time.monotonic()
                responses = client.idle_check(timeout=slice_)
                if any(_is_news(response) for response in responses):
                    break
                if responses:
                    quick_empty = 0
                    continue
                if _peer_closed(client):
                    raise ConnectionError("the server closed the connection during IDLE")
                # A timeout returns after the whole slice; an empty return well before it is the
                # swallowed EOF (on TLS, where the socket cannot be peeked). A loaded machine
                # may delay either, so only a run of early returns counts.
                if time.monotonic() - started < slice_ * 0.9:
                    quick_empty += 1
                    if quick_empty >= 3:
                        raise ConnectionError("the server closed the connection during IDLE")
                else:
                    quick_empty = 0
        finally:
            client.idle_done()

    # ----------------------------------------------------------------- one pass

    def _pass(self) -> PollResult:
        client = self._client
        assert client is not None
        box = self.box
        selected = client.select_folder(box.folder)
        _news_pending(client)  # what SELECT reported is about to be searched anyway
        uidvalidity = int(selected[b"UIDVALIDITY"])
        result = PollResult(uidvalidity=uidvalidity)
        if self._acked_uidvalidity != uidvalidity:
            self._unacknowledged.clear()
            self._acked_uidvalidity = uidvalidity
        last_uid = self._last_uid(uidvalidity)
        if last_uid and self._moving():
            # Whatever is still here at or below last_uid was stored but not moved (a crash or a
            # failed MOVE between the commit and the move): move it now, without storing again.
            self._unacknowledged.update(
                uid for uid in client.search(["UID", f"1:{last_uid}"]) if uid <= last_uid)
        if self._unacknowledged:
            result.archived += self._acknowledge(client, sorted(self._unacknowledged))
        # `N:*` always matches the highest UID, even when it is below N: filter in code.
        new = sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)
        for start in range(0, len(new), FETCH_BATCH):
            batch = new[start:start + FETCH_BATCH]
            fetched = client.fetch(batch, ["BODY.PEEK[]", "INTERNALDATE"])
            for uid in batch:
                item = fetched.get(uid)
                if item is None or b"BODY[]" not in item:  # expunged meanwhile
                    continue
                raw = item[b"BODY[]"]
                if not isinstance(raw, (bytes, bytearray)):
                    # The server gave no body (NIL): nothing to store. Leave the mail where a
                    # person will see it, and go on with the next UID rather than stall here.
                    log.warning("imap message without a body left in the folder", extra={"uid": uid})
                    self._advance(uid, uidvalidity)
                    continue
                created = self._store(uid, uidvalidity, raw, item.get(b"INTERNALDATE"))
                if created:
                    result.stored += 1
                else:
                    result.duplicates += 1
                self._unacknowledged.add(uid)
                result.archived += self._acknowledge(client, [uid])
                result.last_uid = uid
        result.last_uid = max(result.last_uid, last_uid)
        if new or result.archived:
            log.info("imap pass", extra={"stored": result.stored, "duplicates": result.duplicates,
                                         "archived": result.archived, "last_uid": result.last_uid})
        return result

    def _store(self, uid: int, uidvalidity: int, raw: bytes, internaldate: Any) -> bool:
        """Store one message and advance last_uid in one transaction; True when it is new."""
        received = _aware(internaldate)
        username = self.box.username
        with session_scope(self.engine) as session:
            _, created = store_raw(session, channel=Channel.IMAP.value, raw=bytes(raw),
                                   received_at=received,
                                   envelope_to=[username] if "@" in username else [])
            self._set_last_uid(session, uid, uidvalidity)
        log.debug("imap message stored", extra={"uid": uid, "new": created})
        return created

    def _advance(self, uid: int, uidvalidity: int) -> None:
        with session_scope(self.engine) as session:
            self._set_last_uid(session, uid, uidvalidity)

    def _set_last_uid(self, session: Any, uid: int, uidvalidity: int) -> None:
        state = self._state_row(session)
        if state is None:
            session.add(MailboxState(host=self.box.host, username=self.box.username,
                                     folder=self.box.folder, uidvalidity=uidvalidity, last_uid=uid))
            return
        kept = state.last_uid if state.uidvalidity == uidvalidity else 0
        state.uidvalidity = uidvalidity
        state.last_uid = max(uid, kept)
        state.updated_at = utcnow()

    def _last_uid(self, uidvalidity: int) -> int:
        """The highest UID stored under this UIDVALIDITY; 0 (rescan) after a change."""
        with session_scope(self.engine) as session:
            state = self._state_row(session)
            if state is None:
                return 0
            if state.uidvalidity != uidvalidity:
                log.warning("imap UIDVALIDITY changed; rescanning the folder",
                            extra={"old": state.uidvalidity, "new": uidvalidity})
                state.uidvalidity = uidvalidity
                state.last_uid = 0
                state.updated_at = utcnow()
                return 0
            return int(state.last_uid)

    def _state_row(self, session: Any) -> MailboxState | None:
        box = self.box
        return session.execute(select(MailboxState).where(
            MailboxState.host == box.host, MailboxState.username == box.username,
            MailboxState.folder == box.folder)).scalars().first()

    def _moving(self, client: IMAPClient | None = None) -> bool:
        client = client or self._client
        return bool(self.use_move and self.box.archive_folder and client is not None
                    and client.has_capability("MOVE")
                    and self.box.archive_folder != self.box.folder)

    def _acknowledge(self, client: IMAPClient, uids: list[int]) -> int:
        """Move the stored messages to the archive folder (or flag them \\Seen); the count done.
        A failure leaves them for the next pass; a broken connection is raised."""
        try:
            if self._moving():
                client.move(uids, self.box.archive_folder)
            else:
                client.add_flags(uids, [b"\\Seen"], silent=True)
        except IMAPClientError as exc:
            if _is_abort(exc):
                raise
            log.warning("imap archiving failed; retried next pass: %s", type(exc).__name__,
                        extra={"count": len(uids)})
            return 0
        self._unacknowledged.difference_update(uids)
        return len(uids)

    # ----------------------------------------------------------------- connection

    def _connect(self) -> None:
        if self._client is not None:
            return
        imap = self.imap
        client = self._client_factory(imap.host, port=imap.port, ssl=imap.tls,
                                      timeout=self.timeout)
        try:
            client.normalise_times = False  # INTERNALDATE with its offset, not local naive time
            self._login(client)
            if self._moving(client) and not client.folder_exists(self.box.archive_folder):
                try:
                    client.create_folder(self.box.archive_folder)
                    log.info("imap archive folder created")
                except IMAPClientError:  # created by someone else meanwhile?
                    if not client.folder_exists(self.box.archive_folder):
                        raise
        except BaseException:
            _close_quietly(client)
            raise
        self._client = client
        log.info("imap connected", extra={"idle": client.has_capability("IDLE"),
                                          "move": client.has_capability("MOVE")})

    def _login(self, client: IMAPClient) -> None:
        """A password, or an OAuth access token over SASL XOAUTH2. A refused token is forgotten,
        so the next attempt (after the backoff) fetches a new one."""
        if self._tokens is None:
            client.login(self.imap.username, self.imap.password)
            return
        try:
            client.oauth2_login(self.imap.username, self._tokens.token())
        except IMAPClientError as exc:
            if not _is_abort(exc):
                self._tokens.forget()
            raise

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)

    # ----------------------------------------------------------------- locking

    def _new_lock(self) -> _MailboxLock:
        if self.engine.dialect.name == "postgresql":
            return _AdvisoryLock(self.engine, self.box.lock_key)
        return _FileLock(_lock_path(self.engine, self.box.lock_key))


class _LockLost(OSError):
    """The lock's database connection died: stop listening until the lock is taken again."""


def _peer_closed(client: IMAPClient) -> bool:
    """True when the server has closed a plain TCP connection: a peek reads end-of-file at once.
    (A TLS socket cannot be peeked; then the caller's timing rule decides.)"""
    sock = getattr(getattr(client, "_imap", None), "sock", None)
    if sock is None or isinstance(sock, ssl.SSLSocket):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _is_news(response: Any) -> bool:
    """An untagged response that may mean new mail (EXISTS, RECENT) rather than keep-alive."""
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


def _news_pending(client: IMAPClient) -> bool:
    """Whether the server announced mail (EXISTS, RECENT) in a reply to one of our commands
    since the last call; clears what was collected. Such announcements are kept by imaplib, not
    handed to us, and the server will not repeat them when IDLE starts."""
    pending = getattr(getattr(client, "_imap", None), "untagged_responses", None)
    if not isinstance(pending, dict):
        return False
    news = any(pending.get(kind) for kind in ("EXISTS", "RECENT"))
    pending.clear()
    return news


def _is_abort(exc: BaseException) -> bool:
    return isinstance(exc, IMAPClientAbortError)


def _aware(internaldate: Any) -> datetime:
    """INTERNALDATE as an aware datetime; now when the server gave none or a naive one."""
    if isinstance(internaldate, datetime):
        if internaldate.tzinfo is None:
            return internaldate.astimezone()  # imapclient's local time: attach the local zone
        return internaldate
    return datetime.now(timezone.utc)


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001  (the connection may be dead already)
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------- one listener per mailbox

class _MailboxLock:
    def acquire(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def alive(self) -> bool:
        return True

    def release(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class _AdvisoryLock(_MailboxLock):
    """``pg_try_advisory_lock`` held on a dedicated connection for as long as we listen."""

    def __init__(self, engine: Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def alive(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.close()
        except SQLAlchemyError:
            # A session lock must never go back to the pool still held: drop the connection.
            conn.invalidate()
            conn.close()


class _FileLock(_MailboxLock):
    """An exclusive ``flock`` on a file next to the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def _lock_path(engine: Engine, key: int) -> Path:
    """`dsr.db.imap-<key>.lock` beside the database file (the temp folder for :memory:)."""
    database = engine.url.database
    name = f"imap-{key & 0xFFFFFFFFFFFFFFFF:016x}.lock"
    if database and database != ":memory:":
        db_path = Path(database).expanduser().resolve()
        return db_path.with_name(f"{db_path.name}.{name}")
    return Path(tempfile.gettempdir()) / f"dsr-{os.getpid()}-{name}"

