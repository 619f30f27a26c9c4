"""Many rows in few statements, for the paths that write thousands at once (the sweep's
escalations, their audit events and outbox rows).

SQLAlchemy's executemany prepares every row's parameters one by one (a dictionary, each value
through its type), which cost more than the database did. Here each column's bind processor is
looked up once, applied to the row tuples here (so a date or a UTC timestamp is stored exactly
as SQLAlchemy would store it: the digest compares stored timestamps as text on SQLite), and the
statement goes to the driver with its own placeholders: an executemany, or one multi-row
VALUES when rows must come back (RETURNING).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Dialect

ROWS_PER_STATEMENT = 1000  # multi-row VALUES: 1000 rows x a few columns, far below both limits


def placeholders(connection: Connection, count: int) -> str:
    """`count` of the driver's placeholders, comma-separated: for an IN list of plain values
    passed with `exec_driver_sql` (SQLAlchemy's expanding IN handled each value itself)."""
    return ", ".join([_placeholder(connection.dialect)] * count)


def _placeholder(dialect: Dialect) -> str:
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise ValueError(f"unsupported parameter style {dialect.paramstyle!r}")


def _processors(dialect: Dialect, table: Table, columns: Sequence[str]
                ) -> list[Callable[[Any], Any] | None]:
    return [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]


def bound(dialect: Dialect, table: Table, columns: Sequence[str],
          rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The rows as the driver receives them: each value through its column's bind processor."""
    processors = _processors(dialect, table, columns)
    if not any(processors):
        return [tuple(row) for row in rows]
    # Dates and timestamps repeat (a batch's rows share their moment): each converted once.
    steps = [(i, process, {}) for i, process in enumerate(processors) if process is not None]
    out = []
    for row in rows:
        values = list(row)
        for i, process, seen in steps:
            value = values[i]
            if value is None:
                continue
            if isinstance(value, date):
                if value not in seen:
                    seen[value] = process(value)
                values[i] = seen[value]
            else:
                values[i] = process(value)
        out.append(tuple(values))
    return out


def _names(dialect: Dialect, table: Table, columns: Sequence[str]) -> tuple[str, str]:
    quote = dialect.identifier_preparer.quote
    return quote(table.name), ", ".join(quote(c) for c in columns)


def insert_many(connection: Connection, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """INSERT the rows (tuples in the order of `columns`) with one executemany."""
    if not rows:
        return
    dialect = connection.dialect
    name, names = _names(dialect, table, columns)
    marks = ", ".join([_placeholder(dialect)] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {name} ({names}) VALUES ({marks})",
                               bound(dialect, table, columns, rows))


def insert_returning(connection: Connection, table: Table, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]], *, conflict: Sequence[str] | None,
                     returning: Sequence[str]) -> list[tuple[Any, ...]]:
    """INSERT the rows as multi-row VALUES statements (ON CONFLICT (`conflict`) DO NOTHING when
    given) and the `returning` columns of the rows inserted, in no particular order."""
    if not rows:
        return []
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    name, names = _names(dialect, table, columns)
    one = "(" + ", ".join([_placeholder(dialect)] * len(columns)) + ")"
    tail = (f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING"
            if conflict else "") + f" RETURNING {', '.join(quote(c) for c in returning)}"
    values = bound(dialect, table, columns, rows)
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(values), ROWS_PER_STATEMENT):
        part = values[start:start + ROWS_PER_STATEMENT]
        flat = tuple(v for row in part for v in row)
        sql = f"INSERT INTO {name} ({names}) VALUES {', '.join([one] * len(part))}{tail}"
        found += [tuple(r) for r in connection.exec_driver_sql(sql, flat).fetchall()]
    return found


def update_many(connection: Connection, table: Table, columns: Sequence[str], key: str,
                rows: Sequence[Sequence[Any]]) -> None:
    """UPDATE table SET columns WHERE key = ..., one executemany; each row is the new values
    of `columns` followed by the key."""
    if not rows:
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    mark = _placeholder(dialect)
    sets = ", ".join(f"{quote(c)} = {mark}" for c in columns)
    connection.exec_driver_sql(
        f"UPDATE {quote(table.name)} SET {sets} WHERE {quote(key)} = {mark}",
        bound(dialect, table, [*columns, key], rows))
