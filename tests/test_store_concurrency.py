"""Staff actions racing from several processes, first starts racing on a new file, and a
database that is busy or read-only: always one line, never a traceback, never a stale check.

The races are real: separate processes (multiprocessing, spawn) meet at a barrier each round
and then run `dsr` commands on the same case at once. Nothing here measures time; the
assertions are about what the audit trail says happened.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import select

from assistant.store.audit import verify_trail
from assistant.store.db import open_store, session_scope
from assistant.store.models import Case, Event

ACTIONS = ("verify", "close", "extend", "approve", "reject", "reopen")
STATE_EVENT_KINDS = ("verification_requested", "verification_skipped", "verified", "drafted",
                     "approved", "rejected", "closed", "reopened")


def _command(action: str, ref: str, worker: int) -> list[str]:
    by = f"worker{worker}"
    return {
        "verify": ["cases", "verify", ref, "--method", "known_channel", "--by", by],
        "close": ["cases", "close", ref, "--by", by],
        "extend": ["cases", "extend", ref, "--reason", "many systems", "--by", by],
        "approve": ["drafts", "approve", ref, "--by", by],
        "reject": ["drafts", "reject", ref, "--reason", "not ours", "--by", by],
        "reopen": ["cases", "reopen", ref, "--by", by],
    }[action]


def _run_cli(args: list[str]) -> tuple[int, str]:
    """One `dsr` command in this process, as the console entry point runs it: the exit code and
    the one-line message of a refusal. Anything else (a traceback) is returned as code 99."""
    import click

    from assistant.cli import cli

    try:
        cli.main(args=args, prog_name="dsr", standalone_mode=False)
    except click.ClickException as exc:
        return exc.exit_code, exc.format_message()
    except Exception as exc:  # noqa: BLE001 - the test reports it
        return 99, f"{type(exc).__name__}: {exc}"
    return 0, ""


def _race_worker(url: str, refs: list[str], worker: int, barrier, results, seed: int) -> None:
    """Each round: wait for every worker, then fire a few random actions at that round's case."""
    os.environ["DSR_DATABASE__URL"] = url
    rng = random.Random(seed * 1000 + worker)
    outcomes = []
    for ref in refs:
        barrier.wait(timeout=120)
        for action in rng.sample(ACTIONS, 3):
            code, message = _run_cli(_command(action, ref, worker))
            outcomes.append((ref, action, code, message))
    results.put((worker, outcomes))


def _race(url: str, refs: list[str], workers: int, seed: int) -> list[tuple[str, str, int, str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(url, refs, w, barrier, results, seed))
             for w in range(workers)]
    for proc in procs:
        proc.start()
    outcomes = []
    for _ in procs:
        outcomes += results.get(timeout=600)[1]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return outcomes


def _open_cases(url: str, settings, count: int) -> list[str]:
    from datetime import datetime, timezone

    from assistant import workflow

    refs = []
    with session_scope(open_store(url)) as s:
        for i in range(count):
            case = workflow.open_request(
                s, settings, org_id="branninfo", channel="phone",
                received_at=datetime.now(timezone.utc), requester=f"p{i}@example.no",
                intents=["access"], actor="setup")
            refs.append(case.ref)
    return refs


def replay(events: list[Event]) -> tuple[str, list[str]]:
    """Replay one case's events from "opened": the state it ends in and every broken rule."""
    broken: list[str] = []
    state, verified, extended = None, 0, 0
    for e in events:
        detail = json.loads(e.detail)
        if e.kind == "opened":
            state = "received"
            continue
        if "from" in detail:
            if detail["from"] != state:
                broken.append(f"event {e.id} {e.kind}: from {detail['from']}, but the case was {state}")
            if state == "closed" and e.kind != "reopened":
                broken.append(f"event {e.id} {e.kind} landed on a closed case")
            state = detail["to"]
        elif state == "closed":
            broken.append(f"event {e.id} {e.kind} landed on a closed case")
        verified += e.kind == "verified"
        if e.kind == "extended":
            extended += 1
            if state in ("closed", "rejected", "answered"):
                broken.append(f"event {e.id}: extended a {state} case")
    if verified > 1:
        broken.append(f"verified {verified} times")
    if extended > 1:
        broken.append(f"extended {extended} times")
    return state or "?", broken


