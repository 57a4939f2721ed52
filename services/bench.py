"""`thidua bench national`: the whole federation's report wave, measured on the real broker and database.

The four services run as separate processes (`thidua serve …`), as they are deployed. The benchmark
plays the federation around them: it imports a generated tree, issues a national plan that cascades
automatically to the grassroots, acknowledges it from every grassroots unit and then publishes one
report per unit — some late, some missing, some delivered twice, some corrected — straight onto the
reports topic, as the units' own systems would. It computes what the national figures must be and waits
until the reporting service shows exactly that. It also measures the broker alone (the same number of
records produced and consumed with no processing) and the latency of a steady stream of reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from services.demo import INDICATORS, figures_of, report_values
from shared.access import service_headers
from shared.clock import LOCAL_TZ
from shared.events import Envelope, Event, PlanAcknowledged, ReportSubmitted, to_kafka
from shared.ids import new_id
from shared.local_broker import LocalBroker, free_port
from shared.settings import SERVICES, Settings
from shared.topics import STREAMS, topic_name

NATIONAL_GRASSROOTS = 135_000
PROVINCES = 34
SECTOR_UNIONS = 20
GRASSROOTS_PER_INTERMEDIATE = 190  # ~700 intermediate unions at national size
NATIONAL = "vn"
LATE, MISSING, DUPLICATED, CORRECTED = 0.05, 0.03, 0.02, 0.01
SOURCE = "/bench/grassroots"  # the units' own systems, publishing straight to Kafka


# ------------------------------------------------------------------ the federation


@dataclass
class Federation:
    """A generated federation: the national union, provinces and national sector unions, intermediate
    unions under them, and the grassroots unions under those."""

    units: list[dict[str, Any]]
    parent: dict[str, str]  # grassroots unit -> its intermediate union
    intermediates: list[str]

    @property
    def grassroots(self) -> list[str]:
        return list(self.parent)


def unit(unit_id: str, name: str, level: str, parent_id: str | None = None) -> dict[str, Any]:
    return {"id": unit_id, "name": name, "level": level, "parent_id": parent_id, "valid_from": "2020-01-01"}


def federation(grassroots: int) -> Federation:
    tops = min(PROVINCES + SECTOR_UNIONS, max(2, grassroots // 100))
    intermediates = max(tops, round(grassroots / GRASSROOTS_PER_INTERMEDIATE))
    units = [unit(NATIONAL, "Tổng Liên đoàn Lao động Việt Nam", "national")]
    top_ids = []
    for n in range(tops):
        is_sector = n >= PROVINCES
        top_id = f"ng{n - PROVINCES + 1:02d}" if is_sector else f"t{n + 1:02d}"
        name = f"Công đoàn ngành trung ương {top_id}" if is_sector else f"LĐLĐ tỉnh {top_id}"
        units.append(unit(top_id, name, "province", NATIONAL))
        top_ids.append(top_id)
    middle_ids = []
    for n in range(intermediates):
        top_id = top_ids[n % tops]
        middle_id = f"{top_id}-h{n // tops + 1:03d}"
        units.append(unit(middle_id, f"LĐLĐ huyện {middle_id}", "district", top_id))
        middle_ids.append(middle_id)
    parent = {}
    for n in range(grassroots):
        middle_id = middle_ids[n % intermediates]
        unit_id = f"{middle_id}-c{n // intermediates + 1:04d}"
        units.append(unit(unit_id, f"CĐCS {unit_id}", "grassroots", middle_id))
        parent[unit_id] = middle_id
    return Federation(units, parent, middle_ids)


def national_plan(today: date) -> dict[str, Any]:
    """Two phases: the first over (so it is closed as soon as the plan is in force) with its report
    deadline just passed, the second under way."""
    return {
        "number": f"{random.randint(100, 999)}/KH-TLĐ",
        "issuer_unit_id": NATIONAL,
        "title": "Phong trào thi đua lao động giỏi, lao động sáng tạo (đo kiểm toàn quốc)",
        "issued_on": (today - timedelta(days=70)).isoformat(),
        "phases": [
            {
                "seq": 1,
                "label": "Đợt 1",
                "start": (today - timedelta(days=60)).isoformat(),
                "end": (today - timedelta(days=8)).isoformat(),
                "report_due": (today - timedelta(days=1)).isoformat(),
            },
            {
                "seq": 2,
                "label": "Đợt 2",
                "start": (today - timedelta(days=7)).isoformat(),
                "end": (today + timedelta(days=60)).isoformat(),
                "report_due": (today + timedelta(days=67)).isoformat(),
            },
        ],
        "indicators": INDICATORS,
        "auto_derive": True,
    }


# ------------------------------------------------------------------ ground truth


@dataclass
class Wave:
    """The reports of one phase as the benchmark sends them, and the national row they must add up to."""

    records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # unit -> on_time | late | missing
    figures: dict[str, dict[str, int]] = field(default_factory=dict)  # unit -> its latest figures

    def national_row(self) -> dict[str, Any]:
        sums: dict[str, int] = defaultdict(int)
        for unit_figures in self.figures.values():
            for code, value in unit_figures.items():
                sums[code] += value
        states = list(self.status.values())
        return {
            "expected": len(states),
            "received": sum(state != "missing" for state in states),
            "on_time": states.count("on_time"),
            "late": states.count("late"),
            "figures": dict(sorted(sums.items())),
        }


def phase_one_report(plan_id: str, unit_id: str, values: dict[str, Any], at: datetime) -> ReportSubmitted:
    """A unit's report on phase 1, sent at `at`."""
    return ReportSubmitted(
        report_id=new_id(),
        plan_id=plan_id,
        phase_seq=1,
        unit_id=unit_id,
        values=values,
        submitted_at=at,
    )


