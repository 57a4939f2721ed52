"""Faults, with the truth kept aside (`thidua chaos`, `make chaos`).

The four services run as separate processes on the local broker and PostgreSQL and carry a campaign
down four levels (national → provinces → districts → grassroots unions) and its reports and
nominations back up, while the harness
- kills a service with SIGKILL every few seconds, each service in turn, preferring the moments when its
  outbox holds events committed but not yet published, or its consumer is applying a batch;
- restarts the broker empty (the local broker keeps memory only), losing everything it held;
- takes the reporting database away in the middle of the report wave;
- sends the reports and the plans' events again, shuffled, and poison records.
At the end it compares the tables at every level, the deployment, the nominations, the notifications
and the dead letters with what it sent, and prints the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from sqlalchemy.engine import make_url

from services.bench import Stack, databases, national_plan, phase_one_report, poll, stack_env, unit
from services.demo import figures_of, report_values
from shared.clock import Clock
from shared.events import Envelope, to_kafka
from shared.local_broker import LocalBroker
from shared.settings import SERVICES
from shared.topics import dlq_name, topic_name

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NATIONAL = "vn"
GOOD_FACTS = {"members": 20, "members_completing": 20, "lao_dong_tien_tien": 15, "chien_si_thi_dua": 1}
OUTAGE_SECONDS = 6.0
AFTER_COMMIT_KILLS = 4  # two of plans after an acknowledgement, two of reporting after a report
# Consumers of the reports stream: each one dead-letters a poison record on its own.
REPORT_CONSUMERS = ("reporting", "notifications", "awards")


@dataclass
class Tally:
    """What the harness did to the services, and what it found at the end."""

    kills: Counter[str] = field(default_factory=Counter)
    kills_with_outbox_pending: int = 0
    kills_mid_batch: int = 0
    broker_restarts: int = 0
    database_outages: int = 0
    database_outage_seconds: float = 0.0
    calls_retried: int = 0
    reports: int = 0
    corrections: int = 0
    burst: int = 0
    redelivered: int = 0
    poison_sent: int = 0
    poison_dead_lettered: int = 0
    lost: int = 0
    double_counted: int = 0
    duplicate_notifications: int = 0
    missing_notifications: int = 0
    mismatches: list[str] = field(default_factory=list)
    # One kill-and-restart of a service at a time, whoever kills it.
    restarting: dict[str, asyncio.Lock] = field(default_factory=lambda: {s: asyncio.Lock() for s in SERVICES})
    dead_letters: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {
            "kills": sum(self.kills.values()),
            **{f"kills_{service}": self.kills[service] for service in SERVICES},
            "kills_with_outbox_pending": self.kills_with_outbox_pending,
            "kills_mid_batch": self.kills_mid_batch,
            "broker_restarts": self.broker_restarts,
            "database_outages": self.database_outages,
            "database_outage_seconds": round(self.database_outage_seconds, 1),
            "calls_retried": self.calls_retried,
            "reports": self.reports,
            "corrections": self.corrections,
            "versions_sent_straight_to_kafka": self.burst,
            "records_redelivered": self.redelivered,
            "poison_sent": self.poison_sent,
            "poison_dead_lettered": self.poison_dead_lettered,
            "lost": self.lost,
            "double_counted": self.double_counted,
            "duplicate_notifications": self.duplicate_notifications,
            "missing_notifications": self.missing_notifications,
            "mismatches": len(self.mismatches),
        }


@dataclass
class Campaign:
    """The generated federation and the truth of what was sent."""

    provinces: list[str]
    districts: dict[str, str]  # district -> province
    grassroots: dict[str, str]  # grassroots -> district
    figures: dict[str, dict[str, int]] = field(default_factory=dict)  # grassroots -> latest figures
    plans: dict[str, str] = field(default_factory=dict)  # issuer -> its plan in the campaign
    nominations: dict[str, str] = field(default_factory=dict)  # district -> nomination id

    @property
    def units(self) -> list[dict[str, Any]]:
        return [
            unit(NATIONAL, "Tổng Liên đoàn Lao động Việt Nam", "national"),
            *(unit(p, f"LĐLĐ tỉnh {p}", "province", NATIONAL) for p in self.provinces),
            *(unit(d, f"LĐLĐ huyện {d}", "district", p) for d, p in self.districts.items()),
            *(unit(g, f"CĐCS {g}", "grassroots", d) for g, d in self.grassroots.items()),
        ]

    def row(self, units: list[str]) -> dict[str, Any]:
        """The total row a table over these grassroots unions must show."""
        sums: Counter[str] = Counter()
        for grassroots in units:
            sums.update(self.figures.get(grassroots, {}))
        return {
            "expected": len(units),
            "received": sum(g in self.figures for g in units),
            "figures": {code: sums[code] for code in sorted(sums)},
        }

    def under(self, issuer: str) -> list[str]:
        return [g for g, d in self.grassroots.items() if issuer in (NATIONAL, d, self.districts[d])]


def generate(provinces: int, districts_each: int, grassroots_each: int) -> Campaign:
    province_ids = [f"p{n + 1}" for n in range(provinces)]
    districts = {f"{p}-d{n + 1}": p for p in province_ids for n in range(districts_each)}
    grassroots = {f"{d}-c{n + 1:02d}": d for d in districts for n in range(grassroots_each)}
    return Campaign(province_ids, districts, grassroots)


class Refused(Exception):
    """A 4xx answer: the request itself is wrong, trying again will not help."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}"
        )


