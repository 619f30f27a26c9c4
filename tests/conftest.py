"""Shared fixtures: every store test runs on SQLite and, when DSR_TEST_POSTGRES_URL is set,
on a fresh PostgreSQL database created for this test run and dropped after it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
POSTGRES_URL = os.environ.get("DSR_TEST_POSTGRES_URL")
# The limited role the service uses in production (README); CI creates it and sets this.
POSTGRES_APP_ROLE = os.environ.get("DSR_TEST_POSTGRES_APP_ROLE")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No operator config leaks into a test."""
    for key in list(os.environ):
        if key.startswith("DSR_") and not key.startswith("DSR_TEST_POSTGRES_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[tuple[str, str]]:
    """A throwaway database on the PostgreSQL server named by DSR_TEST_POSTGRES_URL, as
    (owner URL, service URL). With DSR_TEST_POSTGRES_APP_ROLE set (CI sets dsr_app) the schema
    is migrated as the owner and the tests run as that limited role, as production should."""
    if not POSTGRES_URL:
        pytest.skip("DSR_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    base = make_url(POSTGRES_URL)
    name = f"dsr_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    owner_url = base.set(database=name).render_as_string(hide_password=False)
    try:
        yield owner_url, _service_url(owner_url)
    finally:
        from assistant.store import db

        for url, engine in list(db._engines.items()):
            if name in url:
                engine.dispose()
                db._engines.pop(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _service_url(owner_url: str) -> str:
    """The URL the tests act through: the owner's, or the limited role's after migrating as the
    owner and granting that role what the service needs (assistant/store/roles.py)."""
    if not POSTGRES_APP_ROLE:
        return owner_url
    from assistant.store.db import open_store
    from assistant.store.roles import service_role_grants

    with open_store(owner_url).begin() as conn:
        for statement in service_role_grants(POSTGRES_APP_ROLE):
            conn.execute(text(statement))
    return make_url(owner_url).set(username=POSTGRES_APP_ROLE, password=None).render_as_string(
        hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url(postgres_database: tuple[str, str]) -> str:
    return postgres_database[1]


def _reset_postgres(url: str) -> None:
    from assistant.store.db import open_store

    engine = open_store(url)
    with engine.begin() as conn:
        # The guards on events (UPDATE/DELETE/TRUNCATE) are switched off for the reset only,
        # then switched back on as they were (ALWAYS or ORIGIN).
        guards = conn.execute(text(
            "SELECT tgname, tgenabled FROM pg_trigger "
            "WHERE tgrelid = 'events'::regclass AND NOT tgisinternal"
        )).all()
        for name, _mode in guards:
            conn.execute(text(f'ALTER TABLE events DISABLE TRIGGER "{name}"'))
        tables = ", ".join(
            ["digests", "scheduler_state", "mailbox_state", "checklist_items", "erasure_tasks", "escalations", "outbox", "verifications", "events",
             "audit_chains", "drafts", "messages", "cases", "case_counters"]
        )
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        for name, mode in guards:
            how = "ENABLE ALWAYS" if mode == "A" else "ENABLE"
            conn.execute(text(f'ALTER TABLE events {how} TRIGGER "{name}"'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL with an empty, migrated schema: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dsr.db'}"
    owner, _service = request.getfixturevalue("postgres_database")
    _reset_postgres(owner)
    return _service_url(owner)  # grants again: a test may have re-run the migrations


@pytest.fixture
def owner_url(db_url: str, request: pytest.FixtureRequest) -> str:
    """The same database as db_url, as the role that owns the schema (for tests that act behind
    the service's back: tampering, migrations)."""
    if db_url.startswith("sqlite"):
        return db_url
    return request.getfixturevalue("postgres_database")[0]


@pytest.fixture
def engine(db_url: str):
    from assistant.store.db import open_store

    return open_store(db_url)


@pytest.fixture
def settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The embedded defaults pointed at the test database."""
    from assistant.config import load_settings

    monkeypatch.setenv("DSR_DATABASE__URL", db_url)
    return load_settings(None)


@pytest.fixture(autouse=True)
def _shipped_data_only() -> Iterator[None]:
    """An operator's [data] folders configured by one test never reach the next."""
    from assistant import resources

    yield
    resources.reset()
