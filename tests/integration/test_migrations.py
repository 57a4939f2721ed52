"""Every service's migrations build exactly its models, on SQLite and on PostgreSQL."""

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from services.runtime import DEFINITIONS
from shared.migrations import comparison_options, is_current, upgrade
from shared.storage import PLUMBING_TABLES, make_engine


@pytest.mark.parametrize("service", sorted(DEFINITIONS))
def test_migrations_match_the_models(service: str, database_url: str) -> None:
    definition = DEFINITIONS[service]
    engine = make_engine(database_url.format(service=service))
    try:
        assert not is_current(engine, definition.migrations)
        upgrade(engine, definition.migrations)
        upgrade(engine, definition.migrations)  # a second start changes nothing
        assert is_current(engine, definition.migrations)
        service_tables = importlib.import_module(f"services.{service}.models").TABLES
        assert set(service_tables) | set(PLUMBING_TABLES) <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts=comparison_options(service_tables))
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()
