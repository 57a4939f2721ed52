"""Every service's migrations build exactly its models, on SQLite and on PostgreSQL."""

import asyncio
import importlib
import uuid

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from services.runtime import DEFINITIONS, upgrade_once_reachable
from shared.migrations import alembic_config, comparison_options, is_current, upgrade
from shared.storage import PLUMBING_TABLES, make_engine
from tests.conftest import TEST_DATABASE_URL, admin_url, postgres_databases


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


def test_plans_issued_before_the_counts_are_counted_from_their_targets(database_url: str) -> None:
    """The plans service's 0005 counts each existing plan's grassroots units, sent and deployed."""
    definition = DEFINITIONS["plans"]
    engine = make_engine(database_url.format(service="plans"))
    config = alembic_config(definition.migrations)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
            connection.execute(
                text(
                    "INSERT INTO plan (id, number, year, issuer_unit_id, title, issued_on, campaign_id, "
                    "lineage, indicators, deadlines, milestones, details, version, auto_derive, "
                    "report_after_phase_end, received, status, created_at) VALUES "
                    "(:id, :id, 2026, 'lb', 't', '2026-03-02', 'p1', '[]', '[]', '[]', '[]', '{}', 1, "
                    "false, false, false, 'issued', '2026-03-02 08:00:00+07')"
                ),
                [{"id": "p1"}, {"id": "p2"}],
            )
            connection.execute(
                text(
                    "INSERT INTO plan_target (plan_id, unit_id, name, level, acknowledged_at) "
                    "VALUES ('p1', :unit, :unit, :level, :at)"
                ),
                [
                    {"unit": "cs-1", "level": "grassroots", "at": "2026-03-03 08:00:00+07"},
                    {"unit": "cs-2", "level": "grassroots", "at": None},
                    {"unit": "cs-3", "level": "grassroots", "at": None},
                    {"unit": "q-1", "level": "intermediate", "at": "2026-03-03 08:00:00+07"},
                ],
            )
        upgrade(engine, definition.migrations)
        with engine.connect() as connection:
            counts = connection.execute(
                text("SELECT id, grassroots_sent, grassroots_deployed FROM plan ORDER BY id")
            ).all()
        assert [tuple(row) for row in counts] == [("p1", 3, 1), ("p2", 0, 0)]
    finally:
        engine.dispose()


async def test_a_service_started_while_its_database_is_away_waits_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL refusing connections (restarting, or taken away) when a service starts: its migrations
    wait for the database, with backoff, instead of the service exiting."""
    name = f"thidua_t{uuid.uuid4().hex[:10]}_plans"
    with postgres_databases([name]), psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        engine = make_engine(f"{TEST_DATABASE_URL.rsplit('/', 1)[0]}/{name}")
        try:
            starting = asyncio.create_task(upgrade_once_reachable(engine, DEFINITIONS["plans"], 1.0))
            await asyncio.sleep(2.0)
            assert not starting.done()
            assert "database not reachable at start; retrying" in caplog.messages
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await asyncio.wait_for(starting, 30)
            assert is_current(engine, DEFINITIONS["plans"].migrations)
        finally:
            engine.dispose()
