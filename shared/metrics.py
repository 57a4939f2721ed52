"""thidua's own Prometheus series. Labels stay bounded: service, consumer, stream, reason — never an id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.events import Channel, Level
from shared.settings import SERVICES

NOTIFICATION_STATES = ("queued", "sent", "failed", "bounced", "dead", "to_be_posted", "posted")
NOMINATION_STATES = ("nominated", "forwarded", "decided", "refused", "revoked")

DEAD_LETTER_REASONS = (
    "missing_attribute",
    "unsupported_specversion",
    "unknown_type",
    "unknown_schema_version",
    "invalid_payload",
    "rule_violation",
    "unauthorized",  # the producing unit may not do that (issue above itself, report for another)
    "handler_error",
)


class Metrics:
    """One set of series per process, in its own registry (several stacks can live in one test run)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, services: tuple[str, ...] = SERVICES
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.outbox_pending = Gauge(
            "thidua_outbox_pending", "Outbox rows not yet published", ["service"], registry=r
        )
        self.outbox_oldest_pending_age = Gauge(
            "thidua_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox row not yet published",
            ["service"],
            registry=r,
        )
        self.outbox_published = Counter(
            "thidua_outbox_published", "Outbox rows published to the broker", ["service"], registry=r
        )
        self.relay_publish_failures = Counter(
            "thidua_relay_publish_failures", "Failed attempts to publish outbox rows", ["service"], registry=r
        )
        self.outbox_replays = Counter(
            "thidua_outbox_replays",
            "Times the outbox was replayed to a broker that lost data",
            ["service", "cause"],
            registry=r,
        )
        self.events_processed = Counter(
            "thidua_events_processed", "Events a consumer applied", ["consumer", "type"], registry=r
        )
        self.inbox_duplicates = Counter(
            "thidua_inbox_duplicates",
            "Redelivered events a consumer had already applied (and ignored)",
            ["consumer"],
            registry=r,
        )
        self.dead_letters = Counter(
            "thidua_dead_letters",
            "Records sent to a dead-letter topic",
            ["consumer", "stream", "reason"],
            registry=r,
        )
        self.statistics_refreshed = Counter(
            "thidua_table_statistics_refreshed",
            "Times a table that had outgrown its PostgreSQL statistics was analyzed",
            ["service", "table"],
            registry=r,
        )
        self.consumer_retries = Counter(
            "thidua_consumer_retries",
            "Batches retried after a transient failure",
            ["consumer"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "thidua_consumer_batch_seconds",
            "Time to apply one batch of events, commit included",
            ["consumer"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.reports_received = Counter(
            "thidua_reports_received",
            "Reports counted, by timeliness",
            ["timeliness"],
            registry=r,
        )
        self.completeness_ratio = Gauge(
            "thidua_reporting_completeness_ratio",
            "Reports received over reports expected, per level, over phases whose reporting window is open",
            ["level"],
            registry=r,
        )
        self.expected_reports = Gauge(
            "thidua_reporting_expected_reports",
            "Reports expected in open reporting windows, per level",
            ["level"],
            registry=r,
        )
        self.received_reports = Gauge(
            "thidua_reporting_received_reports",
            "Reports received in open reporting windows, per level",
            ["level"],
            registry=r,
        )
        self.seconds_to_deadline = Gauge(
            "thidua_reporting_seconds_to_next_deadline",
            "Seconds until the nearest report deadline of an open reporting window (absent when none)",
            registry=r,
        )
        self.scheduler_lag = Gauge(
            "thidua_scheduler_lag_seconds",
            "How late the latest scheduled event (phase opened or closed, deadline checked) was emitted",
            ["service"],
            registry=r,
        )
        self.scheduler_last_run = Gauge(
            "thidua_scheduler_last_run_timestamp_seconds",
            "When the service's periodic steps last completed",
            ["service"],
            registry=r,
        )
        self.notifications = Counter(
            "thidua_notifications", "Notifications by channel and state", ["channel", "state"], registry=r
        )
        self.nominations = Counter("thidua_nominations", "Nominations by state", ["state"], registry=r)
        for service in services:
            self.outbox_pending.labels(service)
            self.outbox_oldest_pending_age.labels(service)
            self.outbox_published.labels(service)
            self.relay_publish_failures.labels(service)
            self.scheduler_last_run.labels(service)
        for timeliness in ("on_time", "late"):
            self.reports_received.labels(timeliness)
        for level in Level:
            for gauge in (self.completeness_ratio, self.expected_reports, self.received_reports):
                gauge.labels(level.value)
        for channel in Channel:
            for state in NOTIFICATION_STATES:
                self.notifications.labels(channel.value, state)
        for state in NOMINATION_STATES:
            self.nominations.labels(state)

    def init_consumer(self, consumer: str, streams: list[str]) -> None:
        """Create a consumer's labelled series at start-up, so they read 0 rather than nothing."""
        self.inbox_duplicates.labels(consumer)
        self.consumer_retries.labels(consumer)
        for stream in streams:
            for reason in DEAD_LETTER_REASONS:
                self.dead_letters.labels(consumer, stream, reason)
