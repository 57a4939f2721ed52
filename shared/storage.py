"""Storage: SQLModel on SQLite (embedded) or PostgreSQL (production), one database per service.

Holds the plumbing tables every service has — the transactional outbox, the inbox of processed events,
the relay's memory of the broker — and the unit of work that commits a state change together with
the events it causes.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine, select

from shared.clock import Clock
from shared.events import Envelope, Event, to_kafka
from shared.topics import dlq_name, topic_name


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class OutboxRecord(SQLModel, table=True):
    """An event waiting to be published (or published, kept for replay until the retention ends)."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_pending", "published_at", "seq"),
        # The relay's next rows, in order, in an index of their own: it stays small however many published
        # rows the table keeps, so no planner ever prefers walking the whole table by its key.
        sa.Index(
            "ix_outbox_unpublished",
            "seq",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
    )

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200, unique=True)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    headers: list[list[str]] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    payload: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    published_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    # Where the broker put it: to notice a topic that lost what was published to it.
    partition: int | None = None
    offset: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


class InboxRecord(SQLModel, table=True):
    """An event a consumer has dealt with: recorded in the same transaction as its effect."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=200)
    outcome: str = Field(max_length=20)  # processed | dead_letter
    processed_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class RelayState(SQLModel, table=True):
    """Which broker cluster the outbox was last published to."""

    __tablename__ = "relay_state"

    id: int = Field(default=1, primary_key=True)
    cluster_id: str = Field(max_length=200)
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


PLUMBING_TABLES = ("outbox", "inbox", "relay_state")
CHUNK = 500  # values per IN (…) list: well under every database's limit on parameters


def chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    """Distinct values, sorted, in lists of at most CHUNK."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


KEY_CHUNK = 5000  # whole keys per lookup: they travel as one parameter per column, not one per value


_KEY_JOINS: dict[tuple[str, ...], Any] = {}


def _by_keys(dialect: str, columns: tuple[Any, ...]) -> Any:
    """The table-valued list of keys a lookup by whole keys joins on, and the join condition, built once
    per dialect and key (the statement is then compiled once, whatever the keys)."""
    name = (dialect, *(str(c) for c in columns))
    if name not in _KEY_JOINS:
        _KEY_JOINS[name] = _key_join(dialect, columns)
    return _KEY_JOINS[name]


def _unnested(columns: Iterable[Any], name: str, numbered: bool = False) -> Any:
    """PostgreSQL: rows sent as one array parameter per column (`<name>_<column>`), as a table named
    `name` (`unnest` of the arrays); `numbered` adds each row's place, from 1, as `ordinality`. The way
    for rows JSON cannot carry (see `_records`)."""
    columns = list(columns)
    arrays = [sa.bindparam(f"{name}_{c.key}", type_=postgresql.ARRAY(c.type, dimensions=1)) for c in columns]
    given = sa.func.unnest(*arrays).table_valued(
        *(c.key for c in columns), with_ordinality="ordinality" if numbered else None
    )
    return given.render_derived(name=name)


_POSTGRESQL = postgresql.dialect()


def _recordset(table: sa.Table, names: Iterable[str], name: str, numbered: bool = False) -> Any:
    """PostgreSQL: rows sent as one JSON parameter `name` (a list of objects, keyed by column), as a table
    named `name` with `table`'s columns and types (`json_populate_recordset`); `numbered` adds each row's
    place, from 1, as `ordinality`. The driver sends one text written by orjson, where arrays of values
    cost it ten times the time in Python (and the server twice the time)."""
    record: Any = sa.literal_column(f"NULL::{_POSTGRESQL.identifier_preparer.format_table(table)}")
    # UTF-8 bytes, as orjson writes them: no copy as a Python string on the way
    text = sa.cast(sa.func.convert_from(sa.bindparam(name, type_=sa.LargeBinary), "UTF8"), postgresql.JSON)
    rows = sa.func.json_populate_recordset(record, text)
    return rows.table_valued(*names, with_ordinality="ordinality" if numbered else None).alias(name)


