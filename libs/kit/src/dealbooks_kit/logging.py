"""structlog JSON logging with per-message context and secret redaction.

Redaction runs on every record, ours and third-party (stdlib logging is routed through
the same processors), so a token cannot reach a log line by any path.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"token|secret|password|passwd|authorization|api[-_]?key|cookie|signature|credential",
    re.IGNORECASE,
)
_SECRET_VALUE_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (
        re.compile(
            r"(?i)\b(access_token|refresh_token|id_token|client_secret|code|password)=[^&\s\"']+"
        ),
        r"\1=" + REDACTED,
    ),
    (
        re.compile(
            r"(?i)([\"'](?:access_token|refresh_token|id_token|client_secret|password)[\"']\s*:\s*[\"'])"
            r"[^\"']*"
        ),
        r"\1" + REDACTED,
    ),
)
# Every value-shape pattern above needs one of these words: a string without any is left as is
# (one search instead of every substitution, on every string of every record).
_SECRET_VALUE_HINT = re.compile(r"(?i)bearer|basic|token|secret|code|password")


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def redact(value: Any, key: str | None = None) -> Any:
    """Return `value` with secrets replaced, by key name and by recognisable value shape."""
    if key is not None and _secret_key(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        if not _SECRET_VALUE_HINT.search(value):
            return value
        for pattern, replacement in _SECRET_VALUE_PATTERNS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = redact(event_dict[key], key if key != "event" else None)
    return event_dict


def configure_logging(service: str, level: str = "INFO", *, json: bool = True) -> None:
    """Configure structlog and stdlib logging for a service process (idempotent)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        # Below the level, a line is dropped before any processor runs: a debug line per
        # published event would otherwise cost a busy service a tenth of a millisecond each.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(_drop_auto_create_notice)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Chatty libraries stay at WARNING unless asked otherwise.
    for noisy in ("aiokafka", "httpx", "httpcore", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def _drop_auto_create_notice(record: logging.LogRecord) -> bool:
    # aiokafka logs an ERROR while the broker auto-creates a topic on its first publish; it is
    # expected and would drown real errors.
    return not (
        record.name == "aiokafka.cluster" and "not found in cluster metadata" in record.getMessage()
    )


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; bound context (event id, correlation id, tenant) is merged in."""
    return structlog.stdlib.get_logger(name)
