"""The SMTP listener: mail sent to an organisation's privacy address, stored before 250.

The aiosmtpd handler pattern with its threaded Controller. At RCPT an address that belongs to no
organisation gets ``550 5.1.1``; mail larger than ``smtp.max_message_bytes`` gets 552 from
aiosmtpd itself; SMTPUTF8 is accepted. At DATA the raw bytes are stored (channels.store: once per
Message-ID and hash) and COMMITTED in a worker thread, so the event loop keeps serving other
connections, and only then does the client get ``250``. Group commit: the messages that arrive
while one transaction commits are stored together in the next one, each still committed before
its own 250. Anything that goes wrong answers ``451 4.3.0`` (if a transaction fails, to every
message in it), a temporary failure the client retries: an exception escaping ``handle_DATA``
would become aiosmtpd's ``500``, a permanent failure, and the mail would bounce and be lost.

The listener decides nothing: the intake worker reads the stored rows (`on_stored` may wake it).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy.engine import Engine

from ..config import Settings
from ..store import gate as write_gate
from .store import Arrived, SqliteBatchStore, is_busy, store_batch

# Ids and sizes only: never an address or a subject (the redacting formatter is the safety net).
log = logging.getLogger("dsr.channels.smtp")

REPLY_STORED = "250 2.0.0 Message accepted"
REPLY_TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
REPLY_NO_MAILBOX = "550 5.1.1 No such mailbox here"
REPLY_SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"


# Group commit: the messages whose DATA ends while a transaction runs are stored together in
# the next one (at most this many), and each gets its 250 only after that commit.
MAX_BATCH = 64
# SQLite: a batch up to this size is stored on the event loop itself when the write lock is free
# at once (no thread hop, which costs more than the insert); larger ones, or when the lock is
# taken, go to the storing thread, so the loop never waits for a lock or a big write.
INLINE_BYTES = 1_048_576
# The loop's connection never checkpoints the WAL (that may fsync): the storing thread does,
# after this many inline commits.
CHECKPOINT_EVERY = 500


@dataclass
class _Waiting:
    item: Arrived
    answer: asyncio.Future[tuple[int, bool]]


_Work = tuple[asyncio.AbstractEventLoop, list[_Waiting]] | str | None


class IntakeHandler:
    """aiosmtpd handler: accepts only our organisations' addresses, stores, then says 250."""

    def __init__(self, engine: Engine, settings: Settings, *,
                 on_stored: Callable[[], None] | None = None,
                 gate: write_gate.WriteGate | None = None) -> None:
        self.engine, self.settings, self.gate = engine, settings, gate
        self.on_stored = on_stored
        self.closing = False
        self._in_flight = 0
        self._idle = threading.Condition()
        sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        # SQLite's busy handler (milliseconds at a time): one storing thread is faster there.
        # PostgreSQL takes several transactions at once.
        writers = 1 if sqlite else 4
        self.max_transactions = writers
        self._sqlite = SqliteBatchStore(engine) if sqlite else None
        self._inline = SqliteBatchStore(engine, wait=False) if sqlite else None
        self._inline_commits = 0
        # Touched only on the event loop's thread: no lock.
        self._waiting: list[_Waiting] = []
        self._transactions = 0
        self._flush_planned = False
        # Storing threads fed by a plain queue (lighter than an executor's futures: this hop is
        # paid by every batch); each answers on the event loop with call_soon_threadsafe.
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._store_loop, name=f"smtp-store-{n}",
                                          daemon=True) for n in range(writers)]
        for thread in self._threads:
            thread.start()

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        if self.closing:
            return REPLY_SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.settings.organization_for_address(address) is None:
            return REPLY_NO_MAILBOX
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._idle:
            self._in_flight += 1
        raw = b""
        try:
            raw = envelope.original_content or envelope.content or b""
            if isinstance(raw, str):  # decode_data=True was configured somewhere: keep bytes
                raw = raw.encode("utf-8", "surrogateescape")
            item = Arrived(bytes(raw), datetime.now(timezone.utc), envelope.mail_from or None,
                           tuple(envelope.rcpt_tos))
            stored = self._store_now(item)
            if stored is not None:
                message_id, new = stored
            else:
                loop = asyncio.get_running_loop()
                waiting = _Waiting(item, loop.create_future())
                self._waiting.append(waiting)
                if not self._flush_planned:
                    # After the other connections' pending work of this turn of the loop, so
                    # the messages that end together are stored together.
                    self._flush_planned = True
                    loop.call_soon(self._flush, loop)
                message_id, new = await waiting.answer
        except Exception as exc:  # noqa: BLE001
            log.warning("message not stored; asked the client to retry",
                        extra={"error": type(exc).__name__, "bytes": len(raw)})
            return REPLY_TRY_LATER
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
        log.info("message stored" if new else "message already stored",
                 extra={"message_id": message_id, "channel": "smtp", "bytes": len(raw)})
        if self.on_stored is not None and new:
            try:
                self.on_stored()
            except Exception:  # noqa: BLE001
                pass
        return REPLY_STORED

    # -- on the event loop ----------------------------------------------------------------------

    def _store_now(self, item: Arrived) -> tuple[int, bool] | None:
        """The common case on SQLite: nothing else is being stored or waits, the message is
        small and the write lock free at once; then it is committed right here (the cheapest
        road: no future, no other thread). None: it must take the queue. Raises if storing
        failed for another reason than a taken lock."""
        if (self._inline is None or self._transactions or self._waiting
                or len(item.raw) > INLINE_BYTES):
            return None
        if self.gate is not None and not self.gate.try_urgent():
            return None
        try:
            [result] = self._inline.store("smtp", [item])
        except Exception as exc:
            if is_busy(exc):  # another process writes: wait for it in a storing thread
                return None
            raise
        finally:
            if self.gate is not None:
                self.gate.release()
        self._count_inline()
        return result

    def _count_inline(self) -> None:
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY == 0:
            self._work.put("checkpoint")

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_planned = False
        if self._inline is not None and self._transactions == 0 and self._waiting:
            self._store_inline(loop)
        self._commit_more(loop)

    def _store_inline(self, loop: asyncio.AbstractEventLoop) -> None:
        """SQLite, nothing else being stored: commit the waiting batch right here if the write
        lock is free at once and the batch is small; else leave it to a storing thread."""
        assert self._inline is not None
        batch = self._waiting[:MAX_BATCH]
        if sum(len(waiting.item.raw) for waiting in batch) > INLINE_BYTES:
            return
        if self.gate is not None and not self.gate.try_urgent():
            return
        try:
            outcome: list[tuple[int, bool]] | BaseException = self._inline.store(
                "smtp", [waiting.item for waiting in batch])
        except BaseException as exc:  # noqa: BLE001
            if is_busy(exc):  # another process writes: wait for it in a storing thread
                return
            outcome = exc
        finally:
            if self.gate is not None:
                self.gate.release()
        del self._waiting[:len(batch)]
        self._settle(batch, outcome)
        self._count_inline()

    def _commit_more(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a transaction for the waiting messages unless enough are running already; the
        ones that arrive meanwhile wait for the next (group commit)."""
        while self._waiting and self._transactions < self.max_transactions:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            self._transactions += 1
            self._work.put((loop, batch))

    def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting],
                outcome: list[tuple[int, bool]] | BaseException) -> None:
        self._transactions -= 1
        self._settle(batch, outcome)
        self._commit_more(loop)

    @staticmethod
    def _settle(batch: list[_Waiting], outcome: list[tuple[int, bool]] | BaseException) -> None:
        """Every message of a committed batch gets its result; on any failure all of them get
        the error (and so 451: none of them may be taken as stored)."""
        failure = outcome if isinstance(outcome, BaseException) else None
        results = outcome if not isinstance(outcome, BaseException) else None
        if failure is None and (results is None or len(results) != len(batch)):
            failure = RuntimeError("the store answered for another number of messages")
        for index, waiting in enumerate(batch):
            if waiting.answer.done():  # the client went away meanwhile
                continue
            if failure is not None:
                waiting.answer.set_exception(failure)
            else:
                waiting.answer.set_result(results[index])  # type: ignore[index]

    # -- in a storing thread ----------------------------------------------------------------------

    def _store_loop(self) -> None:
        """A storing thread: one transaction per batch, then the answers go back to the loop."""
        while True:
            work = self._work.get()
            if work is None:
                return
            if isinstance(work, str):
                self._checkpoint()
                continue
            loop, batch = work
            try:
                outcome: list[tuple[int, bool]] | BaseException = self.store_many(
                    [waiting.item for waiting in batch])
            except BaseException as exc:  # noqa: BLE001  (answered as 451, never lost)
                outcome = exc
            try:
                loop.call_soon_threadsafe(self._answer, loop, batch, outcome)
            except RuntimeError:  # the loop is closed: its clients are gone, they will retry
                pass

    def _checkpoint(self) -> None:
        try:
            if self._sqlite is not None:
                self._sqlite.checkpoint()
        except Exception as exc:  # noqa: BLE001  (the next writer's checkpoint does it)
            log.debug("checkpoint skipped", extra={"error": type(exc).__name__})

    def store_many(self, items: list[Arrived]) -> list[tuple[int, bool]]:
        """Store and commit a batch in one transaction (in a storing thread); (row id, whether
        it was new) per message, in order. Raises when anything failed: nothing was committed."""
        with write_gate.urgent(self.gate):
            if self._sqlite is not None:
                return self._sqlite.store("smtp", items)
            with self.engine.begin() as connection:
                return store_batch(connection, "smtp", items)

    def store(self, raw: bytes, received_at: datetime, mail_from: str | None,
              rcpt_tos: list[str]) -> tuple[int | None, bool]:
        """One message, stored and committed on its own; (row id, whether it was new)."""
        [result] = self.store_many([Arrived(raw, received_at, mail_from or None, tuple(rcpt_tos))])
        return result

    def close(self, timeout: float = 30.0) -> None:
        """Stop the storing threads (after the work queued before) and give back the
        connections."""
        for _thread in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout)
        for store in (self._sqlite, self._inline):
            if store is not None:
                store.close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no DATA is being stored; False if that took longer than `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


# A path as nearly every client writes it: <dot-atom@domain>, then the parameters. Anything
# else (quoted local parts, source routes, address literals, UTF-8, the null path <>) goes to
# aiosmtpd's own parser.
_PLAIN_PATH = re.compile(
    r"\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>"
    r"[ \t]*([^ \t(].*)?", re.S)


class _IntakeSMTP(SMTP):
    """aiosmtpd's server with a short road for plain addresses in MAIL FROM and RCPT TO: its
    parser (email's header parser, and a typing.Protocol class made on every call) cost a
    quarter of a message's time at the protocol level, twice per message. The answer is the
    one aiosmtpd gives (a test compares them); anything unusual takes aiosmtpd's own road."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        found = _PLAIN_PATH.fullmatch(arg) if arg else None
        if found is None:
            return super()._getaddr(arg)
        address, rest = found.group(1), found.group(2) or ""
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest


class _IntakeController(Controller):
    def factory(self) -> SMTP:
        return _IntakeSMTP(self.handler, **self.SMTP_kwargs)


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class SmtpListener:
    """The listener on `smtp.listen`, running in its own thread (aiosmtpd's Controller)."""

    def __init__(self, settings: Settings, engine: Engine, *,
                 on_stored: Callable[[], None] | None = None,
                 host: str | None = None, port: int | None = None,
                 gate: write_gate.WriteGate | None = None) -> None:
        listen_host, listen_port = parse_listen(settings.smtp.listen)
        self.host = host or listen_host
        self.port = port if port is not None else listen_port
        self.handler = IntakeHandler(engine, settings, on_stored=on_stored, gate=gate)
        self.controller = _IntakeController(
            self.handler, hostname=self.host, port=self.port,
            data_size_limit=settings.smtp.max_message_bytes, enable_SMTPUTF8=True,
            decode_data=False, ident="dsr ESMTP",
        )
        self.started = False

    def start(self) -> None:
        self.controller.start()
        self.started = True

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop accepting (new connections and new mail), let the mail being stored commit and be
        answered, then stop the loop."""
        if not self.started:
            return
        self.handler.closing = True
        server = self.controller.server
        if server is not None:
            self.controller.loop.call_soon_threadsafe(server.close)
        if not self.handler.wait_idle(grace_seconds):
            log.warning("stopping with mail still being stored; its sender will retry")
        self.controller.stop()
        self.handler.close()
        self.started = False
