"""Hosts one or all services in a process: broker connection, databases and migrations, consumers,
outbox relays, schedulers, and one HTTP app with each service's API under its own prefix."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import httpx
import sqlalchemy as sa
from fastapi import FastAPI, Response
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.middlewares import AckPolicy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.awards.service import SERVICE as AWARDS
from services.notifications.service import SERVICE as NOTIFICATIONS
from services.plans.service import SERVICE as PLANS
from services.reporting.service import SERVICE as REPORTING
from shared.api import install_error_handlers
from shared.clock import Clock
from shared.consumer import TRANSIENT_ERRORS, BatchConsumer, Record
from shared.kafka import KafkaConnection
from shared.local_broker import LocalBroker
from shared.metrics import Metrics
from shared.migrations import is_current, upgrade
from shared.outbox import OutboxRelay
from shared.service import ServiceContext, ServiceDefinition
from shared.settings import SERVICES, Settings
from shared.storage import Database
from shared.topics import all_topics, connect_admin, ensure_topics, topic_name

log = logging.getLogger(__name__)
SHUTDOWN_SECONDS = 20.0  # each part of a stop: consumers leaving their groups, relays finishing a batch

DEFINITIONS: dict[str, ServiceDefinition] = {d.name: d for d in (PLANS, REPORTING, NOTIFICATIONS, AWARDS)}


async def _keep_raw(message: Any) -> Any:
    """Decoding is the consumer's own business (a poison body must reach the dead-letter logic)."""
    return None


