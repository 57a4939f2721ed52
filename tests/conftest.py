"""Fixtures every tier shares: a real Kafka broker and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from shared.local_broker import LocalBroker
from shared.settings import SERVICES, Settings

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def _docker_running() -> bool:
    with contextlib.suppress(Exception):
        import docker  # comes with testcontainers

        return bool(docker.from_env().ping())
    return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS when set; else testcontainers' Kafka where Docker runs; else tansu."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif _docker_running():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        with LocalBroker() as broker:
            yield broker.bootstrap_servers


def admin_url() -> str:
    return make_url(TEST_DATABASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_databases(names: list[str]) -> Iterator[None]:
    """Create empty PostgreSQL databases for a test, and drop them after."""
    with psycopg.connect(admin_url(), autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A template URL with "{service}": one empty database per service, on SQLite or PostgreSQL."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path.as_posix()}/{{service}}.db"
        return
    stem = f"thidua_t{uuid.uuid4().hex[:10]}"
    with postgres_databases([f"{stem}_{service}" for service in SERVICES]):
        yield f"{TEST_DATABASE_URL.rsplit('/', 1)[0]}/{stem}_{{service}}"


@pytest.fixture
def settings(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own topics (a fresh prefix) and its own databases."""
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        var_dir=tmp_path,
        database_url=database_url,
        consumer_session_timeout_ms=6000,
        tick_seconds=0.2,
        relay_poll_seconds=0.05,
        relay_check_seconds=0.5,
        retry_max_seconds=1.0,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[object]:
    """All four services on the real broker and databases, with a clock the test moves."""
    from services import demo
    from services.runtime import Runtime
    from shared.clock import ManualClock

    started = Runtime(settings, SERVICES, clock=ManualClock(demo.local("2023-02-21")))
    await started.start()
    try:
        yield started
    finally:
        await started.stop()
