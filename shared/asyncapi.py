"""The AsyncAPI document of thidua's events, generated from the code: the streams, every event's
payload and headers, and which service sends and receives what."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.consumer import EventHandlers
from shared.events import EVENT_TYPES, SPEC_VERSION
from shared.service import ServiceDefinition
from shared.topics import DLQ_PARTITIONS, STREAMS, dlq_name, topic_name

CLOUDEVENT_HEADERS = {
    "ce_specversion": f"CloudEvents version, always {SPEC_VERSION}",
    "ce_id": "the event's id (the inbox deduplicates by it)",
    "ce_type": "the event type, e.g. PlanIssued",
    "ce_source": "the producing service, e.g. /thidua/plans",
    "ce_time": "when the event happened (ISO 8601)",
    "ce_subject": "the aggregate's id, also the record key",
    "ce_schemaversion": "the payload's schema version",
    "ce_unit": "the producing unit (đơn vị phát sinh)",
}
OPTIONAL_HEADERS = {
    "ce_correlationid": "the campaign's root plan",
    "ce_causationid": "the id of the event that caused this one",
    "content-type": "application/json",
}
DEAD_LETTER_HEADERS = {
    "dlq_reason": "why the record was refused: missing_attribute, unknown_type, unknown_schema_version, "
    "invalid_payload, rule_violation, handler_error",
    "dlq_detail": "what exactly was wrong",
    "dlq_consumer": "the consumer that refused it",
    "dlq_origin": "topic/partition/offset it was read from",
    "dlq_at": "when it was refused",
}


def _headers(required: Mapping[str, str], optional: Mapping[str, str]) -> dict[str, Any]:
    every = {**required, **optional}
    properties = {name: {"type": "string", "description": about} for name, about in every.items()}
    return {"type": "object", "properties": properties, "required": sorted(required)}


def asyncapi_document(
    definitions: list[ServiceDefinition], handlers: Mapping[str, EventHandlers], prefix: str, version: str
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the given services (their handlers say what each receives)."""
    types = sorted(EVENT_TYPES.values(), key=lambda cls: (cls.stream, cls.type_name()))
    _, top = models_json_schema(
        [(cls, "validation") for cls in types], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["CloudEventHeaders"] = _headers(CLOUDEVENT_HEADERS, OPTIONAL_HEADERS)
    schemas["DeadLetterHeaders"] = _headers({**CLOUDEVENT_HEADERS, **DEAD_LETTER_HEADERS}, OPTIONAL_HEADERS)

    messages: dict[str, Any] = {}
    for cls in types:
        messages[cls.type_name()] = {
            "name": cls.type_name(),
            "summary": inspect.getdoc(cls) or cls.type_name(),
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": f"the {cls.key}"}}},
        }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "summary": "A record a consumer could never apply: the original key, value and headers, and why.",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"description": "the original record's value, unchanged"},
    }

    channels: dict[str, Any] = {}
    for stream in STREAMS:
        address = topic_name(prefix, stream.name)
        channels[stream.name] = {
            "address": address,
            "description": stream.about,
            "messages": {
                cls.type_name(): {"$ref": f"#/components/messages/{cls.type_name()}"}
                for cls in types
                if cls.stream == stream.name
            },
            "bindings": {"kafka": {"topic": address, "partitions": stream.partitions, "replicas": 1}},
        }
        channels[f"{stream.name}.dlq"] = {
            "address": dlq_name(address),
            "description": f"records from {address} that a consumer refused",
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": {"kafka": {"topic": dlq_name(address), "partitions": DLQ_PARTITIONS, "replicas": 1}},
        }

    operations: dict[str, Any] = {}
    for definition in definitions:
        for cls in sorted(definition.publishes, key=lambda c: c.type_name()):
            operations[f"{definition.name}.send.{cls.type_name()}"] = {
                "action": "send",
                "summary": f"{definition.name} publishes {cls.type_name()} (through its outbox)",
                "channel": {"$ref": f"#/channels/{cls.stream}"},
                "messages": [{"$ref": f"#/channels/{cls.stream}/messages/{cls.type_name()}"}],
            }
        received = {**handlers[definition.name].handlers, **handlers[definition.name].batch_handlers}
        group = f"{prefix}.{definition.name}"
        for consumed in sorted({EVENT_TYPES[name].stream for name in received}):
            names = sorted(name for name in received if EVENT_TYPES[name].stream == consumed)
            operations[f"{definition.name}.receive.{consumed}"] = {
                "action": "receive",
                "summary": f"{definition.name} applies {', '.join(names)}; other records go to the DLQ",
                "channel": {"$ref": f"#/channels/{consumed}"},
                "messages": [{"$ref": f"#/channels/{consumed}/messages/{name}"} for name in names],
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [group]}}},
            }
            operations[f"{definition.name}.deadletter.{consumed}"] = {
                "action": "send",
                "summary": f"{definition.name} sends what it cannot apply from {consumed} to its DLQ",
                "channel": {"$ref": f"#/channels/{consumed}.dlq"},
                "messages": [{"$ref": f"#/channels/{consumed}.dlq/messages/DeadLetter"}],
            }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "thidua events",
            "version": version,
            "description": "Events of the emulation-campaign platform: plans cascade down the union "
            "federation, reports and nominations flow up. CloudEvents in Kafka headers (binary mode).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {"host": "localhost:9092", "protocol": "kafka", "description": "KAFKA_BOOTSTRAP_SERVERS"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
