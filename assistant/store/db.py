"""Opening the database: one engine per URL, SQLite in WAL mode, schema brought to head by Alembic.

Every write transaction takes the write lock before it reads: on SQLite it starts with
BEGIN IMMEDIATE, on PostgreSQL the actions lock the case row (SELECT ... FOR UPDATE). So a check
("is the case still open?") and the write that follows it always see the current state.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlmodel import Session, create_engine

# Package data of this package (no __init__.py), found the way assistant/resources.py finds the
# rest; asked here because the store imports nothing else of the package (DESIGN.md).
MIGRATIONS = Path(str(files(__package__) / "migrations"))
# Any constant works; it only has to be the same for every dsr process on the database.
_MIGRATION_LOCK_KEY = 0x6473720001
# The store imports nothing else of the package, so it names its logger itself (under "dsr", which
# assistant.logs redacts and sends to stderr). URLs are logged with the password hidden.
log = logging.getLogger("dsr.store")
# Seconds a SQLite writer waits for the lock before giving up; `?timeout=N` in the URL overrides.
DEFAULT_SQLITE_TIMEOUT = 30.0
_BUSY_SQLSTATES = frozenset({"55P03", "40001", "40P01"})  # lock timeout, serialization, deadlock
_READONLY_SQLSTATES = frozenset({"25006", "42501"})  # read-only transaction, no privilege


class StoreError(Exception):
    """The database cannot be opened or upgraded; the text says why, without secrets."""


class StoreBusy(StoreError):
    """Another process held the lock longer than the busy timeout: trying again may work."""


class StoreReadOnly(StoreError):
    """The database (or its folder) cannot be written: a setup problem, not a refusal."""


def classify_failure(exc: DBAPIError, engine: Engine) -> StoreError | None:
    """Map a driver error to busy or read-only, so the CLI answers in one line, not a traceback."""
    orig, where = exc.orig, _where(engine)
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(orig, sqlite3.Error) and code is not None:
        primary = code & 0xFF
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StoreBusy(f"the database {where} is busy (locked by another process); try again")
        if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
            return StoreReadOnly(f"the database {where} cannot be written: {_first_line(orig)}")
        return None
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _BUSY_SQLSTATES:
        return StoreBusy(f"the database {where} is busy ({_first_line(orig)}); try again")
    if sqlstate in _READONLY_SQLSTATES:
        return StoreReadOnly(f"the database {where} refused the write: {_first_line(orig)}")
    return None


def _first_line(orig: BaseException | None) -> str:
    line = str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else ""
    return line or "unknown error"


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _sqlite_timeout(query: dict[str, Any]) -> float:
    """The busy timeout: the URL's `timeout` (seconds) when given, so an operator (or a test)
    can choose how long a writer waits; else 30 s."""
    value = query.get("timeout", DEFAULT_SQLITE_TIMEOUT)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StoreError(f"database.url: timeout must be a number of seconds, not {value!r}") from None


def _sqlite_connect(timeout: float) -> Callable[[Any, Any], None]:
    """Connect hook: the busy timeout, WAL, foreign keys, and the driver's own BEGIN switched off
    (isolation_level=None) so that `_sqlite_begin` decides how each transaction starts."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _sqlite_begin(connection: Connection) -> None:
    """BEGIN IMMEDIATE takes the write lock before the first read, so two actions on one case
    run one after the other and each checks the state the other left. Read-only sessions
    (`session_scope(..., write=False)`) use a plain BEGIN: in WAL mode they never wait."""
    if connection.get_execution_options().get("dsr_read_only"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file(database: str | None, query: dict[str, Any]) -> Path | None:
    """The file of a SQLite URL (also of a `file:` URI with uri=true), or None in memory."""
    if not database or database == ":memory:":
        return None
    if query.get("uri") == "true" and database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
    return Path(database).expanduser()


def make_engine(url: str) -> Engine:
    """An engine for a URL; sqlite gets WAL, a busy timeout so concurrent writers wait, and
    BEGIN IMMEDIATE for every write transaction."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"database.url is not a database URL: {url!r}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"database.url: unsupported database kind {parsed.drivername!r}")
    if parsed.get_backend_name() == "sqlite":
        query = dict(parsed.query)
        path = _sqlite_file(parsed.database, query)
        if path is not None and not path.parent.is_dir():
            raise StoreError(f"database.url: the folder {str(path.parent)!r} of the SQLite file does not exist")
        timeout = _sqlite_timeout(query)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})
        event.listen(engine, "connect", _sqlite_connect(timeout))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _at_head(engine: Engine, cfg: AlembicConfig) -> bool:
    """True when the schema needs nothing. Checked with a plain read, so the usual start takes
    no lock at all and a read-only database can still be read."""
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    with engine.connect().execution_options(dsr_read_only=True) as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
        connection.rollback()
    return current == heads


def upgrade(engine: Engine) -> None:
    """Bring the schema to head, serialised: on PostgreSQL under an advisory lock, on SQLite in
    one BEGIN IMMEDIATE transaction (SQLite's DDL is transactional). Processes that start
    together on a new file wait for the first, then find the schema at head and do nothing."""
    cfg = _alembic_config()
    try:
        if _at_head(engine, cfg):
            return
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = connection
            before = MigrationContext.configure(connection).get_current_revision()
            command.upgrade(cfg, "head")
            after = MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        failure = classify_failure(exc, engine)
        if failure is not None:
            raise failure from None
        raise StoreError(f"cannot open database {_where(engine)}: {_first_line(exc.orig)}") from None
    if before != after:
        log.info("database migrated", extra={"url": _safe_url(engine), "from_revision": before,
                                             "to_revision": after})


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
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any exception. On SQLite a write
    session starts with BEGIN IMMEDIATE; `write=False` is for commands that only read. Driver
    errors pass through unchanged; `classify_failure` tells a caller which are busy/read-only."""
    bind = engine if write else engine.execution_options(dsr_read_only=True)
    session = Session(bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
