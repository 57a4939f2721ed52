"""Every topic thidua uses, with its partition count, declared in one place and created at start-up.

A topic is "<prefix>.<stream>"; its dead-letter topic is "<prefix>.<stream>.dlq". Keeping the prefix
per federation (or per province stack) lets MirrorMaker 2 bridge stacks without renaming.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import IncompatibleBrokerVersion, KafkaConnectionError, KafkaError

from shared.kafka import KafkaConnection

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class Stream:
    name: str
    partitions: int
    about: str


# Keys: org by unit, plans by plan, reports by reporting unit, awards by nomination,
# notifications by recipient. Reports carry the national wave, so they get the most partitions.
STREAMS: tuple[Stream, ...] = (
    Stream("org", 6, "the federation tree: units registered and moved"),
    Stream("plans", 12, "plans issued, acknowledged; phases opened and closed"),
    Stream("reports", 24, "reports submitted, consolidated, overdue"),
    Stream("awards", 6, "nominations made and forwarded, awards decided"),
    Stream("notifications", 6, "notifications delivered or failed"),
)
DLQ_PARTITIONS = 3


def topic_name(prefix: str, stream: str) -> str:
    return f"{prefix}.{stream}"


def dlq_name(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics(prefix: str) -> dict[str, int]:
    """Every topic name with its partition count, dead-letter topics included."""
    topics: dict[str, int] = {}
    for stream in STREAMS:
        name = topic_name(prefix, stream.name)
        topics[name] = stream.partitions
        topics[dlq_name(name)] = DLQ_PARTITIONS
    return topics


async def connect_admin(kafka: KafkaConnection, timeout: float = 30.0) -> AIOKafkaAdminClient:
    """An admin client, retrying while the broker is starting."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=10_000)
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def ensure_topics(
    admin: AIOKafkaAdminClient, kafka: KafkaConnection, topics: dict[str, int]
) -> list[str]:
    """Create the topics that do not exist yet, and give too few partitions their declared count.

    A broker that auto-creates topics (Kafka's default, and tansu's) makes one with its default count
    when any client asks for it first — after a broker lost its data, say. Such a topic gets more
    partitions where the broker allows it, or is created again while it is still empty; otherwise it
    is reported. Returns the names created.
    """
    existing = set(await admin.list_topics())
    created = await _create(admin, {name: count for name, count in topics.items() if name not in existing})
    counts = await partition_counts(admin, [name for name in topics if name in existing])
    for name, have in counts.items():
        if have < topics[name]:
            created += await _widen(admin, kafka, name, have, topics[name])
    if created:
        log.info("topics created", extra={"topics": created})
    return created


async def _create(admin: AIOKafkaAdminClient, topics: dict[str, int]) -> list[str]:
    if not topics:
        return []
    response = await admin.create_topics([NewTopic(name, count, 1) for name, count in topics.items()])
    created = []
    for name, code, message in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != TOPIC_ALREADY_EXISTS:
            raise RuntimeError(f"could not create topic {name}: error {code} {message}")
    return created


async def _widen(
    admin: AIOKafkaAdminClient, kafka: KafkaConnection, name: str, have: int, want: int
) -> list[str]:
    try:
        await admin.create_partitions({name: NewPartitions(total_count=want)})
        log.warning("partitions added", extra={"topic": name, "partitions": want, "had": have})
        return []
    except (KafkaError, IncompatibleBrokerVersion):
        pass
    ends = await end_offsets(kafka, [TopicPartition(name, p) for p in range(have)])
    if not any(ends.values()):
        await admin.delete_topics([name])
        for _ in range(50):
            created = await _create(admin, {name: want})
            if created:
                log.warning("empty topic recreated with its declared partitions", extra={"topic": name})
                return created
            await asyncio.sleep(0.1)
    log.error(
        "topic has fewer partitions than declared; per-key order holds, parallelism is lower",
        extra={"topic": name, "partitions": have, "declared": want},
    )
    return []


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """How many partitions each existing topic has (topics that do not exist are left out)."""
    if not names:
        return {}
    described = await admin.describe_topics(names)
    return {item["topic"]: len(item["partitions"]) for item in described if item["error_code"] == 0}


async def end_offsets(kafka: KafkaConnection, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The end offset of each partition (0 for one that holds nothing).

    Only ask for partitions that exist: a client asking for one that does not waits forever.
    """
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    try:
        await consumer.start()
        return dict(await consumer.end_offsets(partitions)) if partitions else {}
    finally:
        await consumer.stop()


async def cluster_id(admin: AIOKafkaAdminClient) -> str:
    description = await admin.describe_cluster()
    return str(description["cluster_id"])
