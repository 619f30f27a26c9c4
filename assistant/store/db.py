"""Opening the database: one engine per URL, SQLite in WAL mode, schema brought to head by Alembic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session, create_engine

# Package data of this package (no __init__.py), found the way assistant/resources.py finds the
# rest; asked here because the store imports nothing else of the package (DESIGN.md).
MIGRATIONS = Path(str(files(__package__) / "migrations"))
# Any constant works; it only has to be the same for every dsr process on the database.
_MIGRATION_LOCK_KEY = 0x6473720001
# The store imports nothing else of the package, so it names its logger itself (under "dsr", which
# assistant.logs redacts and sends to stderr). URLs are logged with the password hidden.
log = logging.getLogger("dsr.store")


class StoreError(Exception):
    """The database cannot be opened or upgraded; the text says why, without secrets."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for a URL; sqlite gets WAL and a busy timeout so concurrent writers wait."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"database.url is not a database URL: {url!r}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"database.url: unsupported database kind {parsed.drivername!r}")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            if not folder.is_dir():
                raise StoreError(f"database.url: the folder {str(folder)!r} of the SQLite file does not exist")
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Bring the schema to head; on PostgreSQL under an advisory lock so instances don't race."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = connection
            before = MigrationContext.configure(connection).get_current_revision()
            command.upgrade(cfg, "head")
            after = MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unknown error"
        raise StoreError(f"cannot open database {engine.url.render_as_string(hide_password=True)}: {reason}") from None
    if before != after:
        log.info("database migrated", extra={"url": _safe_url(engine), "from_revision": before,
                                             "to_revision": after})
    else:
        log.debug("database schema at head", extra={"url": _safe_url(engine), "revision": after})


def _safe_url(engine: Engine) -> str:
    """The URL as an operator may see it: never the password."""
    return engine.url.render_as_string(hide_password=True)


_engines: dict[str, Engine] = {}


def open_store(url: str) -> Engine:
    """Engine for the URL with the schema at head; cached so a process migrates once."""
    engine = _engines.get(url)
    if engine is None:
        engine = make_engine(url)
        upgrade(engine)
        _engines[url] = engine
        log.info("database opened", extra={"url": _safe_url(engine),
                                           "backend": engine.dialect.name})
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any exception."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
