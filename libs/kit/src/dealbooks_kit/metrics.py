"""Prometheus metrics every consumer and publisher reports (one registry per process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

EVENTS_CONSUMED = Counter(
    "dealbooks_events_consumed_total",
    "Events taken from Kafka, by outcome (ok, ignored, duplicate, dead_lettered, redelivered)",
    ["service", "topic", "outcome"],
)
EVENTS_FAILED = Counter(
    "dealbooks_handler_failures_total",
    "Handler attempts that raised, by error class",
    ["service", "topic", "error"],
)
EVENTS_DEAD_LETTERED = Counter(
    "dealbooks_events_dead_lettered_total",
    "Events sent to a dead-letter topic",
    ["service", "topic"],
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


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
