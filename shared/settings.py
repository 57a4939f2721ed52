"""One settings class for every service, read from the environment and `.env` (12-factor)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, NonNegativeInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("plans", "reporting", "notifications", "awards")
# A consumer's batch applied for longer than this commits what it has applied and goes on in a new
# transaction: what its handlers published reaches the other services sooner (a cascade's province plans
# derive some 700 plans), and the database's writer is not held for long.
TRANSACTION_SECONDS = 0.5


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THIDUA_", env_file=".env", extra="ignore")

    # A real Kafka cluster; unset means: start the embedded local broker (tansu) on a free loopback port.
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "THIDUA_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # TLS and SASL, when the cluster asks for them (see deploy/TOPOLOGIES.md for ACLs).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    # Topics are named "<prefix>.<stream>": a province stack bridged with MirrorMaker 2 keeps its own prefix.
    topic_prefix: str = "thidua"
    # Prefixes of other stacks whose streams MirrorMaker 2 mirrors into this cluster, comma-separated:
    # a national stack lists its provinces' ("thidua.hn,thidua.dn"), a province stack the national one.
    mirrored_prefixes: str = ""
    # Where the embedded mode keeps its SQLite files.
    var_dir: Path = Path("var")
    # Database URL; "{service}" is replaced by the service name, so every service has its own database.
    # Per-service override: THIDUA_PLANS_DATABASE_URL and so on.
    database_url: str = "sqlite:///{var_dir}/{service}.db"
    plans_database_url: str | None = None
    reporting_database_url: str | None = None
    notifications_database_url: str | None = None
    awards_database_url: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = 8000

    # Python's garbage collector in a service's process: (allocations before a young pass, young passes
    # before a middle one, middle passes before a full one). A batch's thousands of short-lived objects
    # outlive Python's default first two passes (700, 10, 10), and full passes over the whole heap, a
    # quarter of a second each, then came 90 to 170 times a national benchmark. "[700, 10, 10]" restores
    # Python's defaults.
    gc_thresholds: tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt] = (10_000, 50, 100)

    consumer_batch_size: int = 2000
    consumer_transaction_seconds: float = Field(default=TRANSACTION_SECONDS, ge=0)
    consumer_batch_timeout_ms: int = 100
    # How much of each partition a consumer fetches ahead at most: what a lagging consumer holds in memory.
    consumer_partition_fetch_bytes: int = 256 * 1024
    # How much one fetch brings at most, all partitions together. Some Kafka-compatible brokers (tansu)
    # pass over the per-partition limit: this one bounds what a lagging consumer holds on any broker.
    consumer_fetch_bytes: int = 1024 * 1024
    # A new consumer gets its partitions after about half of this (6000 is the least Kafka allows).
    consumer_session_timeout_ms: int = 10_000
    # How soon clients notice topics that changed (recreated after a broker lost its data).
    kafka_metadata_max_age_ms: int = 10_000
    # Published outbox rows are kept this long, so they can be replayed to a broker that lost its data.
    outbox_retention_hours: float = 24 * 7
    relay_batch_size: int = 1000
    relay_poll_seconds: float = 0.2
    # How often the relay checks that the broker still holds what was published (cluster id, topics).
    relay_check_seconds: float = 5.0
    # How often the schedulers look for phases to open or close and deadlines that passed.
    tick_seconds: float = 1.0
    # Transient failures (database or broker away) are retried with exponential backoff up to this cap.
    retry_max_seconds: float = 30.0
    # Hours after a due day ends before units without a report are marked missing (reports in flight).
    deadline_grace_hours: float = 1.0
    # A plan implementing another must have its reports in at least this many days before the parent's.
    min_consolidation_days: int = 1
    # Days a derived plan's report deadline is set before its parent's, so the unit can consolidate.
    derive_lead_days: int = 2
    # The largest document or edXML package accepted (bytes).
    document_max_bytes: int = 20 * 1024 * 1024

    # Signs officers' tokens; unset in the embedded mode: a key kept in <var_dir>/secret.key.
    secret_key: SecretStr | None = None
    token_hours: float = 12.0
    # The token the command line calls the APIs with (an officer's); unset: an operator's, signed with
    # the key above.
    token: SecretStr | None = None

    # ---------------------------------------------------------------- notifications
    # Channels in the order they are tried: plans (documents) and other messages. A unit gets the first
    # channel it can be reached on (iOffice: has_ioffice; email: an address; paper and log: always).
    document_channels: str = "ioffice,email,paper"
    message_channels: str = "email,log"
    # Outgoing email (SMTP): TLS "none", "starttls" or "tls" (implicit, port 465).
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "thidua@localhost"
    smtp_timeout_seconds: float = 30.0
    # The iOffice exchange endpoint that takes edXML packages (POST), and its bearer token if any.
    ioffice_url: str | None = None
    ioffice_token: SecretStr | None = None
    # Other systems told of every message: a POST signed with HMAC-SHA256 of the body (X-Thidua-Signature).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Where print batches for units without iOffice or email are written (default: <var_dir>/paper).
    paper_dir: Path | None = None
    # Retries: the n-th is tried after notify_backoff_seconds × 2^(n-1) (capped); after the last it is dead.
    notify_max_attempts: int = 5
    notify_backoff_seconds: float = 60.0
    notify_backoff_max_seconds: float = 3600.0
    # Reminders before each report deadline, in days, to units that have not reported yet.
    reminder_days: str = "3,1"
    # No reminder is sent in these local hours ("21-7": from 21:00 to 07:00); they wait until the end.
    quiet_hours: str = "21-7"
    # Reminders to one unit on one day go out as one message, unless the unit says otherwise.
    reminder_digest: bool = True
    # Kinds of message a unit may opt out of (the rules make the others official and compulsory).
    optional_kinds: str = "reminder,nomination"

    log_level: str = "INFO"
    log_json: bool = True

    @property
    def paper_path(self) -> Path:
        return self.paper_dir or self.var_dir / "paper"

    @staticmethod
    def listed(text: str) -> list[str]:
        return [item.strip() for item in text.split(",") if item.strip()]

    @property
    def mirrored(self) -> list[str]:
        return [prefix.strip() for prefix in self.mirrored_prefixes.split(",") if prefix.strip()]

    def database_url_for(self, service: str) -> str:
        """The database URL of one service (its own override, else the shared template)."""
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
        override = getattr(self, f"{service}_database_url")
        template = override or self.database_url
        return template.format(service=service, var_dir=self.var_dir.as_posix())


@lru_cache
def get_settings() -> Settings:
    return Settings()