def record_of(topic: str, event: Event, unit: str, correlation_id: str, now: datetime) -> Any:
    envelope = Envelope.wrap(event, source=SOURCE, unit=unit, time=now, correlation_id=correlation_id)
    key, value, headers = to_kafka(envelope)
    return topic, key, value, headers


def report_wave(
    prefix: str, campaign_id: str, plan_of: dict[str, str], due: date, rng: random.Random
) -> Wave:
    """Phase 1 reports: ~5 % late, ~3 % missing, ~2 % sent twice (the same event), ~1 % corrected by a
    second version afterwards, whose figures count."""
    topic = topic_name(prefix, "reports")
    now = datetime.now(UTC)
    on_time_at = datetime.combine(due - timedelta(days=1), datetime.min.time(), LOCAL_TZ).replace(hour=10)
    wave = Wave()
    corrections = []
    for unit, plan_id in plan_of.items():
        draw = rng.random()
        if draw < MISSING:
            wave.status[unit] = "missing"
            continue
        late = draw < MISSING + LATE
        wave.status[unit] = "late" if late else "on_time"
        sent_at = now if late else on_time_at.astimezone(UTC)
        values = report_values(rng)
        record = record_of(topic, phase_one_report(plan_id, unit, values, sent_at), unit, campaign_id, now)
        wave.records.append(record)
        wave.figures[unit] = figures_of(values)
        if rng.random() < DUPLICATED:
            wave.records.append(record)  # delivered twice: the same event id
        if rng.random() < CORRECTED:
            corrections.append((unit, plan_id, sent_at))
    rng.shuffle(wave.records)
    for unit, plan_id, sent_at in corrections:
        values = report_values(rng)
        correction = phase_one_report(plan_id, unit, values, sent_at + timedelta(minutes=30))
        wave.records.append(record_of(topic, correction, unit, campaign_id, now))
        wave.figures[unit] = figures_of(values)
    return wave


# ------------------------------------------------------------------ the services, each its own process


