"""The migrations and the models describe one schema: a column or index that only one of them
has is either never created on a real database or never known to the code that queries it."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import assistant.store.models  # noqa: F401  (the tables join SQLModel.metadata)


def test_the_migrated_schema_is_the_models_schema(engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_the_worker_finds_its_queue_through_the_partial_index(engine) -> None:
    """The listener writes each index for every message before its 250, so the message table
    keeps only what is read: the worker's queue is the partial index over `stored` messages."""
    query = ("SELECT id FROM messages WHERE status = 'stored' AND direction = 'in'"
             " ORDER BY received_at, id LIMIT 32")
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {query}")))
            assert "ix_messages_queue" in plan
        indexes = {row[0] for row in connection.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
            if engine.dialect.name == "sqlite" else
            "SELECT indexname FROM pg_indexes WHERE tablename = 'messages'"))}
    assert "ix_messages_queue" in indexes
    assert "ix_messages_sha256" not in indexes and "ix_messages_status" not in indexes