def test_racing_staff_actions_from_processes_keep_the_trail_true(db_url, settings):
    """verify, close, extend, approve, reject and reopen on one case at once, many rounds."""
    refs = _open_cases(db_url, settings, 12)
    outcomes = _race(db_url, refs, workers=6, seed=13)
    crashes = [o for o in outcomes if o[2] not in (0, 1)]
    assert not crashes, crashes[:5]
    assert not [o for o in outcomes if o[2] == 1 and "busy" in o[3]], "a writer gave up waiting"
    assert sum(o[2] == 0 for o in outcomes) >= len(refs), "the actions hardly ever succeeded"
    with session_scope(open_store(db_url), write=False) as s:
        for ref in refs:
            case = s.execute(select(Case).where(Case.ref == ref)).scalar_one()
            events = list(s.execute(select(Event).where(Event.case_id == case.id)
                                    .order_by(Event.id)).scalars())
            final, broken = replay(events)
            assert not broken, (ref, broken)
            assert final == case.state, (ref, final, case.state)
            assert case.verified == any(e.kind == "verified" for e in events)
            assert case.extended == any(e.kind == "extended" for e in events)
    with session_scope(open_store(db_url), write=False) as s:
        report = verify_trail(s)
    assert report.intact, report.problems[:3]


def test_the_replay_catches_a_stale_from_state():
    """The checker itself: an event whose "from" is not the state before it is named."""
    def ev(i, kind, **detail):
        return Event(id=i, case_id=1, actor="t", kind=kind, detail=json.dumps(detail))

    good = [ev(1, "opened"), ev(2, "verification_requested", **{"from": "received", "to": "awaiting_verification"}),
            ev(3, "closed", **{"from": "awaiting_verification", "to": "closed"})]
    assert replay(good) == ("closed", [])
    stale = good + [ev(4, "verified", **{"from": "awaiting_verification", "to": "verified"}),
                    ev(5, "extended", reason="x")]
    _, broken = replay(stale)
    assert any("from awaiting_verification, but the case was closed" in b for b in broken)
    assert any("landed on a closed case" in b for b in broken)


FIRST_START = textwrap.dedent(
    """
    import sys, time
    from assistant.cli import main
    start_at = float(sys.argv[1])
    while time.time() < start_at:
        time.sleep(0.001)
    main(["cases", "list", "--json"])
    """
)


def test_twelve_first_starts_on_a_new_sqlite_file_all_succeed(tmp_path):
    """The migration is serialised: the first process creates the schema, the others wait for
    its lock and then find it at head (before: "table already exists")."""
    env = dict(os.environ, DSR_DATABASE__URL=f"sqlite:///{tmp_path / 'new.db'}")
    start_at = time.time() + 3.0  # every process imported and waiting before the first starts
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_START, str(start_at)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(12)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert json.loads(out) == []


@pytest.fixture
def org_settings(tmp_path, monkeypatch):
    """The embedded organisations, for the SQLite-only tests (the database URL is their own)."""
    from assistant.config import load_settings

    monkeypatch.setenv("DSR_DATABASE__URL", f"sqlite:///{tmp_path / 'unused.db'}")
    return load_settings(None)


def _dsr(args: list[str], url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    env["DSR_DATABASE__URL"] = url
    return subprocess.run([sys.executable, "-m", "assistant", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_lock_held_too_long_is_one_line_and_exit_1(tmp_path, org_settings):
    path = tmp_path / "busy.db"
    url = f"sqlite:///{path}"
    ref = _open_cases(url, org_settings, 1)[0]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        short = f"{url}?timeout=0.2"
        result = _dsr(["cases", "close", ref, "--by", "kari"], short)
        assert result.returncode == 1, result.stderr
        line = _one_line(result.stderr)
        assert "busy" in line and "try again" in line
        # readers do not wait for the writer (WAL, deferred BEGIN)
        listed = _dsr(["cases", "list", "--json"], short)
        assert listed.returncode == 0, listed.stderr
        assert [c["state"] for c in json.loads(listed.stdout)] == ["awaiting_verification"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _dsr(["cases", "close", ref, "--by", "kari"], url).returncode == 0


def test_a_lock_held_during_the_first_migration_is_busy_not_a_traceback(tmp_path):
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = _dsr(["cases", "list"], f"sqlite:///{path}?timeout=0.2")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1, result.stderr
    assert "busy" in _one_line(result.stderr)


def test_a_read_only_database_is_one_line_and_exit_2(tmp_path, org_settings):
    path = tmp_path / "ro.db"
    ref = _open_cases(f"sqlite:///{path}", org_settings, 1)[0]
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    result = _dsr(["cases", "close", ref, "--by", "kari"], read_only)
    assert result.returncode == 2, result.stderr
    line = _one_line(result.stderr)
    assert "cannot be written" in line or "refused the write" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes files whatever their mode")
def test_a_read_only_file_is_one_line_and_exit_2(tmp_path, org_settings):
    path = tmp_path / "ro.db"
    ref = _open_cases(f"sqlite:///{path}", org_settings, 1)[0]
    for p in tmp_path.iterdir():
        p.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        result = _dsr(["cases", "close", ref, "--by", "kari"], f"sqlite:///{path}")
    finally:
        tmp_path.chmod(0o755)
    assert result.returncode == 2, result.stderr
    _one_line(result.stderr)