@dataclass
class Stack:
    """The four services as separate processes on one broker and one database server."""

    env: dict[str, str]
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        for service in SERVICES:
            self.ports[service] = free_port()
            self.start_one(service)

    def start_one(self, service: str) -> None:
        """Start (or start again, on the same port) one service's process."""
        log = (self.workdir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", service, "--port", str(self.ports[service])],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown of any kind, as when a machine dies."""
        process = self.processes[service]
        process.kill()
        process.wait(10)

    def headers(self) -> dict[str, str]:
        """The harness calls the APIs as a service, with a token signed with the run's key."""
        settings = Settings(secret_key=SecretStr(self.env["THIDUA_SECRET_KEY"]))
        return service_headers(settings, "harness")

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}/{service}"

    async def ready(self, client: httpx.AsyncClient, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        for service, port in self.ports.items():
            while True:
                process = self.processes[service]
                if process.poll() is not None:
                    raise RuntimeError(f"{service} exited at start; see {self.workdir / service}.log")
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} was not ready within {timeout:.0f} s")
                await asyncio.sleep(0.2)

    def peak_rss_mb(self) -> dict[str, float]:
        """Each service's peak resident memory (VmHWM of its process)."""
        peaks = {}
        for service, process in self.processes.items():
            status = Path(f"/proc/{process.pid}/status")
            if status.exists():
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[service] = round(int(line.split()[1]) / 1024, 1)
        return peaks

    def cpu_seconds(self) -> dict[str, float]:
        """The CPU time each service's process has used so far (user and system, all its threads), and the
        benchmark's own (`bench`: its producer, consumers and polling)."""
        ticks = os.sysconf("SC_CLK_TCK")
        used = {"bench": time.process_time()}
        for service, process in self.processes.items():
            stat = Path(f"/proc/{process.pid}/stat")
            if stat.exists():  # utime and stime, the 14th and 15th fields, after the command in parentheses
                fields = stat.read_text().rsplit(")", 1)[1].split()
                used[service] = (int(fields[11]) + int(fields[12])) / ticks
        return used

    def cpu_seconds_since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.cpu_seconds()
        return {name: round(now[name] - before[name], 1) for name in before if name in now}

    def tell_logs(self, lines: int = 15) -> None:
        """The last lines each service logged, for a run that failed (its work directory goes away)."""
        for service in self.processes:
            text = (self.workdir / f"{service}.log").read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {service} (last {len(text)} lines of its log)", *text, sep="\n", file=sys.stderr)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def stack_env(
    bootstrap: str,
    prefix: str,
    database_url: str,
    workdir: Path,
    settings: dict[str, str],
    inherit_settings: bool = True,
) -> dict[str, str]:
    """The environment of a run's service processes: its broker, topics, databases, scratch folder and a
    key of its own, with `settings` (THIDUA_ names without the prefix) on top. Nothing leaves the
    machine: every message is written to the delivery log, and no mail server, iOffice or webhook is
    used. Without `inherit_settings`, THIDUA_ settings of the calling shell are left out too."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if (inherit_settings or not name.startswith("THIDUA_"))
        and name not in ("THIDUA_SMTP_HOST", "THIDUA_IOFFICE_URL", "THIDUA_WEBHOOK_URL")
    }
    return {
        **inherited,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "THIDUA_TOPIC_PREFIX": prefix,
        "THIDUA_DATABASE_URL": database_url,
        "THIDUA_VAR_DIR": str(workdir),
        "THIDUA_SECRET_KEY": secrets.token_hex(32),
        "THIDUA_LOG_LEVEL": "WARNING",
        "THIDUA_DOCUMENT_CHANNELS": "log",
        "THIDUA_MESSAGE_CHANNELS": "log",
        **{f"THIDUA_{name}": value for name, value in settings.items()},
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }


@contextmanager
def databases(database: str, workdir: Path, stem: str = "thidua_bench") -> Iterator[tuple[str, str]]:
    """A database URL template with "{service}" and the name of the engine: SQLite files in the work
    directory, or fresh databases on the PostgreSQL server at `database`, dropped afterwards."""
    if database == "sqlite":
        yield f"sqlite:///{workdir.as_posix()}/{{service}}.db", "sqlite"
        return
    server = make_url(database)
    if not server.drivername.startswith("postgresql"):
        raise ValueError(f"database: {database!r} is neither 'sqlite' nor a postgresql:// server URL")
    stem = f"{stem}_{uuid.uuid4().hex[:8]}"
    names = [f"{stem}_{service}" for service in SERVICES]
    admin = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        url = server.set(drivername="postgresql+psycopg", database=f"{stem}_{{service}}")
        yield url.render_as_string(hide_password=False).replace("%7B", "{").replace("%7D", "}"), "postgresql"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------ the benchmark


@dataclass
class Result:
    grassroots_units: int
    database: str
    broker: str
    cascade_seconds: float = 0.0
    reports: int = 0
    publish_seconds: float = 0.0
    seconds_to_exact_national_aggregate: float = 0.0
    reports_per_second: float = 0.0
    raw_broker_messages: int = 0
    raw_broker_messages_per_second: float = 0.0
    ratio_to_raw_broker: float = 0.0
    latency_reports: int = 0
    latency_rate_per_second: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    peak_rss_mb: float = 0.0
    peak_rss_mb_by_service: dict[str, float] = field(default_factory=dict)
    cascade_cpu_seconds: dict[str, float] = field(default_factory=dict)
    wave_cpu_seconds: dict[str, float] = field(default_factory=dict)
    import_seconds: float = 0.0
    national_row: dict[str, Any] = field(default_factory=dict)


async def poll(check: Callable[[], Any], what: str, timeout: float, every: float = 0.2) -> Any:
    """Call `check()` until it returns something truthy; fail loudly naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