def _records(table: sa.Table, names: list[str], rows: list[dict[str, Any]]) -> bytes | None:
    """`rows` (dicts keyed by column) as the JSON text `_recordset` reads, or None where JSON would not
    carry a value as the driver does: a value orjson cannot write, a non-finite number (orjson writes
    null), a JSON column's value orjson writes otherwise than `json_text` would, or none at all where the
    column wants one (JSON null: the recordset reads an SQL null)."""
    columns = [table.c[name] for name in names]
    if any(column.name != column.key for column in columns):
        return None
    binary = [c.key for c in columns if isinstance(c.type, sa.LargeBinary)]
    documents = [c.key for c in columns if isinstance(c.type, sa.JSON)]
    required = [c.key for c in columns if isinstance(c.type, sa.JSON) and not c.nullable]
    numbers = [c.key for c in columns if isinstance(c.type, sa.Float)]
    if any(row[name] is None for row in rows for name in required):
        return None
    if any(isinstance(row[name], float) and not math.isfinite(row[name]) for row in rows for name in numbers):
        return None
    if binary:  # bytea's text form: \x and the bytes in hexadecimal
        rows = [row | {name: _hex(row[name]) for name in binary} for row in rows]
    try:
        if documents:
            values = [row[name] for row in rows for name in documents]
            if orjson.loads(orjson.dumps(values)) != values:
                return None
        return orjson.dumps(rows)
    except TypeError:  # orjson.JSONEncodeError
        return None


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "\\x" + bytes(value).hex()


def _key_join(dialect: str, columns: tuple[Any, ...]) -> Any:
    if dialect == "postgresql":
        named = [c.expression for c in columns]  # the table's columns, by their names in the database
        keys = _recordset(named[0].table, (c.name for c in named), "keys")
        return keys, sa.and_(*(c == keys.c[c.name] for c in named))
    keys = sa.func.json_each(sa.bindparam("keys")).table_valued("value").alias("keys")
    return keys, sa.and_(*(c == sa.func.json_extract(keys.c.value, f"$[{n}]") for n, c in enumerate(columns)))


def _key_parameters(dialect: str, columns: tuple[Any, ...], keys: list[tuple[Any, ...]]) -> dict[str, Any]:
    found: list[Any] = keys
    if dialect == "postgresql":
        names = [c.expression.name for c in columns]
        found = [dict(zip(names, key, strict=True)) for key in keys]
    try:  # keys are text and integers, which orjson writes as the standard library does
        written = orjson.dumps(found)
    except TypeError:  # an integer beyond 64 bits
        written = json.dumps(found).encode()
    return {"keys": written if dialect == "postgresql" else written.decode()}


def _lookups(session: Session, column: Any, values: Iterable[Any], query: Any) -> Iterator[Any]:
    """`query` cut to rows whose `column` (a text or integer column, or a tuple of them: whole keys) is one
    of `values`, as statements with their parameters.

    The values go as one table-valued parameter (JSON, see `_recordset` on PostgreSQL) joined
    on the columns: each is looked up in the index, where `(a, b, c) IN (…)` makes both databases read
    far more than they need, and a long `a IN (…)` is a statement of its own for each number of values."""
    if not isinstance(column, tuple):
        column, values = (column,), [(value,) for value in set(values)]
    dialect = session.get_bind().dialect.name
    keys, on = _by_keys(dialect, column)
    ordered = sorted(set(values))
    for start in range(0, len(ordered), KEY_CHUNK):
        part = ordered[start : start + KEY_CHUNK]
        yield query.join(keys, on), _key_parameters(dialect, column, part)


def rows_in(session: Session, column: Any, values: Iterable[Any], *where: Any) -> list[Any]:
    """The rows of `column`'s table whose `column` (or tuple of columns) is one of `values`, and that match
    `where`, read in a few queries however many values there are: set-based work, not a query per event."""
    model = (column[0] if isinstance(column, tuple) else column).class_
    found: list[Any] = []
    for query, parameters in _lookups(session, column, values, select(model).where(*where)):
        found.extend(session.exec(query, params=parameters).all())
    return found


def columns_in(
    session: Session, columns: tuple[Any, ...], column: Any, values: Iterable[Any], *where: Any
) -> list[Any]:
    """Like rows_in, but only `columns`, as plain tuples: for reading many rows fast (no ORM objects)."""
    found: list[Any] = []
    for query, parameters in _lookups(session, column, values, sa.select(*columns).where(*where)):
        found.extend(session.execute(query, parameters).all())
    return found


def table_of(model: Any) -> sa.Table:
    table: sa.Table = model.__table__
    return table


