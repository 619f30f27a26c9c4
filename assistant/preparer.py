"""Parsing and classifying in a second process, one batch ahead of the intake worker.

On SQLite one writer at a time holds the lock, and the intake worker is that writer. The pure
work of a message (its MIME parsed, its text classified: about an eighth of its cost) needs no
database, so while the worker writes one batch, a second process prepares the next from the
stored bytes. The worker still claims every message itself (a compare-and-set), so a message
prepared ahead that another worker took meanwhile is skipped, and one that arrived meanwhile is
read with the next batch: nothing is decided here, nothing is lost or done twice.

The process starts only when a full batch waits (a backlog, `dsr import` of years of mail, a
burst): a quiet inbox never pays for it. It is stopped with the worker, and exits by itself when
its parent is gone (SIGKILL included), so it never outlives the service.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from .config import Settings
from .store.db import session_scope
from .store.models import Message

log = logging.getLogger("dsr.intake")

# The worker's queue, as the partial index ix_messages_queue states it (models.Message).
QUEUED = "status = 'stored'"


def stored_rows(engine: Engine, limit: int, exclude: frozenset[int] = frozenset()
                ) -> list[tuple[int, bytes, str | None]]:
    """The oldest stored incoming messages (id, raw bytes, envelope recipients), read without a
    lock, leaving out `exclude` (the ones already in hand)."""
    query = (select(Message.id, Message.raw, Message.envelope_to)
             .where(text(QUEUED), Message.direction == "in"))
    if exclude:
        query = query.where(Message.id.not_in(sorted(exclude)))
    with session_scope(engine, write=False) as session:
        rows = session.execute(query.order_by(Message.received_at, Message.id).limit(limit)).all()
    return [(row[0], row[1], row[2]) for row in rows]


def prepare_rows(settings: Settings, rows: list[tuple[int, bytes, str | None]]) -> list[Any]:
    """Each row prepared (intake.Prepared), or its id alone where preparing failed (the message
    is then handled, and fails, in its own savepoint)."""
    from .intake import prepare  # the intake imports this module

    found: list[Any] = []
    for message_id, raw, envelope_to in rows:
        try:
            found.append(prepare(settings, message_id, raw, envelope_to))
        except Exception:  # noqa: BLE001
            found.append(message_id)
    return found


def item_id(item: Any) -> int:
    return item if isinstance(item, int) else item.id


# -- in the second process ----------------------------------------------------------------------

_CHILD: dict[str, Any] = {}


def _start_child(settings: Settings, parent: int) -> None:
    from .logs import setup_logging

    setup_logging(settings)  # what it logs goes to stderr redacted, as the service's own lines
    _CHILD["settings"] = settings
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _prepare_in_child(rows: list[tuple[int, bytes, str | None]]) -> tuple[list[Any], float]:
    began = time.process_time()
    found = prepare_rows(_CHILD["settings"], rows)
    return found, time.process_time() - began


# -- in the worker ------------------------------------------------------------------------------


class Preparer:
    """Prepares the next batch in a second process while the worker writes this one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cpu_seconds = 0.0  # spent in the second process (the bench prints it)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: Future[tuple[list[Any], float]] | None = None
        self._broken = False

    def next_batch(self, engine: Engine, leftover: list[Any], size: int) -> list[Any]:
        """What the worker writes next: what the last batch did not reach, then what was
        prepared ahead (or, with nothing ahead, the oldest stored messages prepared here); and
        the batch after it is started in the second process when there is a backlog."""
        items = list(leftover)
        if self._pending is not None and len(items) < size:  # at most two batches in hand
            ahead = self._collect()
            have = {item_id(item) for item in items}
            items += [item for item in ahead if item_id(item) not in have]
        if not items:
            items = prepare_rows(self.settings, stored_rows(engine, size))
        if self._pending is None and len(items) >= size and not self._broken:
            self._prepare_after(engine, frozenset(item_id(item) for item in items), size)
        return items

    def _prepare_after(self, engine: Engine, in_hand: frozenset[int], size: int) -> None:
        rows = stored_rows(engine, size, exclude=in_hand)
        if not rows:
            return
        try:
            self._pending = self._started().submit(_prepare_in_child, rows)
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            self._give_up(exc)

    def _collect(self) -> list[Any]:
        pending, self._pending = self._pending, None
        assert pending is not None
        try:
            found, seconds = pending.result()
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            self._give_up(exc)
            return []  # read again and prepared here with the next batch
        self.cpu_seconds += seconds
        return found

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child, initargs=(self.settings, os.getpid()))
            log.info("preparing ahead in a second process")
        return self._pool

    def _give_up(self, exc: BaseException) -> None:
        """The second process is gone: the worker prepares its messages itself from now on."""
        log.warning("preparing ahead stopped; the worker prepares alone",
                    extra={"error": type(exc).__name__})
        self._broken = True
        self.close()

    def close(self) -> None:
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
