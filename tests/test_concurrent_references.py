"""Two processes creating cases at the same moment never get the same reference."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from sqlalchemy import select

from assistant.store.db import open_store, session_scope
from assistant.store.models import Case

WORKER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timezone
    from assistant.config import load_settings
    from assistant.store.db import open_store, session_scope
    from assistant import cases
    settings = load_settings(None)
    store = open_store(settings.database.url)
    start_at = float(sys.argv[2])
    while time.time() < start_at:
        time.sleep(0.001)
    for i in range(int(sys.argv[1])):
        with session_scope(store) as s:
            cases.open_case(s, settings, org_id="branninfo", channel="email",
                            received_at=datetime(2026, 5, 5, 10, tzinfo=timezone.utc),
                            requester=f"p{i}@example.no", intents=["access"])
    """
)


def test_parallel_processes_get_distinct_consecutive_references(db_url):
    open_store(db_url)  # migrate once up front, as `dsr serve` would
    env = dict(os.environ, DSR_DATABASE__URL=db_url)
    start_at = time.time() + 2.0
    per_process, processes = 30, 3
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(per_process), str(start_at)], env=env,
                         stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    with session_scope(open_store(db_url)) as s:
        refs = [c.ref for c in s.execute(select(Case)).scalars()]
    total = per_process * processes
    assert len(refs) == total
    assert len(set(refs)) == total
    assert sorted(refs) == [f"DSR-2026-{n:04d}" for n in range(1, total + 1)]
