"""The SMTP listener: mail sent to an organisation's privacy address, stored before 250.

The aiosmtpd handler pattern with its threaded Controller. At RCPT an address that belongs to no
organisation gets ``550 5.1.1``; mail larger than ``smtp.max_message_bytes`` gets 552 from
aiosmtpd itself; SMTPUTF8 is accepted. At DATA the raw bytes are stored (channels.store: once per
Message-ID and hash) and COMMITTED in a worker thread, so the event loop keeps serving other
connections, and only then does the client get ``250``. Anything that goes wrong answers
``451 4.3.0``, a temporary failure the client retries: an exception escaping ``handle_DATA``
would become aiosmtpd's ``500``, a permanent failure, and the mail would bounce and be lost.

The listener decides nothing: the intake worker reads the stored rows (`on_stored` may wake it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine

from ..config import Settings
from ..store import gate as write_gate
from ..store.db import session_scope
from .store import store_raw

# Ids and sizes only: never an address or a subject (the redacting formatter is the safety net).
log = logging.getLogger("dsr.channels.smtp")

REPLY_STORED = "250 2.0.0 Message accepted"
REPLY_TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
REPLY_NO_MAILBOX = "550 5.1.1 No such mailbox here"
REPLY_SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"


class IntakeHandler:
    """aiosmtpd handler: accepts only our organisations' addresses, stores, then says 250."""

    def __init__(self, engine: Engine, settings: Settings, *,
                 executor: ThreadPoolExecutor | None = None,
                 on_stored: Callable[[], None] | None = None,
                 gate: write_gate.WriteGate | None = None) -> None:
        self.engine, self.settings, self.gate = engine, settings, gate
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        # SQLite's busy handler (milliseconds at a time): one storing thread is faster there.
        writers = 1 if engine.dialect.name == "sqlite" else 4
        self.executor = executor or ThreadPoolExecutor(max_workers=writers,
                                                       thread_name_prefix="smtp-store")
        self.on_stored = on_stored
        self.closing = False
        self._in_flight = 0
        self._idle = threading.Condition()

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
        try:
            raw = envelope.original_content or envelope.content or b""
            if isinstance(raw, str):  # decode_data=True was configured somewhere: keep bytes
                raw = raw.encode("utf-8", "surrogateescape")
            received_at = datetime.now(timezone.utc)
            loop = asyncio.get_running_loop()
            message_id, new = await loop.run_in_executor(
                self.executor, self.store, bytes(raw), received_at, envelope.mail_from,
                list(envelope.rcpt_tos))
        except Exception as exc:  # noqa: BLE001
            log.warning("message not stored; asked the client to retry",
                        extra={"error": type(exc).__name__, "bytes": len(envelope.content or b"")})
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

    def store(self, raw: bytes, received_at: datetime, mail_from: str | None,
              rcpt_tos: list[str]) -> tuple[int | None, bool]:
        """Store and commit (in a worker thread); returns (row id, whether it was new)."""
        with write_gate.urgent(self.gate), session_scope(self.engine) as session:
            message, new = store_raw(session, channel="smtp", raw=raw, received_at=received_at,
                                     envelope_from=mail_from or None, envelope_to=rcpt_tos)
            session.flush()
            return message.id, new

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no DATA is being stored; False if that took longer than `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


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
        self.controller = Controller(
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
        self.handler.executor.shutdown(wait=True)
        self.started = False