class Unanswered(Exception):
    """No answer, or a server error: the request may or may not have been carried out."""


class Api:
    """The services' APIs as a patient client: a service being killed, restarted or without its
    database is waited for; a refusal is not."""

    def __init__(self, client: httpx.AsyncClient, stack: Stack, tally: Tally, timeout: float) -> None:
        self.client, self.stack, self.tally, self.timeout = client, stack, tally, timeout

    async def __call__(self, method: str, path: str, retry: bool = True, **kwargs: Any) -> Any:
        """The answer's JSON; a 4xx raises Refused. Without `retry` (a request that must not be made twice),
        an unanswered attempt raises Unanswered."""
        service = path.split("/")[1]
        url = f"http://127.0.0.1:{self.stack.ports[service]}{path}"
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                response = await self.client.request(method, url, **kwargs)
                if response.status_code < 300:
                    return response.json() if response.content else None
                if response.status_code < 500:
                    raise Refused(response)
            except httpx.TransportError:
                pass
            if not retry:
                raise Unanswered(f"{method} {path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path} did not succeed within {self.timeout:.0f} s")
            self.tally.calls_retried += 1
            await asyncio.sleep(0.3)


# ------------------------------------------------------------------ the faults


class Databases:
    """Each service's PostgreSQL database, looked into (outbox, inbox) and taken away."""

    def __init__(self, template: str) -> None:
        self.template = make_url(template)
        self.admin = self.template.set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False
        )

    def name(self, service: str) -> str:
        return str(self.template.database).replace("{service}", service)

    def _count(self, service: str, query: str) -> int | None:
        url = self.template.set(drivername="postgresql", database=self.name(service))
        try:
            with psycopg.connect(url.render_as_string(hide_password=False), connect_timeout=2) as connection:
                row = connection.execute(query).fetchone()
                return int(row[0]) if row else 0
        except psycopg.Error:
            return None

    def outbox_pending(self, service: str) -> int | None:
        return self._count(service, "SELECT count(*) FROM outbox WHERE published_at IS NULL")

    def inbox(self, service: str) -> int | None:
        return self._count(service, "SELECT count(*) FROM inbox")

    def allow(self, service: str, allowed: bool) -> None:
        with psycopg.connect(self.admin, autocommit=True) as connection:
            name = self.name(service)
            connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            if not allowed:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )

    async def outage(self, service: str, seconds: float, tally: Tally) -> None:
        """The service's database refuses every connection for a while, the open ones cut."""
        await asyncio.to_thread(self.allow, service, False)
        started = time.monotonic()
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(self.allow, service, True)
            tally.database_outages += 1
            tally.database_outage_seconds += time.monotonic() - started


