"""Outbound HTTP metrics, labelled by host only (never a tenant, a path or a token).

They live in prometheus-client's default registry, which every service serves at /metrics.
Label children are made once per host (or host and status class) and kept, so a call costs
a dict look-up and an increment.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_CALLS = Counter(
    "dealbooks_http_calls_total",
    "Outbound HTTP calls, by host and status class (2xx, 3xx, 4xx, 5xx, or error: no answer)",
    ["host", "status_class"],
)
HTTP_RATE_LIMITED = Counter(
    "dealbooks_http_rate_limited_total",
    "Outbound HTTP calls answered 429 Too Many Requests, by host",
    ["host"],
)
HTTP_RETRIES = Counter(
    "dealbooks_http_retries_total",
    "Outbound HTTP attempts made again after a transient failure (429, 5xx, timeout), by host",
    ["host"],
)
HTTP_BUDGET_WAIT = Histogram(
    "dealbooks_http_budget_wait_seconds",
    "Time a call waited for a slot of its rate budget (rate and concurrency), by host",
    ["host"],
    buckets=(0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_calls: dict[tuple[str, int], Counter] = {}
_rate_limited: dict[str, Counter] = {}
_retries: dict[str, Counter] = {}
_budget_wait: dict[str, Histogram] = {}


def count_call(host: str, status: int | None) -> None:
    """One call to `host` answered `status` (None: no answer, a transport error)."""
    key = (host, 0 if status is None else status // 100)
    child = _calls.get(key)
    if child is None:
        child = _calls[key] = HTTP_CALLS.labels(host, _CLASSES.get(key[1], "error"))
    child.inc()
    if status == 429:
        limited = _rate_limited.get(host)
        if limited is None:
            limited = _rate_limited[host] = HTTP_RATE_LIMITED.labels(host)
        limited.inc()


def count_retry(host: str) -> None:
    """An attempt against `host` is about to be made again."""
    child = _retries.get(host)
    if child is None:
        child = _retries[host] = HTTP_RETRIES.labels(host)
    child.inc()


def observe_budget_wait(host: str, seconds: float) -> None:
    """A call to `host` waited `seconds` for its rate budget."""
    child = _budget_wait.get(host)
    if child is None:
        child = _budget_wait[host] = HTTP_BUDGET_WAIT.labels(host)
    child.observe(seconds)