class Runtime:
    """The services of one process, started and stopped together."""

    def __init__(
        self, settings: Settings, services: tuple[str, ...] = SERVICES, clock: Clock | None = None
    ) -> None:
        unknown = [name for name in services if name not in DEFINITIONS]
        if unknown:
            raise ValueError(f"unknown service {unknown[0]!r}; expected one of {', '.join(DEFINITIONS)}")
        self.settings = settings
        self.clock = clock or Clock()
        self.metrics = Metrics(services=services)
        self.definitions = [DEFINITIONS[name] for name in services]
        self.contexts: dict[str, ServiceContext] = {}
        for definition in self.definitions:
            db = Database(
                settings.database_url_for(definition.name),
                source=f"/thidua/{definition.name}",
                prefix=settings.topic_prefix,
                clock=self.clock,
            )
            self.contexts[definition.name] = ServiceContext(
                definition.name, settings, db, self.clock, self.metrics
            )
        self.handlers = {d.name: d.handlers(self.contexts[d.name]) for d in self.definitions}
        # Mirrored topics are declared too, with the same partitions, so consumers never meet a topic
        # that a broker auto-created with its default count before MirrorMaker 2 wrote to it.
        self.topics = {
            name: count
            for prefix in (settings.topic_prefix, *settings.mirrored)
            for name, count in all_topics(prefix).items()
        }
        self.consumers: list[BatchConsumer] = []
        self.relays: list[OutboxRelay] = []
        self.local_broker: LocalBroker | None = None
        self.bootstrap_servers = settings.kafka_bootstrap_servers or ""
        # One FastStream broker per service, as when each runs in its own container; started together.
        self.brokers: dict[str, KafkaBroker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if not self.bootstrap_servers:
            self.local_broker = LocalBroker()
            await anyio.to_thread.run_sync(self.local_broker.start)
            self.bootstrap_servers = self.local_broker.bootstrap_servers
            log.info("embedded broker started", extra={"bootstrap_servers": self.bootstrap_servers})
        self.kafka = KafkaConnection.of(self.settings, self.bootstrap_servers)
        admin = await connect_admin(self.kafka)
        try:
            await ensure_topics(admin, self.kafka, self.topics)
        finally:
            await admin.close()
        for definition in self.definitions:
            engine = self.contexts[definition.name].db.engine
            await upgrade_once_reachable(engine, definition, self.settings.retry_max_seconds)

        for definition in self.definitions:
            ctx = self.contexts[definition.name]
            self.brokers[definition.name] = KafkaBroker(
                self.bootstrap_servers,
                security=self.kafka.faststream_security(),
                middlewares=[
                    KafkaPrometheusMiddleware(registry=self.metrics.registry, app_name=definition.name)
                ],
                logger=logging.getLogger(f"thidua.kafka.{definition.name}"),
                log_level=logging.DEBUG,
                allow_auto_create_topics=False,
                metadata_max_age_ms=self.settings.kafka_metadata_max_age_ms,
                client_id=f"thidua-{definition.name}",
            )
            consumer = BatchConsumer(
                definition.name,
                ctx.db,
                self.handlers[definition.name],
                self.metrics,
                retry_max_seconds=self.settings.retry_max_seconds,
                transaction_seconds=self.settings.consumer_transaction_seconds,
            )
            self.consumers.append(consumer)
            self._subscribe(consumer)
            self.relays.append(
                OutboxRelay(
                    definition.name,
                    ctx.db,
                    self.kafka,
                    self.topics,
                    self.metrics,
                    batch_size=self.settings.relay_batch_size,
                    poll_seconds=self.settings.relay_poll_seconds,
                    check_seconds=self.settings.relay_check_seconds,
                    retention=timedelta(hours=self.settings.outbox_retention_hours),
                    retry_max_seconds=self.settings.retry_max_seconds,
                )
            )
        await asyncio.gather(*(broker.start() for broker in self.brokers.values()))
        for relay in self.relays:
            await relay.start()
        self._tasks.append(asyncio.create_task(self._tick_forever(), name="ticks"))
        self.started = True

    def _subscribe(self, consumer: BatchConsumer) -> None:
        prefixes = [self.settings.topic_prefix]
        if DEFINITIONS[consumer.name].consumes_mirrored:
            prefixes += self.settings.mirrored
        topics = [topic_name(prefix, stream) for prefix in prefixes for stream in consumer.handlers.streams]

        @self.brokers[consumer.name].subscriber(
            *topics,
            group_id=f"{self.settings.topic_prefix}.{consumer.name}",
            batch=True,
            max_records=self.settings.consumer_batch_size,
            batch_timeout_ms=self.settings.consumer_batch_timeout_ms,
            max_partition_fetch_bytes=self.settings.consumer_partition_fetch_bytes,
            fetch_max_bytes=self.settings.consumer_fetch_bytes,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=max(100, self.settings.consumer_session_timeout_ms // 10),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_keep_raw,
            title=f"{consumer.name}",
            description=f"The {consumer.name} service's consumer",
        )
        async def consume(message: KafkaMessage) -> None:
            raw = message.raw_message
            records = raw if isinstance(raw, tuple) else (raw,)
            await consumer.handle(
                [Record.of(record) for record in records if consumer.handlers.takes(record.headers)]
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=SHUTDOWN_SECONDS)
            if pending:
                log.warning("periodic steps still running at stop", extra={"tasks": len(pending)})
        self._tasks.clear()
        for consumer in self.consumers:
            consumer.stopping.set()
        # A stop never hangs on a broker that does not answer: what is not done in time is left behind
        # (uncommitted offsets are redelivered, unpublished outbox rows published by the next start).
        await self._bounded(asyncio.gather(*(broker.stop() for broker in self.brokers.values())), "consumers")
        for relay in self.relays:
            await self._bounded(relay.stop(), "outbox relay")
        for ctx in self.contexts.values():
            ctx.db.dispose()
        if self.local_broker is not None:
            await anyio.to_thread.run_sync(self.local_broker.stop)
        self.started = False

    async def _bounded(self, step: Any, what: str) -> None:
        try:
            await asyncio.wait_for(step, timeout=SHUTDOWN_SECONDS)
        except TimeoutError:
            log.warning("stopping took too long; going on without it", extra={"step": what})

    # ------------------------------------------------------------ periodic steps

    async def tick(self) -> int:
        """Run every service's periodic steps once (schedulers, deadline checks); returns events emitted."""
        emitted = 0
        for definition in self.definitions:
            ctx = self.contexts[definition.name]
            for step in definition.ticks:
                emitted += int(await anyio.to_thread.run_sync(step, ctx) or 0)
            for table in await anyio.to_thread.run_sync(ctx.db.refresh_statistics):
                self.metrics.statistics_refreshed.labels(definition.name, table).inc()
            self.metrics.scheduler_last_run.labels(definition.name).set(time.time())
        return emitted

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            try:
                await self.tick()
            except sa.exc.SQLAlchemyError as error:
                log.warning("periodic step failed; next tick retries", extra={"error": repr(error)[:300]})
            except Exception:  # a bug in one step must not stop every schedule: log it, try again next tick
                log.exception("periodic step failed unexpectedly; next tick retries")

    # ------------------------------------------------------------ health

    async def readiness(self) -> dict[str, Any]:
        """Database reachable and migrated, for every service; broker reachable."""
        checks: dict[str, Any] = {}
        for definition in self.definitions:
            db = self.contexts[definition.name].db
            try:
                current = await anyio.to_thread.run_sync(is_current, db.engine, definition.migrations)
                checks[f"{definition.name}.database"] = "ok" if current else "migrations pending"
            except sa.exc.SQLAlchemyError as error:
                checks[f"{definition.name}.database"] = f"unreachable: {type(error).__name__}"
        for name, broker in self.brokers.items():
            checks[f"{name}.broker"] = "ok" if await broker.ping(timeout=3.0) else "unreachable"
        return checks


async def upgrade_once_reachable(
    engine: sa.Engine, definition: ServiceDefinition, retry_max_seconds: float
) -> None:
    """Bring a service's database to its newest revision. A database that is away (restarting, or not
    taking connections) is waited for, with backoff, as the consumers wait for it: a service started
    meanwhile comes up once its database is back instead of exiting."""
    delay = 0.5
    while True:
        try:
            await anyio.to_thread.run_sync(upgrade, engine, definition.migrations)
            return
        except TRANSIENT_ERRORS as error:
            log.warning(
                "database not reachable at start; retrying",
                extra={"service": definition.name, "error": repr(error)[:300], "retry_in": delay},
            )
            await anyio.sleep(delay)
            delay = min(delay * 2, retry_max_seconds)


def create_app(runtime: Runtime, manage_lifecycle: bool = True) -> FastAPI:
    """The HTTP app: each service's API under /<service>, plus /healthz, /readyz and /metrics."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await runtime.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await runtime.stop()

    app = FastAPI(
        title="thidua",
        description="Emulation campaigns (phong trào thi đua) across a trade-union federation",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Tokens are checked against the deployment's key (see shared/access.py).
    app.state.settings = runtime.settings
    for definition in runtime.definitions:
        app.include_router(definition.api(runtime.contexts[definition.name]), prefix=f"/{definition.name}")

    if {"plans", "reporting"} <= {definition.name for definition in runtime.definitions}:
        from services.web.app import build_web

        # The officers' pages, a client of the APIs above, called in-process.
        app.include_router(
            build_web(
                lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://thidua")
            )
        )

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(response: Response) -> dict[str, Any]:
        """Ready: every database reachable and migrated, the broker reachable."""
        checks = await runtime.readiness() if runtime.started else {"runtime": "starting"}
        ready = all(value == "ok" for value in checks.values())
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not ready", "checks": checks}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
