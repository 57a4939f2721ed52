"""The event envelope on Kafka: CloudEvents binary mode, and clear rejections of what is not an event."""

from datetime import UTC, date, datetime

import pytest

from shared.errors import EventRejected
from shared.events import (
    EVENT_TYPES,
    Envelope,
    Event,
    Level,
    Phase,
    PlanIssued,
    ReportSubmitted,
    Target,
    from_kafka,
    header_map,
    to_kafka,
)
from shared.topics import STREAMS

NOW = datetime(2023, 6, 3, 2, 0, tzinfo=UTC)


def plan_issued() -> PlanIssued:
    return PlanIssued(
        plan_id="p-1",
        number="19/KH-LĐLĐ",
        issuer_unit_id="hn-lb",
        title="Đợt thi đua cao điểm",
        issued_on=date(2023, 3, 2),
        phases=[
            Phase(
                seq=1,
                label="Đợt 1",
                start=date(2023, 3, 2),
                end=date(2023, 5, 31),
                report_due=date(2023, 6, 2),
            )
        ],
        targets=[Target(unit_id="hn-lb-01", name="CĐCS 01", level=Level.grassroots)],
    )


def record(envelope: Envelope) -> tuple[bytes, dict[str, str]]:
    _key, value, headers = to_kafka(envelope)
    return value, header_map(headers)


def test_an_event_round_trips_with_its_attributes_in_headers() -> None:
    envelope = Envelope.wrap(
        plan_issued(), source="/thidua/plans", unit="hn-lb", time=NOW, correlation_id="c-1"
    )
    key, value, headers = to_kafka(envelope)
    attributes = header_map(headers)
    assert key == b"p-1"
    assert attributes["ce_specversion"] == "1.0"
    assert attributes["ce_type"] == "PlanIssued"
    assert attributes["ce_unit"] == "hn-lb"
    assert attributes["ce_correlationid"] == "c-1"
    assert attributes["content-type"] == "application/json"
    assert "ce_type" not in value.decode()  # binary mode: attributes are not in the payload
    decoded = from_kafka(value, attributes)
    assert decoded == envelope


def test_report_key_is_the_reporting_unit() -> None:
    report = ReportSubmitted(
        report_id="r-1", plan_id="p-1", phase_seq=1, unit_id="hn-lb-01", values={"a": 1}, submitted_at=NOW
    )
    envelope = Envelope.wrap(report, source="/thidua/reporting", unit="hn-lb-01", time=NOW)
    assert to_kafka(envelope)[0] == b"hn-lb-01"


@pytest.mark.parametrize(
    ("change", "reason", "named"),
    [
        ({"ce_type": "PlanBurned"}, "unknown_type", "PlanBurned"),
        ({"ce_schemaversion": "7"}, "unknown_schema_version", "'7'"),
        ({"ce_specversion": "0.3"}, "unsupported_specversion", "0.3"),
        ({"ce_unit": None}, "missing_attribute", "ce_unit"),
    ],
)
def test_records_that_are_not_our_events_are_rejected_with_a_reason(
    change: dict[str, str | None], reason: str, named: str
) -> None:
    value, attributes = record(Envelope.wrap(plan_issued(), source="/thidua/plans", unit="hn-lb", time=NOW))
    for name, new in change.items():
        if new is None:
            attributes.pop(name)
        else:
            attributes[name] = new
    with pytest.raises(EventRejected) as rejected:
        from_kafka(value, attributes)
    assert rejected.value.reason == reason
    assert named in rejected.value.detail


def test_an_invalid_payload_names_the_field() -> None:
    value, attributes = record(Envelope.wrap(plan_issued(), source="/thidua/plans", unit="hn-lb", time=NOW))
    broken = value.replace(b'"issued_on":"2023-03-02"', b'"issued_on":"2023-02-30"')
    with pytest.raises(EventRejected) as rejected:
        from_kafka(broken, attributes)
    assert rejected.value.reason == "invalid_payload"
    assert "issued_on" in rejected.value.detail


def test_garbage_is_rejected_not_raised() -> None:
    _value, attributes = record(Envelope.wrap(plan_issued(), source="/thidua/plans", unit="hn-lb", time=NOW))
    with pytest.raises(EventRejected) as rejected:
        from_kafka(b"\xff\xfe not json", attributes)
    assert rejected.value.reason == "invalid_payload"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES.values(), key=lambda cls: cls.type_name()))
def test_every_event_names_its_stream_and_the_field_holding_its_key(event_type: type[Event]) -> None:
    assert event_type.stream in {stream.name for stream in STREAMS}
    assert event_type.key in event_type.model_fields