# On PostgreSQL a bulk write is one statement over the rows sent as one JSON text, not a statement per
# row: for a batch of reports, a third of the server's time and three quarters of the client's.
def _set_based(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _arrays(names: list[str], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {f"rows_{name}": [row[name] for row in rows] for name in names}


def _rows_parameters(
    table: sa.Table, names: list[str], rows: list[dict[str, Any]]
) -> tuple[bool, dict[str, Any]]:
    """PostgreSQL: the parameters that send `rows` (their `names` columns) to a statement reading them as
    the table `rows`: one JSON text wherever it carries every value (True), else an array per column."""
    text = _records(table, names, rows)
    if text is not None:
        return True, {"rows": text}
    return False, _arrays(names, rows)


def _rows_table(table: sa.Table, names: list[str], as_json: bool, numbered: bool = False) -> Any:
    if as_json:
        return _recordset(table, names, "rows", numbered)
    return _unnested((table.c[name] for name in names), "rows", numbered)


ROWS_PER_STATEMENT = 2000  # a bulk write's text stays a few megabytes, however many rows it has


def _parts(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        yield rows[start : start + ROWS_PER_STATEMENT]


# Bulk statements without conditions of their own, built once per table, columns and form of the rows:
# building one costs more than running it for a row or two (a transaction per phase event, an outbox row).
_STATEMENTS: dict[tuple[Any, ...], Any] = {}


def _built(shape: tuple[Any, ...] | None, build: Callable[[bool], Any], as_json: bool) -> Any:
    """The statement `build(as_json)` makes, built once for `shape` and the rows' form (or each time, for
    no shape: a statement with conditions of its own)."""
    if shape is None:
        return build(as_json)
    if (*shape, as_json) not in _STATEMENTS:
        _STATEMENTS[(*shape, as_json)] = build(as_json)
    return _STATEMENTS[(*shape, as_json)]


def insert_rows(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows (dicts with every column) in a statement per ROWS_PER_STATEMENT, below the ORM: for
    writing many rows fast."""
    if not rows:
        return
    table = table_of(model)
    if _set_based(session):
        names = list(rows[0])
        missing = [column for column in table.c if column.key not in rows[0]]
        if all(column.default is None or column.default.is_scalar for column in missing):

            def insert(as_json: bool) -> Any:
                given = _rows_table(table, names, as_json, numbered=True)
                in_order = sa.select(*(given.c[name] for name in names)).order_by(given.c.ordinality)
                return table.insert().from_select(names, in_order)  # serial keys follow the rows' order

            for part in _parts(rows):
                as_json, parameters = _rows_parameters(table, names, part)
                session.connection().execute(
                    _built(("insert", table, tuple(names)), insert, as_json), parameters
                )
            return
    execute_many(session, table.insert, rows, table, shape=("insert", table.name))


def update_rows(
    session: Session, model: Any, key: tuple[str, ...], rows: list[dict[str, Any]], *where: Any
) -> None:
    """Update rows found by their `key` columns (that match `where`) to the other values each dict holds,
    in a statement per ROWS_PER_STATEMENT, below the ORM."""
    if not rows:
        return
    table = table_of(model)
    changed = [name for name in rows[0] if name not in key]
    if _set_based(session):
        latest = {tuple(row[name] for name in key): row for row in rows}  # the last change to a row wins
        # Changes to one row under conditions are applied one after the other (the first may void the next).
        if len(latest) == len(rows) or not where:

            def update(as_json: bool) -> Any:
                given = _rows_table(table, [*key, *changed], as_json)
                return (
                    table.update()
                    .where(*(table.c[name] == given.c[name] for name in key), *where)
                    .values({name: given.c[name] for name in changed})
                )

            for part in _parts(list(latest.values())):
                as_json, parameters = _rows_parameters(table, [*key, *changed], part)
                shape = None if where else ("update", table, key, tuple(changed))
                session.connection().execute(_built(shape, update, as_json), parameters)
            return

    def statement() -> Any:
        return (
            table.update()
            .where(*(table.c[name] == sa.bindparam(f"key_{name}") for name in key), *where)
            .values({name: sa.bindparam(f"new_{name}") for name in changed})
        )

    execute_many(
        session,
        statement,
        [{f"{'key' if name in key else 'new'}_{name}": value for name, value in row.items()} for row in rows],
        shape=None if where else ("update", table.name, key),
    )


def delete_rows(session: Session, model: Any, key: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Delete rows found by their `key` columns, in a statement per ROWS_PER_STATEMENT, below the ORM."""
    if not rows:
        return
    table = table_of(model)
    if _set_based(session):

        def delete(as_json: bool) -> Any:
            given = _rows_table(table, list(key), as_json)
            return table.delete().where(*(table.c[name] == given.c[name] for name in key))

        for part in _parts([{name: row[name] for name in key} for row in rows]):
            as_json, parameters = _rows_parameters(table, list(key), part)
            session.connection().execute(_built(("delete", table, key), delete, as_json), parameters)
        return

    def statement() -> Any:
        return table.delete().where(*(table.c[name] == sa.bindparam(f"key_{name}") for name in key))

    keys = [{f"key_{name}": row[name] for name in key} for row in rows]
    execute_many(session, statement, keys, shape=("delete", table.name, key))


@dataclass(frozen=True)
class BulkStatement:
    """A statement compiled for one database and one set of row keys, with what its executemany needs:
    the values the driver takes, in its order, how each is converted, and those the rows leave out."""

    statement: Any
    sql: str
    names: tuple[str, ...]
    parameter_names: tuple[str, ...] | None  # None: the driver takes values by position
    fixed: dict[str, Any]
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults_per_row: bool  # a column default made for each row: SQLAlchemy runs the statement

    @classmethod
    def compile(
        cls, statement: Any, dialect: Any, given: Iterable[str], table: sa.Table | None
    ) -> BulkStatement:
        """`statement` compiled for `dialect` and rows with the keys `given`; `table` gives the defaults of
        the columns the rows leave out."""
        given = list(given)
        compiled = statement.compile(dialect=dialect, column_keys=given)
        fixed: dict[str, Any] = {}
        per_row = False
        for name, bind in compiled.binds.items():
            if name in given:
                continue
            column = table.c.get(name) if table is not None else None
            default = column.default if column is not None else None
            if default is None:
                fixed[name] = bind.effective_value
            elif isinstance(default, sa.ColumnDefault) and default.is_scalar:
                fixed[name] = default.arg
            else:
                per_row = True
        names = tuple(compiled.positiontup if compiled.positional else compiled.binds)
        return cls(
            statement=statement,
            sql=compiled.string,
            names=names,
            parameter_names=None
            if compiled.positional
            else tuple(compiled.escaped_bind_names.get(name, name) for name in names),
            fixed=fixed,
            processors=tuple(
                compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
            ),
            defaults_per_row=per_row,
        )


_COMPILED: dict[tuple[Any, ...], BulkStatement] = {}
_NOTHING = object()


def execute_many(
    session: Session,
    statement: Callable[[], Any],
    rows: list[dict[str, Any]],
    table: sa.Table | None = None,
    shape: tuple[Any, ...] | None = None,
) -> None:
    """Run the statement `statement()` makes once for each row (dicts with the same keys), as one
    executemany of the database driver. SQLAlchemy compiles the statement (once per database, `shape`
    and row keys, when a `shape` names it) and its column types convert the values, as it would itself;
    what it skips is its bookkeeping for each row, a tenth of a busy consumer's time. A value the rows
    leave out is its column's default (a default made per row leaves the statement to SQLAlchemy)."""
    connection = session.connection()
    dialect = connection.dialect
    cache_key = None if shape is None else (dialect.name, dialect.driver, *shape, tuple(rows[0]))
    bulk = _COMPILED.get(cache_key) if cache_key else None
    if bulk is None:
        bulk = BulkStatement.compile(statement(), dialect, rows[0].keys(), table)
        if cache_key:
            _COMPILED[cache_key] = bulk
    if bulk.defaults_per_row:
        connection.execute(bulk.statement, rows)
        return
    fixed = bulk.fixed
    values = [[row[name] if name in row else fixed[name] for name in bulk.names] for row in rows]
    for position, processor in enumerate(bulk.processors):
        if processor is not None:
            # A value many rows share (the batch's time) is converted once.
            last: Any = _NOTHING
            for row_values in values:
                if row_values[position] is not last:
                    last, converted = row_values[position], processor(row_values[position])
                row_values[position] = converted
    if bulk.parameter_names is None:
        parameters: list[Any] = [tuple(row_values) for row_values in values]
    else:
        parameters = [dict(zip(bulk.parameter_names, row_values, strict=True)) for row_values in values]
    connection.exec_driver_sql(bulk.sql, parameters)


# An integer of 19 digits or more may not fit in 64 bits, which orjson would read as a float. Long runs of
# digits are found with every digit made a 0: one pass in C, where a regular expression takes longer
# than reading the document.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def json_value(text: str | bytes) -> Any:
    """A JSON column's value, read with orjson (several times faster than the standard library on the
    small documents every batch reads) wherever it reads exactly what the standard library would:
    documents with very long numbers, non-finite numbers or lone surrogates are read by the latter."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def json_text(value: Any) -> str:
    """A JSON column's text, written with orjson (several times faster than the standard library) wherever
    it writes what the latter would, as reading it back shows: non-finite numbers (orjson writes null),
    integers beyond 64 bits, keys that are not text and values JSON has no word for are written (or
    refused) by the standard library."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)
    if orjson.loads(text) != value:
        return json.dumps(value)
    return text.decode()


def make_engine(url: str, writes: bool = True) -> Engine:
    """An engine for a service database; SQLite gets WAL, a busy timeout and working savepoints, and its
    writing transactions take the write lock at once (readers, with WAL, never wait for a writer)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connect = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(
            url, connect_args=connect, json_serializer=json_text, json_deserializer=json_value
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (savepoints work).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Fewer, larger checkpoints: pages a busy consumer writes in every batch are copied back once.
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # Take the write lock up front: a reader that later writes cannot then fail to upgrade.
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

        return engine
    # Every statement is planned for its own parameters and the statistics of the moment: a generic plan
    # kept with a prepared statement, made while a table was small, goes on scanning it whole once it is
    # large. (Statements are still prepared: parsed once per connection.)
    options = {"options": "-c plan_cache_mode=force_custom_plan"}
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args=options,
        json_serializer=json_text,
        json_deserializer=json_value,
    )


class UnitOfWork:
    """One transaction: the state it changes and the events it causes commit together, or not at all."""

    def __init__(
        self,
        session: Session,
        source: str,
        prefix: str,
        clock: Clock,
        memory: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.source = source
        self.prefix = prefix
        self.clock = clock
        # What the service keeps between transactions (its database's, see Database.memory).
        self.memory: dict[str, Any] = {} if memory is None else memory
        self.published: list[Envelope] = []
        self.outbox_written = 0
        # Scratch space for one batch: handlers note what the end-of-batch steps must refresh.
        self.batch: dict[str, Any] = {}
        # What the batch has read or written, kept so that later steps need not read it again. Dropped when
        # a savepoint rolls back: what it holds may no longer be what the database holds.
        self.cache: dict[str, Any] = {}

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction; rolled back, it takes the batch's cache with it."""
        try:
            with self.session.begin_nested():
                yield
        except BaseException:
            self.cache.clear()
            raise

    def publish(
        self,
        data: Event,
        *,
        unit: str,
        correlation_id: str | None = None,
        causation: Envelope | None = None,
    ) -> Envelope:
        """Record `data` in the outbox; the relay publishes it once this transaction commits."""
        return self.publish_many([data], units=[unit], correlation_id=correlation_id, causation=causation)[0]

    def publish_many(
        self,
        events: list[Event],
        *,
        units: list[str],
        correlation_id: str | None = None,
        causation: Envelope | None = None,
    ) -> list[Envelope]:
        """Record events (each sent by the unit at the same place in `units`) in the outbox with one
        insert, in order; the relay publishes them once this transaction commits."""
        now = self.clock.now()
        envelopes = [
            Envelope.wrap(
                data,
                source=self.source,
                unit=unit,
                time=now,
                correlation_id=correlation_id or (causation.correlation_id if causation else None),
                causation_id=causation.id if causation else None,
            )
            for data, unit in zip(events, units, strict=True)
        ]
        rows = []
        for envelope in envelopes:
            key, value, headers = to_kafka(envelope)
            rows.append(
                {
                    "event_id": envelope.id,
                    "topic": topic_name(self.prefix, envelope.data.stream),
                    "key": key.decode(),
                    "headers": [[name, raw.decode()] for name, raw in headers],
                    "payload": value,
                    "created_at": envelope.time,
                }
            )
        # Straight to the table, in the current savepoint: a rolled-back handler publishes nothing.
        insert_rows(self.session, OutboxRecord, rows)
        self.published.extend(envelopes)
        self.outbox_written += len(rows)
        return envelopes

    def dead_letter(
        self,
        *,
        event_id: str,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, str],
        consumer: str,
        reason: str,
        detail: str,
        origin: str,
    ) -> None:
        """Send a record that can never be processed to `<topic>.dlq`, with the reason in its headers."""
        dead_headers = dict(headers)
        dead_headers.update(
            {
                "dlq_reason": reason,
                "dlq_detail": detail[:1000],
                "dlq_consumer": consumer,
                "dlq_origin": origin,
                "dlq_at": self.clock.now().isoformat(),
            }
        )
        self.session.add(
            OutboxRecord(
                event_id=f"dlq:{consumer}:{event_id}"[:200],
                topic=dlq_name(topic),
                key=(key or b"").decode("utf-8", "replace"),
                headers=[[name, value] for name, value in dead_headers.items()],
                payload=value or b"",
                created_at=self.clock.now(),
            )
        )
        self.outbox_written += 1


_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_LOCK = threading.Lock()


def writer_turn(url: str) -> AbstractContextManager[Any]:
    """What a writing transaction holds while it runs. SQLite lets one writer in at a time, and one that
    finds the file locked polls for it, sleeping up to 100 ms between tries: the threads of a process
    (consumer, outbox relay, periodic steps, API) queue here instead, and the next one starts as soon as
    the last commits. Other processes on the same file still meet SQLite's own wait."""
    if not url.startswith("sqlite"):
        return nullcontext()
    with _SQLITE_WRITERS_LOCK:
        return _SQLITE_WRITERS.setdefault(url, threading.RLock())


# PostgreSQL plans its queries from each table's statistics. A table that fills fast (a tree imported, a
# cascade, a wave of reports) outgrows them long before autovacuum looks again, if it runs at all, and a
# lookup by key then becomes a scan of the whole table. A table changed by more rows than this, plus this
# share of its rows when last analyzed, is analyzed again (autovacuum's rule, checked at every tick).
STATISTICS_MIN_CHANGES = 1000
STATISTICS_SHARE = 0.5
# What the planner needs of them is mostly how many rows a table holds: these refreshes sample 3,000 rows
# (PostgreSQL samples 300 per unit of the target; its default of 100 samples 30,000). With the default,
# analyzing took 28 s of the server's 187 s in the national benchmark (a busy outbox half a second each).
STATISTICS_TARGET = 10
_OUTGROWN_TABLES = sa.text(
    "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid"
    " WHERE s.schemaname = current_schema()"
    " AND s.n_mod_since_analyze > :least + :share * GREATEST(c.reltuples, 0) ORDER BY s.relname"
)


class Database:
    """A service's database: engine, transactions, and a hook that wakes the outbox relay."""

    def __init__(self, url: str, *, source: str, prefix: str, clock: Clock) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.reader = make_engine(url, writes=False) if url.startswith("sqlite") else self.engine
        self.source = source
        self.prefix = prefix
        self.clock = clock
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._writer = writer_turn(url)
        # Copies of rows kept between transactions to save reading them again: whoever keeps one checks
        # it against the database before use (another instance may have changed the row).
        self.memory: dict[str, Any] = {}

    def on_outbox_written(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """A unit of work that commits on success and rolls back on any error."""
        with self._writer, Session(self.engine, expire_on_commit=False) as session:
            uow = UnitOfWork(session, self.source, self.prefix, self.clock, self.memory)
            try:
                yield uow
                session.commit()
            except BaseException:
                session.rollback()
                raise
        if uow.outbox_written:
            for listener in list(self._listeners):
                listener()

    @contextmanager
    def rehearsal(self) -> Iterator[UnitOfWork]:
        """A unit of work that is always rolled back: to check what a command would do."""
        with self._writer, Session(self.engine, expire_on_commit=False) as session:
            try:
                yield UnitOfWork(session, self.source, self.prefix, self.clock, self.memory)
            finally:
                session.rollback()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads (on SQLite it does not wait for, nor hold up, a writer)."""
        with Session(self.reader, expire_on_commit=False) as session:
            yield session

    def refresh_statistics(self) -> list[str]:
        """On PostgreSQL, analyze the tables that have outgrown their statistics; returns their names."""
        if self.engine.dialect.name != "postgresql":
            return []
        quote = self.engine.dialect.identifier_preparer.quote
        with self.engine.connect() as connection:
            parameters = {"least": STATISTICS_MIN_CHANGES, "share": STATISTICS_SHARE}
            outgrown = list(connection.execute(_OUTGROWN_TABLES, parameters).scalars())
            connection.exec_driver_sql(f"SET LOCAL default_statistics_target = {STATISTICS_TARGET}")
            for table in outgrown:
                connection.exec_driver_sql(f"ANALYZE {quote(table)}")
            connection.commit()
        return outgrown

    def dispose(self) -> None:
        self.engine.dispose()
        self.reader.dispose()