async def monkey(
    stack: Stack, dbs: Databases, tally: Tally, rng: random.Random, kills: int, pace: float
) -> None:
    """Kill the services in turn, `kills` times in all, every `pace` seconds or so. Before each kill,
    look for up to two seconds for a moment when the service's outbox holds unpublished events or its
    inbox is growing (a batch being applied); kill then, or at the end of the look."""
    order = list(SERVICES)
    for n in range(kills):
        await asyncio.sleep(rng.uniform(0.5, 1.5) * pace)
        service = order[n % len(order)]
        if n % len(order) == len(order) - 1:
            rng.shuffle(order)
        before = await asyncio.to_thread(dbs.inbox, service)
        pending = consuming = False
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            outbox, inbox = await asyncio.gather(
                asyncio.to_thread(dbs.outbox_pending, service), asyncio.to_thread(dbs.inbox, service)
            )
            pending = bool(outbox)
            consuming = before is not None and inbox is not None and inbox > before
            if pending or consuming:
                break
            before = inbox
            await asyncio.sleep(0.05)
        await kill(stack, tally, rng, service, pending=pending, consuming=consuming)


async def kill(
    stack: Stack, tally: Tally, rng: random.Random, service: str, pending: bool, consuming: bool = False
) -> None:
    """SIGKILL the service, count it, and start it again on its port a moment later."""
    async with tally.restarting[service]:
        stack.kill(service)
        tally.kills[service] += 1
        tally.kills_with_outbox_pending += pending
        tally.kills_mid_batch += consuming
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        stack.start_one(service)


async def kill_after_commit(
    stack: Stack, dbs: Databases, tally: Tally, rng: random.Random, service: str
) -> None:
    """Kill the service the moment a call it committed has answered: its events are in the outbox, most
    likely not yet published (the relay publishes every 0.3 s)."""
    pending = await asyncio.to_thread(dbs.outbox_pending, service)
    await kill(stack, tally, rng, service, pending=bool(pending))


KafkaRecord = tuple[bytes, bytes, list[tuple[str, bytes]]]


def report_record(
    plan_id: str, unit_id: str, sender: str, values: dict[str, Any], at: datetime
) -> KafkaRecord:
    """A report on phase 1 as a unit's own system publishes it, sent by `sender`."""
    event = phase_one_report(plan_id, unit_id, values, at)
    return to_kafka(Envelope.wrap(event, source="/chaos/units", unit=sender, time=at))


async def corrections_burst(
    bootstrap: str,
    prefix: str,
    campaign: Campaign,
    plan_of: dict[str, str],
    stack: Stack,
    dbs: Databases,
    tally: Tally,
    rng: random.Random,
    versions: int,
) -> None:
    """The units' own systems send several versions of each report straight to the reports topic,
    shuffled, so a later version often comes before an earlier one (the latest sent counts). The
    consumers of reports are killed at once, while they apply them; a kill counts as mid-batch when the
    service had applied some of the versions, not all."""
    now = datetime.now(UTC)  # later than every report sent through the API
    records = []
    for unit_id in sorted(campaign.figures):
        for version in range(versions):
            values = report_values(rng)
            sent_at = now + timedelta(milliseconds=version)
            records.append(report_record(plan_of[unit_id], unit_id, unit_id, values, sent_at))
        campaign.figures[unit_id] = figures_of(values)
    rng.shuffle(records)
    before = {service: await asyncio.to_thread(dbs.inbox, service) for service in REPORT_CONSUMERS}
    for attempt in range(1, 4):
        # The broker may still be settling after a restart: the whole burst is sent again, and the
        # consumers' inboxes take each record once whatever is sent twice.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            sent = [
                await producer.send(topic_name(prefix, "reports"), v, k, headers=h) for k, v, h in records
            ]
            await asyncio.gather(*sent)
            break
        except KafkaError:
            if attempt == 3:
                raise
            await asyncio.sleep(1.0)
        finally:
            await producer.stop()
    tally.burst = len(records)
    at_kill = {service: await asyncio.to_thread(dbs.inbox, service) for service in REPORT_CONSUMERS}

    async def mid_batch(service: str) -> None:
        start, end = before[service], at_kill[service]
        consuming = start is not None and end is not None and 0 < end - start < len(records)
        await kill(stack, tally, rng, service, pending=False, consuming=consuming)

    await asyncio.gather(*(mid_batch(service) for service in REPORT_CONSUMERS))


