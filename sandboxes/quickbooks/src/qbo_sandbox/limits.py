"""QBO's per-realm throttles: 500/min, 10/s, 10 in flight, 40 batch/min; and what was seen."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from qbo_sandbox.config import SandboxConfig


@dataclass
class RealmUsage:
    minute: deque[float] = field(default_factory=deque)
    second: deque[float] = field(default_factory=deque)
    batches: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    max_in_flight: int = 0
    max_per_minute: int = 0
    max_per_second: int = 0
    requests: int = 0
    throttled: int = 0
    injected_throttles: int = 0

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "throttled": self.throttled,
            "injected_throttles": self.injected_throttles,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "max_per_minute": self.max_per_minute,
            "max_per_second": self.max_per_second,
        }


class Limiter:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.usage: dict[str, RealmUsage] = {}

    def for_realm(self, realm_id: str) -> RealmUsage:
        return self.usage.setdefault(realm_id, RealmUsage())

    def admit(self, realm_id: str, weight: int = 1, batch: bool = False) -> bool:
        """Count a request against the realm; False means QBO would answer 429."""
        usage = self.for_realm(realm_id)
        now = time.monotonic()
        for window, span in ((usage.minute, 60.0), (usage.second, 1.0), (usage.batches, 60.0)):
            while window and window[0] <= now - span:
                window.popleft()
        usage.requests += 1
        cfg = self.config
        if cfg.throttling and (
            len(usage.minute) + weight > cfg.requests_per_minute
            or len(usage.second) + 1 > cfg.requests_per_second
            or usage.in_flight + 1 > cfg.concurrent_requests
            or (batch and len(usage.batches) + 1 > cfg.batch_per_minute)
        ):
            usage.throttled += 1
            return False
        usage.minute.extend([now] * weight)
        usage.second.append(now)
        if batch:
            usage.batches.append(now)
        usage.in_flight += 1
        usage.max_in_flight = max(usage.max_in_flight, usage.in_flight)
        usage.max_per_minute = max(usage.max_per_minute, len(usage.minute))
        usage.max_per_second = max(usage.max_per_second, len(usage.second))
        return True

    def release(self, realm_id: str) -> None:
        self.for_realm(realm_id).in_flight -= 1
