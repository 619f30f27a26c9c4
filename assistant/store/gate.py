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
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext


class WriteGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0
        # Counters the worker reads to tell a flood from a steady trickle: how often the listener
        # wrote, and how often it found a background writer in its way.
        self.urgent_writes = 0
        self.urgent_waits = 0

    @contextmanager
    def urgent(self) -> Iterator[None]:
        with self._cond:
            if self._busy:
                self.urgent_waits += 1
            self._urgent_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy)
            finally:
                self._urgent_waiting -= 1
            self._busy = True
            self.urgent_writes += 1
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
                self.urgent_waits += 1  # the listener takes the slower road, in a thread
                return False
            self._busy = True
            self.urgent_writes += 1
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


# In a flood (the listener writing more than FLOOD_RATE messages a second: senders are waiting
# for their 250s), a background writer steps aside STEP_ASIDE_SECONDS at a time before each
# write, and still takes a turn at least every LONGEST_STEP_ASIDE seconds. At a steady trickle
# it never steps aside.
STEP_ASIDE_SECONDS = 0.05
LONGEST_STEP_ASIDE = 1.0
FLOOD_RATE = 150.0


class Flow:
    """What a background writer (the intake worker, the outbox sender) looks at before each
    write: is mail pouring in? Then the listener goes first: its clients wait for their 250s,
    while stored mail is safe and can be decided and answered a little later. Within one
    process the writers share one interpreter, and a thread that has work to do slows the
    listener's event loop even while it waits for the gate."""

    def __init__(self, gate: WriteGate | None) -> None:
        self.gate = gate
        self._at = self._turn = time.monotonic()
        self._writes = gate.urgent_writes if gate is not None else 0
        self._waits = gate.urgent_waits if gate is not None else 0

    def give_way(self, stop: threading.Event | None) -> bool:
        """Step aside a moment if mail pours in (True: the caller looks again), unless this
        writer has not had a turn for LONGEST_STEP_ASIDE seconds. Mail pours in when the
        listener writes more than FLOOD_RATE messages a second, or had to wait for a background
        writer twice since the last look: background work slows the listener down, so its rate
        alone would make a flood look like a trickle."""
        if self.gate is None:
            return False
        now, writes, waits = time.monotonic(), self.gate.urgent_writes, self.gate.urgent_waits
        rate = (writes - self._writes) / max(now - self._at, 0.02)
        pressed = waits - self._waits >= 2
        self._at, self._writes, self._waits = now, writes, waits
        if (rate > FLOOD_RATE or pressed) and now - self._turn < LONGEST_STEP_ASIDE:
            if stop is not None:
                stop.wait(STEP_ASIDE_SECONDS)
            else:
                time.sleep(STEP_ASIDE_SECONDS)
            return True
        self._turn = now
        return False
