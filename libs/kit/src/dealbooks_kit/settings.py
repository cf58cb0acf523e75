"""Settings from the environment, one prefix per service.

Infrastructure addresses (`KAFKA_BOOTSTRAP`, `MONGODB_URI`, `TOPIC_PREFIX`) are shared by
every service and read without a prefix, so one `.local/endpoints.env` serves them all.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from dealbooks_kit.auth import AuthSettings


class KitSettings(AuthSettings):
    """Base settings every service extends (with its own `env_prefix`); the credentials its
    routes check callers against come unprefixed from `AuthSettings`."""

    model_config = SettingsConfigDict(env_prefix="DEALBOOKS_", extra="ignore")

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
    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27017/", validation_alias=AliasChoices("MONGODB_URI")
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
    # fetched but not yet settled before polling pauses.
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

    @property
    def database_name(self) -> str:
        return self.mongodb_database or self.service_name.replace("-", "_")

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one."""
        return f"{self.topic_prefix}{name}"
