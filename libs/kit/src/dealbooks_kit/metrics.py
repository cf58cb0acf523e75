"""Prometheus metrics every consumer and publisher reports (one registry per process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EVENTS_CONSUMED = Counter(
    "dealbooks_events_consumed_total",
    "Events taken from Kafka, by outcome (ok, ignored, duplicate, settled, rejected, "
    "dead_lettered, redelivered)",
    ["service", "topic", "outcome"],
)
TENANT_PAUSED = Counter(
    "dealbooks_tenant_paused_total",
    "Events settled without effect because their tenant's grant is lost (see the failure policy)",
    ["service", "topic", "failure"],
)
EVENTS_FAILED = Counter(
    "dealbooks_handler_failures_total",
    "Handler attempts that raised, by error class",
    ["service", "topic", "error"],
)
EVENTS_DEAD_LETTERED = Counter(
    "dealbooks_events_dead_lettered_total",
    "Events sent to a dead-letter topic, by the topic they came from and the consumer that gave up",
    ["service", "topic", "consumer"],
)
DLQ_DEPTH = Gauge(
    "dealbooks_dlq_depth",
    "Records a dead-letter topic holds, as its writer last saw (sum of its partitions' end "
    "offsets acknowledged to this process; retention not deducted)",
    ["service", "topic"],
)
CONSUMER_LAG = Gauge(
    "dealbooks_consumer_lag",
    "Records of the partitions a consumer holds that it has not settled yet: last known end "
    "offset (highwater) minus the offset it commits next (its lowest unsettled one)",
    ["service", "consumer", "topic"],
)
CONSUMER_IN_FLIGHT = Gauge(
    "dealbooks_consumer_in_flight",
    "Records a consumer fetched and has not settled yet",
    ["service", "consumer", "topic"],
)
CONSUMER_OLDEST_UNSETTLED = Gauge(
    "dealbooks_consumer_oldest_unsettled_seconds",
    "Seconds since the oldest record a consumer has not settled yet was fetched (0: none)",
    ["service", "consumer", "topic"],
)
OUTBOX_PENDING = Gauge(
    "dealbooks_outbox_pending",
    "Outbox entries not yet relayed, as the last relay pass found them",
    ["service", "collection"],
)
OUTBOX_OLDEST = Gauge(
    "dealbooks_outbox_oldest_seconds",
    "Age of the oldest outbox entry the last relay pass found waiting (0: none)",
    ["service", "collection"],
)
EVENTS_PUBLISHED = Counter(
    "dealbooks_events_published_total", "Events acknowledged by Kafka", ["service", "topic"]
)
DB_COMMANDS = Counter(
    "dealbooks_db_commands_total",
    "Commands sent to MongoDB, by command name and collection",
    ["service", "command", "collection"],
)
PERIODIC_FAILURES = Counter(
    "dealbooks_periodic_job_failures_total",
    "Runs of a timer job (outbox relay, overdue clock, reconciliation) that raised",
    ["job"],
)
PERIODIC_PASSES = Counter(
    "dealbooks_periodic_passes_total",
    "Passes of a timer job, by outcome: ran here, or skipped (another replica holds its lease)",
    ["job", "outcome"],
)
PERIODIC_TENANT_FAILURES = Counter(
    "dealbooks_periodic_tenant_failures_total",
    "Tenants (realms, portals) a periodic pass failed for and went on without",
    ["job"],
)
HANDLER_SECONDS = Histogram(
    "dealbooks_handler_seconds",
    "Handler latency including retries",
    ["service", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

_dlq_ends: dict[tuple[str, str, int], int] = {}


def note_dlq_end(service: str, topic: str, partition: int, offset: int) -> None:
    """A dead letter was written at `offset` of `partition`: `dealbooks_dlq_depth` of `topic`
    becomes the sum of the highest end offsets this process saw on its partitions."""
    key = (service, topic, partition)
    _dlq_ends[key] = max(_dlq_ends.get(key, 0), offset + 1)
    depth = sum(end for (s, t, _), end in _dlq_ends.items() if (s, t) == (service, topic))
    DLQ_DEPTH.labels(service, topic).set(depth)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
