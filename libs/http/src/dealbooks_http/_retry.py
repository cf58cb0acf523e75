from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import stamina

from dealbooks_http._metrics import count_retry

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class RetryableHTTPError(Exception):
    """A transient HTTP failure (429, 5xx); `retry_after` is the server's hint in seconds."""

    def __init__(self, response: httpx.Response, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {response.status_code} from {response.request.url.host}")
        self.response = response
        self.retry_after = retry_after


def retry_after_seconds(response: httpx.Response, *, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delta-seconds or HTTP-date) into seconds, or None."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient failures; honours Retry-After.

    Retries `RetryableHTTPError` and transport errors (timeouts, resets). Everything
    else is permanent and propagates at once.
    """

    attempts: int = 6
    timeout: float = 60.0
    wait_initial: float = 0.2
    wait_max: float = 10.0
    wait_jitter: float = 0.5

    def _backoff(self, exc: Exception) -> bool | float:
        if isinstance(exc, RetryableHTTPError):
            if exc.retry_after is not None:
                return min(exc.retry_after, self.wait_max) + 0.05
            return True
        return isinstance(exc, httpx.TransportError)

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` until it succeeds, fails permanently, or the budget is spent; each
        attempt made again is counted by the host that failed the one before."""
        failed: BaseException | None = None
        async for retry in stamina.retry_context(
            on=self._backoff,
            attempts=self.attempts,
            timeout=self.timeout,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            wait_jitter=self.wait_jitter,
        ):
            if failed is not None:
                count_retry(_host_of(failed))
            with retry:
                try:
                    return await attempt()
                except Exception as exc:
                    failed = exc
                    raise
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover


def _host_of(exc: BaseException) -> str:
    """The host a retried failure came from (a 429/5xx answer or a transport error)."""
    if isinstance(exc, RetryableHTTPError):
        return exc.response.request.url.host
    if isinstance(exc, httpx.TransportError):
        try:
            return exc.request.url.host
        except RuntimeError:  # an error raised without its request
            return "unknown"
    return "unknown"
