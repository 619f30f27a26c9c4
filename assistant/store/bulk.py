"""Many rows in few statements, for the paths that write thousands at once (the sweep's
escalations, their audit events and outbox rows).

SQLAlchemy's executemany prepares every row's parameters one by one (a dictionary, each value
through its type), which cost more than the database did. Here each column's bind processor is
looked up once and applied to the row tuples here (so a date or a UTC timestamp is stored
exactly as SQLAlchemy would store it: the digest compares stored timestamps as text on SQLite),
and the statement goes straight to the driver:

- SQLite: the driver's executemany (C, one prepared statement), multi-row VALUES when rows must
  come back (RETURNING), `IN (?, ?, ...)` for a list of keys;
- PostgreSQL: one parameter per column, an array, and `unnest` turning the arrays back into
  rows; `= ANY(array)` for a list of keys. psycopg parsed a statement of thousands of
  placeholders anew each time and spent more per row in executemany than the server did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Connection, Dialect

ROWS_PER_STATEMENT = 1000  # SQLite's multi-row VALUES: 1000 rows x a few columns, far below its limit


def _postgres(dialect: Dialect) -> bool:
    return dialect.name == "postgresql"


def _placeholder(dialect: Dialect) -> str:
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise ValueError(f"unsupported parameter style {dialect.paramstyle!r}")


def _array(dialect: Dialect, column: Column[Any]) -> str:
    """A placeholder for an array of the column's values: `%b::VARCHAR(64)[]`, in psycopg's
    binary format (its text format quoted every element with a regular expression)."""
    return f"%b::{column.type.compile(dialect=dialect)}[]"


def member(connection: Connection, column: Column[Any], values: Sequence[Any]
           ) -> tuple[str, tuple[Any, ...]]:
    """`column IN (the values)` as SQL text for `exec_driver_sql` and its parameters: one array
    on PostgreSQL, a placeholder per value on SQLite."""
    dialect = connection.dialect
    name = dialect.identifier_preparer.quote(column.name)
    if _postgres(dialect):
        return f"{name} = ANY({_array(dialect, column)})", (list(values),)
    marks = ", ".join([_placeholder(dialect)] * len(values))
    return f"{name} IN ({marks})", tuple(values)


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


def _arrays(values: list[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    return tuple([row[i] for row in values] for i in range(width))


def _unnest(dialect: Dialect, table: Table, columns: Sequence[str]) -> str:
    return "unnest(" + ", ".join(_array(dialect, table.c[c]) for c in columns) + ")"


def _names(dialect: Dialect, table: Table, columns: Sequence[str]) -> tuple[str, str]:
    quote = dialect.identifier_preparer.quote
    return quote(table.name), ", ".join(quote(c) for c in columns)


def insert_many(connection: Connection, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """INSERT the rows (tuples in the order of `columns`), in their order: a serial id grows
    with it (the audit trail's events of one chain are read back by id)."""
    if not rows:
        return
    dialect = connection.dialect
    name, names = _names(dialect, table, columns)
    values = bound(dialect, table, columns, rows)
    if _postgres(dialect):
        aliases = ", ".join(f"v{i}" for i in range(len(columns)))
        connection.exec_driver_sql(
            f"INSERT INTO {name} ({names}) SELECT {aliases} FROM"
            f" {_unnest(dialect, table, columns)} WITH ORDINALITY AS v({aliases}, n) ORDER BY n",
            _arrays(values, len(columns)))
        return
    marks = ", ".join([_placeholder(dialect)] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {name} ({names}) VALUES ({marks})", values)


def insert_returning(connection: Connection, table: Table, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]], *, conflict: Sequence[str] | None,
                     returning: Sequence[str]) -> list[tuple[Any, ...]]:
    """INSERT the rows (ON CONFLICT (`conflict`) DO NOTHING when given) and the `returning`
    columns of the rows inserted, in no particular order."""
    if not rows:
        return []
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    name, names = _names(dialect, table, columns)
    tail = (f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING"
            if conflict else "") + f" RETURNING {', '.join(quote(c) for c in returning)}"
    values = bound(dialect, table, columns, rows)
    if _postgres(dialect):
        found = connection.exec_driver_sql(
            f"INSERT INTO {name} ({names}) SELECT * FROM {_unnest(dialect, table, columns)}"
            + tail, _arrays(values, len(columns))).fetchall()
        return [tuple(r) for r in found]
    one = "(" + ", ".join([_placeholder(dialect)] * len(columns)) + ")"
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(values), ROWS_PER_STATEMENT):
        part = values[start:start + ROWS_PER_STATEMENT]
        flat = tuple(v for row in part for v in row)
        sql = f"INSERT INTO {name} ({names}) VALUES {', '.join([one] * len(part))}{tail}"
        out += [tuple(r) for r in connection.exec_driver_sql(sql, flat).fetchall()]
    return out


def update_many(connection: Connection, table: Table, columns: Sequence[str], key: str,
                rows: Sequence[Sequence[Any]]) -> None:
    """UPDATE table SET columns WHERE key = ...; each row is the new values of `columns`
    followed by its key (keys unique)."""
    if not rows:
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    values = bound(dialect, table, [*columns, key], rows)
    if _postgres(dialect):
        names = [*columns, key]
        aliases = ", ".join(f"v{i}" for i in range(len(names)))
        sets = ", ".join(f"{quote(c)} = v.v{i}" for i, c in enumerate(columns))
        connection.exec_driver_sql(
            f"UPDATE {quote(table.name)} SET {sets} FROM {_unnest(dialect, table, names)}"
            f" AS v({aliases}) WHERE {quote(table.name)}.{quote(key)} = v.v{len(columns)}",
            _arrays(values, len(names)))
        return
    mark = _placeholder(dialect)
    sets = ", ".join(f"{quote(c)} = {mark}" for c in columns)
    connection.exec_driver_sql(
        f"UPDATE {quote(table.name)} SET {sets} WHERE {quote(key)} = {mark}", values)
