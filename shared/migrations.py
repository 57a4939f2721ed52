"""Alembic, per service: each service migrates its own database from its own `migrations/` folder."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from shared.storage import PLUMBING_TABLES, make_engine


def alembic_config(migrations_dir: Path, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


# Alembic keeps its migration context in module state: one migration at a time in a process.
_ONE_AT_A_TIME = threading.Lock()


def upgrade(engine: Engine, migrations_dir: Path) -> None:
    """Bring the database to the newest revision (idempotent)."""
    config = alembic_config(migrations_dir)
    with _ONE_AT_A_TIME, engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_current(engine: Engine, migrations_dir: Path) -> bool:
    """Whether every migration of the service has been applied."""
    head = ScriptDirectory.from_config(alembic_config(migrations_dir)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def comparison_options(service_tables: tuple[str, ...]) -> dict[str, Any]:
    """Alembic options that limit a service's migrations to its own tables and the plumbing ones
    (every service's models share SQLModel's metadata)."""
    tables = set(service_tables) | set(PLUMBING_TABLES)

    def include_name(name: str | None, kind: str, _parents: object) -> bool:
        return kind != "table" or name in tables

    def include_object(item: Any, name: str | None, kind: str, _reflected: bool, _other: Any) -> bool:
        return kind != "table" or name in tables

    return {
        "target_metadata": SQLModel.metadata,
        "include_name": include_name,
        "include_object": include_object,
        "compare_type": True,
    }


def _render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Write SQLModel's string type as SQLAlchemy's, so revisions do not depend on sqlmodel internals."""
    if kind == "type" and type(item).__name__ == "AutoString":
        length = getattr(item, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    return False


def run_env(service_tables: tuple[str, ...]) -> None:
    """The body of a service's `env.py`: migrate only that service's tables and the plumbing ones."""

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            render_as_batch=True,
            render_item=_render_item,
            **comparison_options(service_tables),
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as fresh:
        run(fresh)


def create_plumbing_tables() -> None:
    """Outbox, inbox and relay state, as every service's first migration creates them."""
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("partition", sa.Integer(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "seq"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "relay_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("cluster_id", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def index_unpublished_outbox_rows() -> None:
    """The relay's next rows in an index of their own (a revision of every service, after its first)."""
    unpublished = sa.text("published_at IS NULL")
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["seq"], postgresql_where=unpublished, sqlite_where=unpublished
    )


def drop_unpublished_outbox_index() -> None:
    op.drop_index("ix_outbox_unpublished", table_name="outbox")


def drop_plumbing_tables() -> None:
    for table in reversed(PLUMBING_TABLES):
        op.drop_table(table)


def new_revision(service: str, message: str) -> None:
    """Autogenerate the next revision of a service's migrations from its models (`make migration`).

    The plumbing tables (outbox, inbox, relay state) are created by every service's first revision
    through create_plumbing_tables(); they are never written out table by table here.
    """
    import importlib
    import tempfile

    from alembic.script import ScriptDirectory

    migrations = Path(importlib.import_module(f"services.{service}").__file__ or "").parent / "migrations"
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/{service}.db"
        config = alembic_config(migrations, url)
        engine = make_engine(url)
        try:
            upgrade(engine, migrations)  # the database as the existing revisions leave it
        finally:
            engine.dispose()
        head = ScriptDirectory.from_config(config).get_current_head()
        number = f"{int(head or 0) + 1:04d}"

        def leave_plumbing(_context: Any, _revision: Any, directives: list[Any]) -> None:
            script = directives[0]
            for ops in (script.upgrade_ops, script.downgrade_ops):
                ops.ops = [op for op in ops.ops if getattr(op, "table_name", None) not in PLUMBING_TABLES]

        command.revision(
            config,
            message=message,
            autogenerate=True,
            rev_id=number,
            process_revision_directives=leave_plumbing,
        )


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m shared.migrations SERVICE MESSAGE")
    new_revision(sys.argv[1], sys.argv[2])
