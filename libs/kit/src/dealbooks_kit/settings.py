"""Settings from the environment, one prefix per service.

Infrastructure addresses (`KAFKA_BOOTSTRAP`, `MONGODB_URI`, `TOPIC_PREFIX`), how to reach them
securely (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`, `MONGODB_TLS_*`) and where
traces go (`OTEL_EXPORTER_OTLP_ENDPOINT`) are shared by every service and read without a
prefix, so one `.local/endpoints.env` (or one Secret) serves them all.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from dealbooks_kit.auth import AuthSettings


class KitSettings(AuthSettings):
    """Base settings every service extends (with its own `env_prefix`); the credentials its
    routes check callers against come unprefixed from `AuthSettings`."""

    # An invalid value is named in the error, never shown: it may be a password.
    model_config = SettingsConfigDict(
        env_prefix="DEALBOOKS_", extra="ignore", hide_input_in_errors=True
    )

    service_name: str = "dealbooks"
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP")
    )
    # The idempotent producer needs a real Kafka broker; the Tansu fallback cannot serve it.
    kafka_idempotence: bool = Field(
        default=True, validation_alias=AliasChoices("KAFKA_IDEMPOTENCE")
    )
    # Create every registered topic (and its DLQ) at start-up, unless an operator provisions them.
    kafka_create_topics: bool = Field(
        default=True, validation_alias=AliasChoices("KAFKA_CREATE_TOPICS")
    )
    kafka_partitions: int = Field(default=3, validation_alias=AliasChoices("KAFKA_PARTITIONS"))
    kafka_replication_factor: int = Field(
        default=1, validation_alias=AliasChoices("KAFKA_REPLICATION_FACTOR")
    )
    # How the Kafka clients (the broker, topic creation, the operator CLI) authenticate and
    # encrypt: SASL/SCRAM over TLS in production (deploy/k8s), PLAINTEXT locally.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", validation_alias=AliasChoices("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_SASL_USERNAME")
    )
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("KAFKA_SASL_PASSWORD")
    )
    # PEM files: the CA that signed the brokers' certificates (else the system's), and a client
    # certificate and key for brokers that ask for one (mutual TLS).
    kafka_ssl_cafile: str = Field(default="", validation_alias=AliasChoices("KAFKA_SSL_CAFILE"))
    kafka_ssl_certfile: str = Field(default="", validation_alias=AliasChoices("KAFKA_SSL_CERTFILE"))
    kafka_ssl_keyfile: str = Field(default="", validation_alias=AliasChoices("KAFKA_SSL_KEYFILE"))
    # Credentials and TLS options may be in the URI (`mongodb://user:pass@host/?tls=true`): so
    # it is left out of the settings' repr.
    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27017/",
        validation_alias=AliasChoices("MONGODB_URI"),
        repr=False,
    )
    # PEM files: the CA of the MongoDB servers' certificates, and a client certificate with its
    # key (X.509 authentication or mutual TLS); either turns TLS on.
    mongodb_tls_cafile: str = Field(default="", validation_alias=AliasChoices("MONGODB_TLS_CAFILE"))
    mongodb_tls_certfile: str = Field(
        default="", validation_alias=AliasChoices("MONGODB_TLS_CERTFILE")
    )
    # Where spans go (OTLP over HTTP, e.g. `http://otel-collector:4318`); tracing is off when
    # empty (a no-op tracer: nothing is recorded or sent). See `dealbooks_kit.tracing`.
    otel_exporter_otlp_endpoint: str = Field(
        default="", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    mongodb_database: str = ""
    # Prepended to every topic name; tests use it to isolate themselves on a shared broker.
    topic_prefix: str = Field(default="", validation_alias=AliasChoices("TOPIC_PREFIX"))
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    handler_attempts: int = 5
    handler_wait_initial: float = 0.2
    handler_wait_max: float = 5.0
    # Records fetched per poll; handlers running at once across ordering lanes; records
    # fetched but not yet settled before fetching pauses.
    consumer_batch_size: int = Field(default=100, ge=1)
    consumer_concurrency: int = Field(default=16, ge=1)
    consumer_max_in_flight: int = Field(default=500, ge=1)
    # On shutdown, how long in-flight handlers may take before they are cancelled (and their
    # records, uncommitted, are delivered again after the restart).
    consumer_drain_seconds: float = Field(default=10.0, ge=0)
    # At most how often a consumer commits its offsets; what settled meanwhile goes in one
    # commit. A crash replays at most this much more, which the dedupe check skips.
    consumer_commit_interval_ms: int = Field(default=200, ge=0)
    # How long Kafka gathers records for a consumer that keeps few of its topic's events
    # (one kind of QuickBooks change) before answering its fetch: a few fetches a second
    # instead of one per record, for up to twice this much more latency on those events
    # (the wait, then the pause after an empty poll).
    consumer_selective_wait_ms: int = Field(default=250, ge=0)
    # How long a consumer remembers an event id it handled (dedupe). Longer than the topics'
    # retention, so any redelivery Kafka can still make is recognised.
    dedupe_retention_days: float = Field(default=14.0, gt=0)
    # How long audit entries are kept (`dealbooks_kit.audit`); a daily pass deletes older ones.
    audit_retention_days: float = Field(default=90.0, gt=0)
    # Period of the pass that publishes outbox entries a failed or crashed relay left behind.
    outbox_relay_seconds: float = Field(default=5.0, gt=0)
    # A leased timer's lease lasts its period, and at least this long (dealbooks_kit.periodic):
    # a crashed holder's job moves to another replica once it expired.
    periodic_lease_min_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> Self:
        """Refuse to start on a Kafka security set-up that cannot work, rather than fail on
        every connection later (or send in the clear what was meant to be encrypted)."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (Kafka's SASL user for this service)"
            )
        tls_files = self.kafka_ssl_cafile or self.kafka_ssl_certfile or self.kafka_ssl_keyfile
        if tls_files and protocol not in {"SSL", "SASL_SSL"}:
            raise ValueError(
                f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                "TLS: set it to SSL or SASL_SSL"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE")
        return self

    @property
    def database_name(self) -> str:
        return self.mongodb_database or self.service_name.replace("-", "_")

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one."""
        return f"{self.topic_prefix}{name}"