async def expect(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    response = await client.request(method, url, **kwargs)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:500]}")
    return response.json() if response.content else None


async def publish(
    producer: AIOKafkaProducer, records: list[Any], on_sent: Callable[[int], None] | None = None
) -> None:
    """Send records as fast as the producer takes them, in chunks whose deliveries are awaited."""
    chunk = 5000
    for start in range(0, len(records), chunk):
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in records[start : start + chunk]
        ]
        await asyncio.gather(*futures)
        if on_sent:
            on_sent(len(futures))


async def raw_broker_rate(bootstrap: str, prefix: str, records: list[Any]) -> tuple[int, float]:
    """Records through the broker alone, produced and consumed with nothing done with them: how many came
    back, and how many a second."""
    topic = f"{prefix}.raw"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:  # as many partitions as the reports topic
        await admin.create_topics([NewTopic(topic, stream_partitions("reports"), 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}-raw",
        auto_offset_reset="earliest",
        max_poll_records=5000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    await consumer.start()
    try:
        await poll(lambda: _assigned(consumer), "the raw consumer's partitions", 60)  # nothing sent yet
        started = time.perf_counter()

        async def consume() -> int:
            got = 0
            async for batch in _batches(consumer):
                got += batch
                if got >= len(records):
                    return got
            return got

        _, consumed = await asyncio.gather(
            publish(producer, [(topic, k, v, h) for _, k, v, h in records]), consume()
        )
        return consumed, len(records) / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def _assigned(consumer: AIOKafkaConsumer) -> bool:
    await consumer.getmany(timeout_ms=200)
    return bool(consumer.assignment())


async def _batches(consumer: AIOKafkaConsumer) -> Any:
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        yield sum(len(messages) for messages in batches.values())


def _national(table: dict[str, Any]) -> dict[str, Any]:
    total = table["total"]
    return {key: total[key] for key in ("expected", "received", "on_time", "late")} | {
        "figures": total["figures"]
    }


async def run_national(
    grassroots: int = NATIONAL_GRASSROOTS,
    database: str = "sqlite",
    seed: int = 2026,
    latency_rate: float = 2000.0,
    latency_seconds: float = 10.0,
    timeout: float = 600.0,
    show_progress: bool = True,
    bootstrap_servers: str | None = None,
) -> Result:
    """Run the benchmark; `database` is "sqlite" or a PostgreSQL server URL, the broker the one at
    `bootstrap_servers` (else KAFKA_BOOTSTRAP_SERVERS, else a local broker started for the run)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="thidua-bench-") as scratch:
        workdir = Path(scratch)
        with (
            databases(database, workdir) as (database_url, engine),
            _broker(bootstrap_servers) as (bootstrap, broker_name),
        ):
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            # The wave is the hours around a deadline: units are marked missing after it, not during.
            env = stack_env(bootstrap, prefix, database_url, workdir, {"DEADLINE_GRACE_HOURS": str(24 * 30)})
            stack = Stack(env, workdir)
            result = Result(grassroots_units=grassroots, database=engine, broker=broker_name)
            stack.start()
            try:
                with _progress(show_progress) as progress:
                    await _run(
                        stack,
                        result,
                        progress,
                        bootstrap,
                        prefix,
                        grassroots,
                        rng,
                        latency_rate,
                        latency_seconds,
                        timeout,
                    )
                result.peak_rss_mb_by_service = stack.peak_rss_mb()
                result.peak_rss_mb = round(sum(result.peak_rss_mb_by_service.values()), 1)
            except BaseException:
                stack.tell_logs()
                raise
            finally:
                stack.stop()
    return result


@contextmanager
def _broker(bootstrap_servers: str | None) -> Iterator[tuple[str, str]]:
    if bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield bootstrap_servers or os.environ["KAFKA_BOOTSTRAP_SERVERS"], "given (KAFKA_BOOTSTRAP_SERVERS)"
        return
    with LocalBroker() as broker:
        yield broker.bootstrap_servers, "tansu (local)"


@contextmanager
def _progress(show: bool) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show,
        transient=False,
    )
    with progress:
        yield progress


async def _run(
    stack: Stack,
    result: Result,
    progress: Progress,
    bootstrap: str,
    prefix: str,
    grassroots: int,
    rng: random.Random,
    latency_rate: float,
    latency_seconds: float,
    timeout: float,
) -> None:
    tree = federation(grassroots)
    limits = httpx.Timeout(120.0)
    async with httpx.AsyncClient(timeout=limits, headers=stack.headers()) as client:
        await stack.ready(client)
        plans, reporting = stack.url("plans"), stack.url("reporting")

        # 1. the tree
        started = time.perf_counter()
        task = progress.add_task("import the federation", total=len(tree.units))
        for start in range(0, len(tree.units), 10_000):
            chunk = tree.units[start : start + 10_000]
            await expect(client, "POST", f"{plans}/org/units", json=chunk)
            progress.advance(task, len(chunk))
        known = {service: 0 for service in ("reporting", "notifications", "awards")}

        async def everyone_knows_the_tree() -> bool:
            for service in known:
                metrics = (await client.get(f"http://127.0.0.1:{stack.ports[service]}/metrics")).text
                known[service] = int(_counter(metrics, "thidua_events_processed_total", "OrgUnitRegistered"))
            return min(known.values()) >= len(tree.units)

        await poll(everyone_knows_the_tree, "the services to learn the federation", timeout, every=1.0)
        result.import_seconds = round(time.perf_counter() - started, 2)

        # 2. the cascade, acknowledged by every grassroots unit
        today = datetime.now(LOCAL_TZ).date()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
        await producer.start()
        try:
            task = progress.add_task("cascade, acknowledged", total=grassroots)
            started, cpu = time.perf_counter(), stack.cpu_seconds()
            root = await expect(client, "POST", f"{plans}/plans", json=national_plan(today))
            campaign = root["plan_id"]
            plan_of: dict[str, str] = {}  # grassroots unit -> the plan of its intermediate union
            acked: set[str] = set()
            below: dict[str, list[str]] = defaultdict(list)
            for unit_id, middle in tree.parent.items():
                below[middle].append(unit_id)
            plans_topic = topic_name(prefix, "plans")

            async def all_acknowledged() -> bool:
                ready: list[str] = []
                if len(acked) < len(tree.intermediates):  # some intermediate plans are not issued yet
                    found = await expect(client, "GET", f"{plans}/plans", params={"campaign_id": campaign})
                    by_issuer = {plan["issuer_unit_id"]: plan["id"] for plan in found}
                    ready = [m for m in tree.intermediates if m in by_issuer and m not in acked]
                now = datetime.now(UTC)
                records = []
                for middle in ready:
                    acked.add(middle)
                    for unit in below[middle]:
                        plan_of[unit] = by_issuer[middle]
                        event = PlanAcknowledged(plan_id=by_issuer[middle], unit_id=unit, acknowledged_at=now)
                        records.append(record_of(plans_topic, event, unit, campaign, now))
                await publish(producer, records)
                deployment = await expect(client, "GET", f"{plans}/plans/{campaign}/deployment")
                progress.update(task, completed=deployment["grassroots_deployed"])
                return deployment["grassroots_deployed"] == grassroots

            await poll(all_acknowledged, "every grassroots unit to acknowledge", timeout, every=0.5)
            result.cascade_seconds = round(time.perf_counter() - started, 2)
            result.cascade_cpu_seconds = stack.cpu_seconds_since(cpu)

            # 3. phase 1 is closed; the wave
            async def closed() -> bool:
                plan = await expect(client, "GET", f"{plans}/plans/{campaign}")
                return all(phase.get("closed_at") for phase in plan["phases"] if phase["seq"] == 1)

            await poll(closed, "phase 1 to close", timeout)
            due = today - timedelta(days=1 + 2 * 2)  # the intermediate unions' plans: two levels earlier
            wave = report_wave(prefix, campaign, plan_of, due, rng)
            truth = wave.national_row()
            result.reports = len(wave.records)
            sent = progress.add_task("reports published", total=len(wave.records))
            counted = progress.add_task("national aggregate, received", total=truth["received"])
            table_url = f"{reporting}/plans/{campaign}/phases/1/completeness"
            started, cpu = time.perf_counter(), stack.cpu_seconds()
            await publish(producer, wave.records, lambda n: progress.advance(sent, n))
            published = time.perf_counter()
            result.publish_seconds = round(published - started, 2)
            last: dict[str, Any] = {}

            async def exact() -> bool:
                nonlocal last
                last = _national(await expect(client, "GET", table_url))
                progress.update(counted, completed=last["received"])
                if last["received"] < 0.9 * truth["received"]:
                    await asyncio.sleep(0.45)  # far from done: look less often, as an officer would
                return last == truth

            try:
                await poll(exact, "the national aggregate to equal the reports sent", timeout, every=0.05)
            except TimeoutError as error:
                raise RuntimeError(
                    f"{error}: the services say {last}, the reports sent add up to {truth}"
                ) from None
            done = time.perf_counter()
            result.wave_cpu_seconds = stack.cpu_seconds_since(cpu)
            result.seconds_to_exact_national_aggregate = round(done - published, 2)
            result.reports_per_second = round(len(wave.records) / (done - started))
            result.national_row = truth

            # 4. latency at a steady rate (phase 2)
            await _latency(
                client,
                producer,
                stack,
                result,
                progress,
                prefix,
                campaign,
                plan_of,
                rng,
                latency_rate,
                latency_seconds,
                timeout,
            )
        finally:
            await producer.stop()

    # 5. the broker alone, with records of the same size
    result.raw_broker_messages, rate = await raw_broker_rate(bootstrap, prefix, wave.records)
    result.raw_broker_messages_per_second = round(rate)
    result.ratio_to_raw_broker = round(result.reports_per_second / result.raw_broker_messages_per_second, 3)


async def _latency(
    client: httpx.AsyncClient,
    producer: AIOKafkaProducer,
    stack: Stack,
    result: Result,
    progress: Progress,
    prefix: str,
    campaign: str,
    plan_of: dict[str, str],
    rng: random.Random,
    rate: float,
    seconds: float,
    timeout: float,
) -> None:
    """Submit phase 2 reports at `rate` a second; the latency of the k-th report is the time from its
    sending to the first moment the national table counts k reports received."""
    units = list(plan_of)[: int(rate * seconds)]
    topic = topic_name(prefix, "reports")
    now = datetime.now(UTC)
    records = [
        record_of(
            topic,
            ReportSubmitted(
                report_id=new_id(),
                plan_id=plan_of[unit],
                phase_seq=2,
                unit_id=unit,
                values=report_values(rng),
                submitted_at=now,
            ),
            unit,
            campaign,
            now,
        )
        for unit in units
    ]
    table_url = f"{stack.url('reporting')}/plans/{campaign}/phases/2/completeness"
    task = progress.add_task(f"steady {rate:.0f} reports/s, visible", total=len(records))
    sent_at: list[float] = []
    seen_at: list[float] = []
    tick = 0.05
    per_tick = max(1, round(rate * tick))

    async def send() -> None:
        began = time.perf_counter()
        for n, start in enumerate(range(0, len(records), per_tick)):
            await asyncio.sleep(max(0.0, began + n * tick - time.perf_counter()))
            chunk = records[start : start + per_tick]
            futures = [await producer.send(t, value=v, key=k, headers=h) for t, k, v, h in chunk]
            sent_at.extend([time.perf_counter()] * len(chunk))
            await asyncio.gather(*futures)

    sender = asyncio.create_task(send())
    deadline = time.monotonic() + timeout
    while len(seen_at) < len(records):
        received = (await expect(client, "GET", table_url))["total"]["received"]
        moment = time.perf_counter()
        while len(seen_at) < min(received, len(records)):
            seen_at.append(moment)
        progress.update(task, completed=len(seen_at))
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen_at)} of {len(records)} steady reports became visible")
        await asyncio.sleep(0.02)
    await sender
    latencies = sorted((seen - sent) * 1000 for seen, sent in zip(seen_at, sent_at, strict=True))
    result.latency_reports = len(records)
    result.latency_rate_per_second = rate
    result.latency_p50_ms = round(statistics.median(latencies), 1)
    result.latency_p99_ms = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)


def stream_partitions(name: str) -> int:
    return next(stream.partitions for stream in STREAMS if stream.name == name)


def _counter(metrics: str, name: str, event_type: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "{") and f'type="{event_type}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def as_json(result: Result) -> str:
    return json.dumps(asdict(result), ensure_ascii=False, indent=2)
