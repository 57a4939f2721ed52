"""Helpers for tests that talk to the real broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from shared.access import service_headers
from shared.events import Envelope, header_map, to_kafka
from shared.settings import Settings


async def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Publish raw (key, value, headers) records in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def produce_events(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    await produce(bootstrap, topic, [to_kafka(envelope) for envelope in envelopes])


async def read_topic(
    bootstrap: str, topic: str, expect: int, timeout: float = 30.0, distinct: bool = False
) -> list[dict[str, Any]]:
    """Read a topic from the start until `expect` records (with `distinct`, records with distinct
    event ids) have come, or fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    consumer = await _started_reader(bootstrap, topic, deadline)
    records: list[dict[str, Any]] = []
    try:

        def count() -> int:
            return len({r["headers"].get("ce_id") for r in records}) if distinct else len(records)

        while count() < expect:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: {len(records)} records after {timeout} s, expected {expect}")
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    records.append(
                        {
                            "key": message.key,
                            "value": message.value,
                            "headers": header_map(message.headers),
                            "partition": message.partition,
                            "offset": message.offset,
                        }
                    )
    finally:
        await asyncio.wait_for(consumer.stop(), timeout=15)
    return records


async def _started_reader(bootstrap: str, topic: str, deadline: float) -> AIOKafkaConsumer:
    """A consumer of `topic` from its start, in a group of its own. A broker that has just restarted or
    lost a topic can leave a consumer's start waiting for its group coordinator: such a start is given
    up after a while and tried again with a new group, until `deadline`."""
    while True:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"reader-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=600,
            metadata_max_age_ms=1000,
        )
        try:
            await asyncio.wait_for(consumer.start(), timeout=15)
            return consumer
        except TimeoutError:
            await asyncio.wait_for(consumer.stop(), timeout=15)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: no reader could join the broker in time") from None


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met after {timeout} s (last: {result!r})")
        await asyncio.sleep(0.1)


def api_client(app: FastAPI, settings: Settings, base_url: str = "http://t") -> httpx.AsyncClient:
    """A client of an app's APIs, calling them as a service (with a token signed with the stack's key)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=base_url, headers=service_headers(settings, "tests")
    )
