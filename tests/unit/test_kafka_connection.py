"""Kafka connection settings reach every client the same way."""

import ssl

from faststream.security import SASLScram512

from shared.kafka import KafkaConnection
from shared.settings import Settings


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_plaintext_by_default() -> None:
    kafka = KafkaConnection.of(settings(), "k:9092")
    assert kafka.client_options() == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert kafka.faststream_security() is None


def test_sasl_over_tls_gives_aiokafka_and_faststream_the_same_principal() -> None:
    kafka = KafkaConnection.of(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="hn-reporting",
            kafka_sasl_password="s3cret",
        ),
        "kafka.hanoi:9093",
    )
    options = kafka.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "hn-reporting",
        "s3cret",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    security = kafka.faststream_security()
    assert isinstance(security, SASLScram512)
    assert (security.username, security.password, security.use_ssl) == ("hn-reporting", "s3cret", True)


def test_the_password_is_never_shown() -> None:
    configured = settings(kafka_sasl_password="s3cret")
    assert "s3cret" not in repr(configured) and "s3cret" not in str(configured.model_dump())
