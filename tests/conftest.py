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


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No operator config leaks into a test."""
    for key in list(os.environ):
        if key.startswith("DSR_") and key != "DSR_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A throwaway database on the PostgreSQL server named by DSR_TEST_POSTGRES_URL."""
    if not POSTGRES_URL:
        pytest.skip("DSR_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    base = make_url(POSTGRES_URL)
    name = f"dsr_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from assistant.store import db

        for url, engine in list(db._engines.items()):
            if name in url:
                engine.dispose()
                db._engines.pop(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _reset_postgres(url: str) -> None:
    from assistant.store.db import open_store

    engine = open_store(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_append_only"))
        tables = ", ".join(
            ["mailbox_state", "erasure_tasks", "escalations", "outbox", "verifications", "events", "drafts",
             "messages", "cases", "case_counters"]
        )
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("ALTER TABLE events ENABLE TRIGGER events_append_only"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL with an empty, migrated schema: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dsr.db'}"
    url = request.getfixturevalue("postgres_server_url")
    _reset_postgres(url)
    return url


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