async def restart_broker(broker: LocalBroker, tally: Tally) -> None:
    await asyncio.to_thread(broker.restart)
    tally.broker_restarts += 1


async def read_all(bootstrap: str, topic: str, timeout: float = 10.0) -> list[Any]:
    """Every record a topic holds now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, partitions included
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            records += [record for got in batch.values() for record in got]
            if time.monotonic() > deadline:
                break
        return records
    finally:
        await consumer.stop()


async def redeliver(bootstrap: str, topics: list[str], rng: random.Random, share: float) -> int:
    """Send a share of what the topics hold again, some of it twice, all in shuffled order: the same
    events, so consumers must recognise them."""
    again: list[Any] = []
    for topic in topics:
        records = await read_all(bootstrap, topic)
        chosen = rng.sample(records, int(len(records) * share))
        again += [(topic, record) for record in chosen]
        again += [(topic, record) for record in rng.sample(chosen, len(chosen) // 4)]
    rng.shuffle(again)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, record in again:
            await producer.send_and_wait(
                topic, value=record.value, key=record.key, headers=list(record.headers)
            )
    finally:
        await producer.stop()
    return len(again)


def poison_records(campaign: Campaign, plan_of: dict[str, str]) -> list[KafkaRecord]:
    """Records no consumer may apply, each marked `chaos_poison`: bytes that are not an event, an event
    of a type nobody knows, a report sent by one unit for another, and a report with a negative count."""
    units = sorted(campaign.grassroots)
    now = datetime.now(UTC)

    def report(unit_id: str, sender: str, values: dict[str, Any]) -> KafkaRecord:
        return report_record(plan_of[unit_id], unit_id, sender, values, now)

    garbage = (b"x", b"\x00\xffnot an event", [("ce_id", f"poison-{uuid.uuid4()}".encode())])
    key, value, headers = report(units[0], units[0], report_values(random.Random(1)))
    unknown = (key, value, [(k, b"thidua.NoSuchEvent.v1" if k == "ce_type" else v) for k, v in headers])
    forged = report(units[0], units[1], report_values(random.Random(2)))
    negative = report(units[2], units[2], {**report_values(random.Random(3)), "new_members": -5})
    return [
        (key, value, [*headers, ("chaos_poison", str(n).encode())])
        for n, (key, value, headers) in enumerate((garbage, unknown, forged, negative), start=1)
    ]


# ------------------------------------------------------------------ the scenario


def plan_body(today: date) -> dict[str, Any]:
    """The benchmark's national plan with only its current phase (the one reported on), and a quota."""
    plan = national_plan(today)
    current = {**plan["phases"][1], "seq": 1, "label": "Đợt 1"}
    return {**plan, "phases": [current], "award_quota": {"collectives": 2, "individuals": 2}}


