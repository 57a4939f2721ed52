"""The outbox relay: publishes committed events in order, and replays them to a broker that lost them.

Rows are published in `seq` order (the order their transactions wrote them), so events about one
aggregate keep their order on its partition. Published rows are kept for the retention window; when
the broker turns out to have lost data — another cluster id (the local broker restarted empty), a
topic gone, or a topic holding fewer records than were published to it — the kept rows are published
again. Consumers' inboxes make the replay harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from sqlmodel import col

from shared.kafka import KafkaConnection
from shared.metrics import Metrics
from shared.storage import Database, OutboxRecord, RelayState, update_rows, utc
from shared.topics import cluster_id, connect_admin, end_offsets, ensure_topics, partition_counts

log = logging.getLogger(__name__)


class OutboxRelay:
    """Publishes one service's outbox."""

    CHECK_TIMEOUT = 10.0

    def __init__(
        self,
        service: str,
        db: Database,
        kafka: KafkaConnection,
        topics: dict[str, int],
        metrics: Metrics,
        *,
        batch_size: int = 1000,
        poll_seconds: float = 0.2,
        check_seconds: float = 5.0,
        retention: timedelta = timedelta(days=7),
        retry_max_seconds: float = 30.0,
    ) -> None:
        self.service = service
        self.db = db
        self.kafka = kafka
        self.topics = topics
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.check_seconds = check_seconds
        self.retention = retention
        self.retry_max_seconds = retry_max_seconds
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._leader: sa.Connection | None = None
        # The partitions this outbox's kept rows were published to, by topic: read from the database once
        # (None: not read yet), then kept up to date as rows are published and replayed. Reading them at
        # every check would read the whole retention window.
        self._written: dict[str, set[int]] | None = None
        db.on_outbox_written(self.notify)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._admin = await connect_admin(self.kafka)
        self._producer = AIOKafkaProducer(
            **self.kafka.client_options(),
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=15_000,
        )
        await self._producer.start()
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer:
            await self._producer.stop()
        if self._admin:
            await self._admin.close()
        if self._leader is not None:
            self._leader.close()

    async def _reconnect_admin(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        try:
            self._admin = await connect_admin(self.kafka, timeout=5.0)
        except KafkaError:
            self._admin = None

    def notify(self) -> None:
        """Wake the relay: called (from any thread) after a commit that wrote outbox rows."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    # ------------------------------------------------------------ the loop

    async def _run(self) -> None:
        delay = 0.1
        last_check = -1e9
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not await anyio.to_thread.run_sync(self._hold_leadership):
                    await asyncio.sleep(self.check_seconds)
                    continue
                if loop.time() - last_check >= self.check_seconds:
                    # A request to a broker that went away can wait forever: bound it, then reconnect.
                    await asyncio.wait_for(self.check_broker(), timeout=self.CHECK_TIMEOUT)
                    await anyio.to_thread.run_sync(self._purge_and_measure)
                    last_check = loop.time()
                published = await self.publish_pending()
                delay = 0.1
                if published < self.batch_size:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError, sa.exc.SQLAlchemyError) as error:
                self.metrics.relay_publish_failures.labels(self.service).inc()
                await self._reconnect_admin()
                log.warning(
                    "outbox relay failed; retrying",
                    extra={"service": self.service, "error": repr(error)[:300], "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_seconds)

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows in order; returns how many were published."""
        assert self._producer is not None
        rows = await anyio.to_thread.run_sync(self._pending)
        if not rows:
            return 0
        futures = []
        for row in rows:
            futures.append(
                await self._producer.send(
                    row.topic,
                    value=row.payload,
                    key=row.key.encode(),
                    headers=[(name, value.encode()) for name, value in row.headers],
                )
            )
        placed = await asyncio.gather(*futures)
        await anyio.to_thread.run_sync(
            self._mark_published,
            [(row.seq, meta.partition, meta.offset) for row, meta in zip(rows, placed, strict=True)],
        )
        if self._written is not None:
            for meta in placed:
                self._written.setdefault(meta.topic, set()).add(meta.partition)
        self.metrics.outbox_published.labels(self.service).inc(len(rows))
        return len(rows)

    async def check_broker(self) -> None:
        """Replay the kept rows if the broker is not the one they were published to, or lost some."""
        if self._admin is None:
            await self._reconnect_admin()
        if self._admin is None:
            raise KafkaConnectionError("no admin connection to the broker")
        current = await cluster_id(self._admin)
        state = await anyio.to_thread.run_sync(self._state)
        await ensure_topics(self._admin, self.kafka, self.topics)
        if state is None:
            await anyio.to_thread.run_sync(self._save_state, current)
            return
        if state.cluster_id != current:
            count = await anyio.to_thread.run_sync(self._replay, None)
            await anyio.to_thread.run_sync(self._save_state, current)
            self.metrics.outbox_replays.labels(self.service, "new_cluster").inc()
            log.warning(
                "broker cluster changed; outbox replayed",
                extra={"service": self.service, "cluster_id": current, "rows": count},
            )
            return
        emptied = await self._emptied_topics()
        if emptied:
            count = await anyio.to_thread.run_sync(self._replay, emptied)
            self.metrics.outbox_replays.labels(self.service, "topic_emptied").inc()
            log.warning(
                "topics lost records; outbox replayed",
                extra={"service": self.service, "topics": emptied, "rows": count},
            )

    async def _emptied_topics(self) -> list[str]:
        """Topics that no longer hold what this outbox published to them: a partition it wrote to is
        gone, or holds nothing (the topic was deleted and created again)."""
        assert self._admin is not None
        if self._written is None:
            self._written = await anyio.to_thread.run_sync(self._written_partitions)
        written = self._written
        if not written:
            return []
        counts = await partition_counts(self._admin, list(written))
        emptied = {topic for topic, partitions in written.items() if max(partitions) >= counts.get(topic, 0)}
        ends = await end_offsets(
            self.kafka,
            [
                TopicPartition(t, p)
                for t, partitions in written.items()
                if t not in emptied
                for p in partitions
            ],
        )
        emptied.update(tp.topic for tp, end in ends.items() if end == 0)
        return sorted(emptied)

    # ------------------------------------------------------------ database steps (worker threads)

    def _hold_leadership(self) -> bool:
        """On PostgreSQL only one relay per service publishes (an advisory lock); SQLite has one writer."""
        if self.db.engine.dialect.name != "postgresql":
            return True
        if self._leader is not None:
            try:
                self._leader.exec_driver_sql("SELECT 1")
                return True
            except sa.exc.DBAPIError:
                self._leader.close()
                self._leader = None
        connection = self.db.engine.connect()
        key = zlib.crc32(f"thidua-outbox-{self.service}".encode())
        got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        connection.commit()
        if got:
            self._leader = connection
            self._written = None  # another instance may have published while it led
            return True
        connection.close()
        return False

    def _pending(self) -> Sequence[Any]:
        """The next rows to publish, as plain rows (seq, topic, key, headers, payload)."""
        with self.db.reading() as session:
            query = (
                sa.select(
                    col(OutboxRecord.seq),
                    col(OutboxRecord.topic),
                    col(OutboxRecord.key),
                    col(OutboxRecord.headers),
                    col(OutboxRecord.payload),
                )
                .where(col(OutboxRecord.published_at).is_(None))
                .order_by(col(OutboxRecord.seq))
                .limit(self.batch_size)
            )
            return session.execute(query).all()

    def _mark_published(self, placed: list[tuple[int | None, int, int]]) -> None:
        now = self.db.clock.now()
        with self.db.transaction() as uow:
            rows = [
                {"seq": seq, "published_at": now, "partition": partition, "offset": offset}
                for seq, partition, offset in placed
            ]
            update_rows(uow.session, OutboxRecord, ("seq",), rows)

    def _replay(self, topics: list[str] | None) -> int:
        """Mark the kept rows (of `topics`, or all) to be published again."""
        with self.db.transaction() as uow:
            query = sa.update(OutboxRecord).where(col(OutboxRecord.published_at).is_not(None))
            if topics is not None:
                query = query.where(col(OutboxRecord.topic).in_(topics))
            result = uow.session.execute(query.values(published_at=None, partition=None, offset=None))
        self._written = None  # read again once the replayed rows are out
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _written_partitions(self) -> dict[str, set[int]]:
        """The partitions the kept rows were published to, by topic, as the database holds them."""
        with self.db.reading() as session:
            rows = session.execute(
                sa.select(col(OutboxRecord.topic), col(OutboxRecord.partition))
                .where(col(OutboxRecord.published_at).is_not(None))
                .distinct()
            )
            written: dict[str, set[int]] = {}
            for topic, partition in rows:
                written.setdefault(topic, set()).add(int(partition))
            return written

    def _state(self) -> RelayState | None:
        with self.db.reading() as session:
            return session.get(RelayState, 1)

    def _save_state(self, current: str) -> None:
        with self.db.transaction() as uow:
            state = uow.session.get(RelayState, 1)
            if state is None:
                state = RelayState(id=1, cluster_id=current, updated_at=self.db.clock.now())
            state.cluster_id = current
            state.updated_at = self.db.clock.now()
            uow.session.add(state)

    def _purge_and_measure(self) -> None:
        now = self.db.clock.now()
        with self.db.transaction() as uow:
            uow.session.execute(
                sa.delete(OutboxRecord).where(col(OutboxRecord.published_at) < now - self.retention)
            )
            count, oldest = uow.session.execute(
                sa.select(sa.func.count(), sa.func.min(col(OutboxRecord.created_at))).where(
                    col(OutboxRecord.published_at).is_(None)
                )
            ).one()
        self.metrics.outbox_pending.labels(self.service).set(count)
        age = (now - utc(oldest)).total_seconds() if oldest else 0.0
        self.metrics.outbox_oldest_pending_age.labels(self.service).set(max(age, 0.0))
