"""How every thidua client reaches Kafka: the bootstrap servers, and TLS / SASL when the cluster asks
for them (a federation-wide cluster with ACLs gives each stack or level its own principal)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.settings import Settings

SASL_SECURITIES = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ssl_cafile: Path | None = None

    @classmethod
    def of(cls, settings: Settings, bootstrap_servers: str) -> KafkaConnection:
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        return cls(
            bootstrap_servers=bootstrap_servers,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password,
            ssl_cafile=settings.kafka_ssl_cafile,
        )

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_ssl:
            return None
        return create_ssl_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_ssl:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options

    def faststream_security(self) -> BaseSecurity | None:
        """The same, for a FastStream broker."""
        if self.uses_sasl:
            security = SASL_SECURITIES[self.sasl_mechanism or "PLAIN"]
            return security(  # type: ignore[abstract]
                username=self.username or "",
                password=self.password or "",
                ssl_context=self.ssl_context(),
                use_ssl=self.uses_ssl,
            )
        if self.uses_ssl:
            return BaseSecurity(ssl_context=self.ssl_context(), use_ssl=True)
        return None
