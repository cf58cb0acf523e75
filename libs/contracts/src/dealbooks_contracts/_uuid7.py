"""UUID version 7 (RFC 9562): a 48-bit Unix millisecond timestamp followed by random bits.

Python 3.11 has no ``uuid.uuid7``; this generator is short enough to keep in-house rather than
add a dependency to a package that otherwise needs only pydantic.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime
from uuid import UUID

__all__ = ["uuid7", "uuid7_time"]

_TAIL_BITS = 74  # 12 bits of rand_a + 62 bits of rand_b
_TAIL_LIMIT = 1 << _TAIL_BITS
_RAND_B_MASK = (1 << 62) - 1

_lock = threading.Lock()
_last_ms = 0
_last_tail = 0


def _next_parts() -> tuple[int, int]:
    """Return (unix_ms, tail) strictly greater than the previous pair in this process.

    Within one millisecond (or when the wall clock steps back) the random tail is increased by a
    random amount (RFC 9562 section 6.2, method 2), so ids generated here sort in creation order.
    """
    global _last_ms, _last_tail
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            ms, tail = now_ms, secrets.randbits(_TAIL_BITS - 1)
        else:
            ms, tail = _last_ms, _last_tail + secrets.randbits(32) + 1
            if tail >= _TAIL_LIMIT:
                ms, tail = _last_ms + 1, secrets.randbits(_TAIL_BITS - 1)
        _last_ms, _last_tail = ms, tail
        return ms, tail


def uuid7() -> UUID:
    """Generate a new UUIDv7; ids from one process are strictly increasing."""
    ms, tail = _next_parts()
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (tail >> 62) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= tail & _RAND_B_MASK  # rand_b, 62 bits
    return UUID(int=value)


def uuid7_time(value: UUID) -> datetime:
    """The creation time (millisecond precision, UTC) embedded in a UUIDv7."""
    if value.version != 7:
        raise ValueError(f"not a UUIDv7: {value}")
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC)