async def scenario(
    api: Api,
    campaign: Campaign,
    broker: LocalBroker,
    dbs: Databases,
    tally: Tally,
    rng: random.Random,
    broker_restarts: int,
    say: Callable[[str], None],
) -> dict[str, str]:
    """The campaign under faults; returns each grassroots union's plan."""
    restarts_left = broker_restarts
    await api("POST", "/plans/org/units", json=campaign.units)
    body = plan_body(Clock().today())
    try:
        national = (await api("POST", "/plans/plans", json=body))["plan_id"]
    except Refused:  # issued by an attempt whose answer was lost
        found = await api("GET", "/plans/plans", params={"issuer_unit_id": NATIONAL})
        national = next(plan["id"] for plan in found if plan["number"] == body["number"])
    campaign.plans[NATIONAL] = national
    say(f"plan {national} issued")
    if restarts_left:  # while the cascade is under way
        await restart_broker(broker, tally)
        restarts_left -= 1
        say("broker restarted empty during the cascade")

    async def cascaded() -> bool:
        plans = await api("GET", "/plans/plans", params={"campaign_id": national})
        campaign.plans.update({plan["issuer_unit_id"]: plan["id"] for plan in plans})
        return set(campaign.districts) <= set(campaign.plans)

    await poll(cascaded, "the plan to cascade to every district", api.timeout)
    say("cascaded to every district")
    plan_of = {g: campaign.plans[d] for g, d in campaign.grassroots.items()}
    for n, (grassroots, plan_id) in enumerate(plan_of.items()):
        await api("POST", f"/plans/plans/{plan_id}/acknowledgements", json={"unit_id": grassroots})
        if n in (1, len(plan_of) // 2):
            await kill_after_commit(api.stack, dbs, tally, rng, "plans")

    async def deployed() -> bool:
        state = await api("GET", f"/plans/plans/{national}/deployment")
        return bool(state["grassroots_deployed"] == len(campaign.grassroots))

    await poll(deployed, "every grassroots union to deploy the plan", api.timeout)

    async def known(path: str) -> bool:
        try:
            return bool(await api("GET", path))
        except Refused:
            return False

    for plan_id in set(plan_of.values()):
        path = f"/reporting/plans/{plan_id}/phases/1/completeness"
        await poll(lambda path=path: known(path), "reporting to know the district plans", api.timeout)
    say("every grassroots union deployed it")

    # The report wave: the database goes away a third of the way in, the broker two thirds.
    reporting = sorted(g for g in campaign.grassroots if rng.random() < 0.9)
    outage: asyncio.Task[None] | None = None
    for n, grassroots in enumerate(reporting):
        if n == len(reporting) // 3:
            outage = asyncio.create_task(dbs.outage("reporting", OUTAGE_SECONDS, tally))
            say("reporting's database taken away")
        if n == 2 * len(reporting) // 3 and restarts_left:
            await restart_broker(broker, tally)
            restarts_left -= 1
            say("broker restarted empty during the report wave")
        values = report_values(rng)
        body = {"plan_id": plan_of[grassroots], "phase_seq": 1, "unit_id": grassroots, "values": values}
        await api("POST", "/reporting/reports", json=body)
        campaign.figures[grassroots] = figures_of(values)
        tally.reports += 1
        if n in (1, len(reporting) // 2):
            await kill_after_commit(api.stack, dbs, tally, rng, "reporting")
    if outage is not None:
        await outage
    for grassroots in rng.sample(reporting, len(reporting) // 5):
        values = report_values(rng)
        body = {"plan_id": plan_of[grassroots], "phase_seq": 1, "unit_id": grassroots, "values": values}
        await api("POST", "/reporting/reports", json=body)
        campaign.figures[grassroots] = figures_of(values)
        tally.corrections += 1
    while restarts_left:
        await restart_broker(broker, tally)
        restarts_left -= 1
        say("broker restarted empty after the wave")
    say(f"{tally.reports} reports and {tally.corrections} corrections sent")

    # Each district puts one collective forward to its province, whose council passes it.
    for district, province in campaign.districts.items():
        nominee = next(g for g, d in campaign.grassroots.items() if d == district)
        nomination = {
            "plan_id": campaign.plans[province],
            "unit_id": district,
            "nominee_kind": "collective",
            "nominee_name": f"Tập thể {nominee}",
            "award": "tap_the_lao_dong_xuat_sac",
            "nominee_unit_id": nominee,
            "facts": GOOD_FACTS,
        }
        campaign.nominations[district] = await nominate_once(api, nomination)
        ballot = {"by_unit_id": province, "members": 9, "yes": 7, "no": 2}
        with contextlib.suppress(Refused):  # voted already by an attempt whose answer was lost
            await api("POST", f"/awards/nominations/{campaign.nominations[district]}/votes", json=ballot)
    say(f"{len(campaign.nominations)} nominations made and voted on")
    return plan_of


async def nominate_once(api: Api, body: dict[str, Any]) -> str:
    """A nomination is not sent twice: after an unanswered attempt, look for it before trying again."""
    mine = {"plan_id": body["plan_id"], "unit_id": body["unit_id"]}
    while True:
        found = await api("GET", "/awards/nominations", params=mine)
        if found:
            return str(found[0]["id"])
        try:
            return str((await api("POST", "/awards/nominations", retry=False, json=body))["nomination_id"])
        except Unanswered:
            await asyncio.sleep(0.5)


# ------------------------------------------------------------------ the verdict


async def verify(api: Api, campaign: Campaign, tally: Tally) -> None:
    """Compare every table, the deployment, the nominations and the notifications with the truth."""
    tally.mismatches.clear()
    tally.lost = tally.double_counted = 0
    for issuer in [NATIONAL, *campaign.provinces, *campaign.districts]:
        table = await api("GET", f"/reporting/plans/{campaign.plans[issuer]}/phases/1/completeness")
        total = table["total"]
        truth = campaign.row(campaign.under(issuer))
        found = {"expected": total["expected"], "received": total["received"], "figures": total["figures"]}
        if found != truth:
            tally.mismatches.append(f"table of {issuer}: {found} != {truth}")
            if issuer in campaign.districts:  # which versions reporting kept, unit by unit
                for grassroots in campaign.under(issuer):
                    params = {"plan_id": campaign.plans[issuer], "unit_id": grassroots}
                    versions = await api("GET", "/reporting/reports", params=params)
                    refused = await api("GET", "/reporting/rejections", params={"unit_id": grassroots})
                    kept = [(v["submitted_at"], v["values"].get("new_members")) for v in versions]
                    tally.mismatches.append(
                        f"  {grassroots}: kept {kept}; refused {[r['reasons'][:80] for r in refused]}; "
                        f"truth new_members {campaign.figures.get(grassroots, {}).get('new_members')}"
                    )
        tally.lost += max(0, truth["received"] - found["received"])
        tally.double_counted += max(0, found["received"] - truth["received"])
        for code, value in truth["figures"].items():
            got = found["figures"].get(code, 0)
            tally.lost += max(0, value - got)
            tally.double_counted += max(0, got - value)
    state = await api("GET", f"/plans/plans/{campaign.plans[NATIONAL]}/deployment")
    if state["grassroots_deployed"] != len(campaign.grassroots):
        tally.mismatches.append(f"deployment: {state['grassroots_deployed']} of {len(campaign.grassroots)}")
    nominations = await api("GET", "/awards/nominations")
    by_unit = Counter(row["unit_id"] for row in nominations)
    for district, nomination_id in campaign.nominations.items():
        row = next((r for r in nominations if r["id"] == nomination_id), None)
        if by_unit[district] != 1 or row is None or row["state"] != "passed":
            tally.mismatches.append(
                f"nomination of {district}: {by_unit[district]} made, {row and row['state']}"
            )
    # Every unit below the national union is sent exactly one plan document, on one channel.
    deliveries = await api(
        "GET", "/notifications/deliveries", params={"kind": "plan_issued", "limit": 10_000}
    )
    received = Counter(row["recipient_unit_id"] for row in deliveries)
    recipients = [*campaign.provinces, *campaign.districts, *campaign.grassroots]
    tally.duplicate_notifications = sum(max(0, received[u] - 1) for u in recipients)
    tally.missing_notifications = sum(received[u] == 0 for u in recipients)
    if tally.duplicate_notifications or tally.missing_notifications:
        tally.mismatches.append(
            f"plan documents: {tally.duplicate_notifications} duplicated, "
            f"{tally.missing_notifications} missing"
        )


async def dead_lettered(bootstrap: str, prefix: str) -> dict[str, set[tuple[str, str]]]:
    """The poison markers found in the reports' dead-letter topic: marker -> {(consumer, reason)}."""
    found: dict[str, set[tuple[str, str]]] = {}
    for record in await read_all(bootstrap, dlq_name(topic_name(prefix, "reports"))):
        headers = {k: v.decode() for k, v in record.headers}
        if "chaos_poison" in headers and headers.get("dlq_reason"):
            found.setdefault(headers["chaos_poison"], set()).add(
                (headers["dlq_consumer"], headers["dlq_reason"])
            )
    return found


async def run_chaos(
    kills: int = 24,
    broker_restarts: int = 2,
    provinces: int = 2,
    districts_each: int = 2,
    grassroots_each: int = 6,
    database: str = POSTGRES,
    seed: int = 2026,
    pace: float = 3.0,
    burst_versions: int = 40,
    timeout: float = 300.0,
    say: Callable[[str], None] = print,
) -> Tally:
    rng = random.Random(seed)
    campaign = generate(provinces, districts_each, grassroots_each)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="thidua-chaos-") as scratch, LocalBroker() as broker:
        workdir = Path(scratch)
        with databases(database, workdir, stem="thidua_chaos") as (database_url, engine):
            if engine != "postgresql":
                raise ValueError(f"database: {database!r} — the fault harness needs a PostgreSQL server URL")
            prefix = f"chaos{uuid.uuid4().hex[:8]}"
            settings = {
                "CONSUMER_SESSION_TIMEOUT_MS": "6000",
                # Events wait a little in the outbox: kills between a commit and its publish are likely.
                "RELAY_POLL_SECONDS": "0.3",
                "RELAY_CHECK_SECONDS": "1",
                "RETRY_MAX_SECONDS": "2",
                "TICK_SECONDS": "0.5",
            }
            env = stack_env(broker.bootstrap_servers, prefix, database_url, workdir, settings, False)
            stack = Stack(env, workdir)
            dbs = Databases(database_url)
            stack.start()
            try:
                async with httpx.AsyncClient(timeout=30, headers=stack.headers()) as client:
                    await stack.ready(client)
                    api = Api(client, stack, tally, timeout)
                    # Four kills right after a commit and three in the burst come from the scenario.
                    bursting = len(REPORT_CONSUMERS)
                    if kills < AFTER_COMMIT_KILLS + bursting:
                        raise ValueError(f"kills: {kills} — at least {AFTER_COMMIT_KILLS + bursting}")
                    killing = asyncio.create_task(
                        monkey(stack, dbs, tally, rng, kills - AFTER_COMMIT_KILLS - bursting, pace)
                    )
                    plan_of = await scenario(api, campaign, broker, dbs, tally, rng, broker_restarts, say)
                    bootstrap = broker.bootstrap_servers
                    await corrections_burst(
                        bootstrap, prefix, campaign, plan_of, stack, dbs, tally, rng, burst_versions
                    )
                    say(f"{tally.burst} versions sent straight to Kafka, shuffled; its consumers killed")
                    topics = [topic_name(prefix, "reports"), topic_name(prefix, "plans")]
                    tally.redelivered = await redeliver(bootstrap, topics, rng, share=0.3)
                    poison = poison_records(campaign, plan_of)
                    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
                    await producer.start()
                    try:
                        for key, value, headers in poison:
                            await producer.send_and_wait(
                                topic_name(prefix, "reports"), value, key, headers=headers
                            )
                    finally:
                        await producer.stop()
                    tally.poison_sent = len(poison)
                    say(
                        f"{tally.redelivered} records sent again, shuffled; {len(poison)} poison records sent"
                    )
                    if not killing.done():
                        say("waiting for the last kills")
                    await killing
                    await stack.ready(client, timeout=120)
                    say(f"{sum(tally.kills.values())} kills done; waiting for the figures to settle")

                    async def settled() -> bool:
                        await verify(api, campaign, tally)
                        return not tally.mismatches

                    with contextlib.suppress(TimeoutError):
                        await poll(settled, "the figures to equal the truth", timeout)
                    letters: dict[str, set[tuple[str, str]]] = {}
                    deadline = time.monotonic() + 60
                    while len(letters) < len(poison) and time.monotonic() < deadline:
                        letters = await dead_lettered(bootstrap, prefix)
                        await asyncio.sleep(1)
                    tally.poison_dead_lettered = len(letters)
                    tally.dead_letters = {marker: sorted(found) for marker, found in letters.items()}
                    if len(letters) < len(poison):
                        tally.mismatches.append(f"poison dead-lettered: {len(letters)} of {len(poison)}")
            except BaseException:
                stack.tell_logs()
                raise
            finally:
                stack.stop()
    return tally
