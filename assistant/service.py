"""`dsr serve`: the channels, the intake worker, the outbox sender and the scheduler, until stopped.

Each stage runs in its own thread and they meet only in the database: the scheduler (APScheduler, scheduler.py) sweeps deadlines and queues digests; the SMTP listener (and the
IMAP listener when ``[imap]`` is configured) store raw mail; the worker decides each stored message
through `workflow`; the sender delivers the outbox. SIGTERM or SIGINT stops accepting first, lets
the message in hand finish (its transaction commits), then exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import tomllib
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from .channels.smtp import SmtpListener
from .config import Settings
from .intake import Worker
from .logs import get_logger
from .outbox import Sender
from .scheduler import SchedulerStage
from .store.db import open_store
from .store.gate import WriteGate

log = get_logger("service")

JOIN_SECONDS = 60.0


def _level_configured(settings: Settings) -> bool:
    """Did the operator choose a log level (environment or their config file)?"""
    if os.environ.get("DSR_LOG__LEVEL") or os.environ.get("DSR_LOG"):
        return True
    if settings.config_file is None:
        return False
    try:
        data = tomllib.loads(settings.config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("log"), dict) and "level" in data["log"]


def service_log_level(settings: Settings) -> None:
    """A service logs every step (INFO) unless the operator chose a level."""
    if not _level_configured(settings):
        logging.getLogger("dsr").setLevel(logging.INFO)


class Service:
    """The stages of `dsr serve`, startable and stoppable from a test as from the CLI."""

    def __init__(self, settings: Settings, engine: Engine | None = None, *,
                 smtp_port: int | None = None, worker_poll: float = 1.0,
                 sender_poll: float = 1.0, sender_base_delay: float = 30.0) -> None:
        self.settings = settings
        self.engine = engine or open_store(settings.database.url)
        self.stop_event = threading.Event()
        # SQLite: the stages' writes take turns in Python, the listener first (store/gate.py).
        gate = WriteGate() if self.engine.dialect.name == "sqlite" else None
        self.gate = gate
        self.worker = Worker(self.engine, settings, poll_seconds=worker_poll, gate=gate)
        self.sender = Sender(self.engine, settings, poll_seconds=sender_poll,
                             base_delay=sender_base_delay, gate=gate)
        self.smtp = SmtpListener(settings, self.engine, on_stored=self._stored, port=smtp_port,
                                 gate=gate)
        self.scheduler = SchedulerStage(self.engine, settings)
        self.threads: list[threading.Thread] = []
        self.imap: Any = None
        self.slack: Any = None

    def _stored(self) -> None:
        self.worker.wake()

    def _thread(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self.stop_event,), name=f"dsr-{name}")
        thread.start()
        self.threads.append(thread)
        log.info("stage started", extra={"stage": name})

    def start(self) -> None:
        self.smtp.start()
        log.info("stage started", extra={"stage": "smtp", "listen": f"{self.smtp.host}:{self.smtp.port}",
                                         "max_message_bytes": self.settings.smtp.max_message_bytes})
        self._thread("intake", self.worker.run)
        self._thread("outbox", self.sender.run)
        self.scheduler.start()
        conf = self.settings.scheduler
        log.info("stage started", extra={"stage": "scheduler", "sweep_minutes": conf.sweep_minutes,
                                         "digest_cron": conf.digest_cron})
        out = self.settings.outbound
        log.info("outbound mail", extra={"via": "relay" if out.host else "maildir",
                                         "port": out.port if out.host else None})
        if self.settings.imap is not None:
            # Written beside this one; imported only when configured, so a service without
            # [imap] needs neither the module nor its library.
            from .channels.imap import ImapListener

            self.imap = ImapListener(self.settings, self.engine)
            self._thread("imap", self.imap.run)
        if self.settings.slack.enabled:
            # The review desk: Socket Mode with an app token, else HTTP with the signing secret.
            from .channels.slack.stage import SlackStage

            self.slack = SlackStage(self.settings, self.engine, on_change=self.sender.wake,
                                    gate=self.gate)
            self.slack.start()
            self._thread("slack-cards", self.slack.run_sync)

    def stop(self) -> None:
        """Stop accepting, then let each stage finish what it holds."""
        self.smtp.stop()
        self.scheduler.stop()
        if self.slack is not None:
            self.slack.stop()
        self.stop_event.set()
        self.worker.wake()
        self.sender.wake()
        for thread in self.threads:
            thread.join(JOIN_SECONDS)
            if thread.is_alive():
                log.warning("stage did not stop in time", extra={"stage": thread.name})
        log.info("service stopped")


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; the exit code (0 on a clean stop)."""
    service_log_level(settings)
    service = Service(settings)
    stopping = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        log.info("dsr serving", extra={"organisations": [o.id for o in settings.organizations]})
        while not stopping.wait(1.0):
            pass
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
