"""One writer at a time inside one process, the SMTP listener first.

SQLite has a single write lock. When two threads of `dsr serve` want it, the loser sleeps in
SQLite's busy handler (1, 2, 5, … up to 100 ms at a time) and the intake worker, draining a
backlog, takes the lock again before the listener wakes: mail acceptance then starved. The gate
serialises the writers in Python instead, without sleeps, and lets a waiting listener (urgent:
a client is waiting for its 250) go before the worker and the sender (background). Other
processes still meet at SQLite's own lock. PostgreSQL locks rows, not the database: no gate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext


class WriteGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    @contextmanager
    def urgent(self) -> Iterator[None]:
        with self._cond:
            self._urgent_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy)
            finally:
                self._urgent_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def background(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._busy and not self._urgent_waiting)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def try_urgent(self) -> bool:
        """Take the gate only if it is free at once (the SMTP listener's event loop, which must
        not wait); `release` gives it back."""
        with self._cond:
            if self._busy:
                return False
            self._busy = True
            return True

    def release(self) -> None:
        self._release()

    def contended(self) -> bool:
        """Is an urgent writer (the listener) waiting? A background writer holding the gate for
        a batch ends it early then."""
        return self._urgent_waiting > 0

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()


def urgent(gate: WriteGate | None) -> ContextManager[None]:
    return gate.urgent() if gate is not None else nullcontext()


def background(gate: WriteGate | None) -> ContextManager[None]:
    return gate.background() if gate is not None else nullcontext()
