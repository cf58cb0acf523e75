"""The one failure policy: what kind of failure an exception is, and what is done about it.

Services classify, they do not decide. A handler lets QuickBooks', the CRM's, connector-auth's,
MongoDB's and the network's own exceptions through untouched, or raises `Failed` with a kind
when it finds the failure itself (a business rule, a record that is gone). The consumer asks
`decide` what to do, from the failure's kind and from who is waiting for the outcome:

- `Origin.PERSON`: somebody started the work and waits for an answer (a wizard request, a
  request to add an existing invoice). Whatever cannot succeed is told to them as a rejection.
- `Origin.SYSTEM`: nobody waits (a webhook, a CDC change, a rule, a periodic pass). What cannot
  succeed is dead-lettered for an operator, or settled with a logged reason when nothing is
  wrong with the event and nothing could be done (the company was disconnected, say).

The table (`POLICY`; the README's "Failure policy" states it, and a test keeps both the same):

| failure            | a person waits                     | nobody waits                       |
|--------------------|------------------------------------|------------------------------------|
| transient          | retry, then dead-letter and tell   | retry, then dead-letter            |
| rate_limited       | retry, then dead-letter and tell   | retry, then dead-letter            |
| conflict           | retry, then dead-letter and tell   | retry, then dead-letter            |
| authorisation_lost | reject                             | pause the tenant                   |
| not_connected      | reject                             | settle                             |
| target_gone        | reject                             | settle                             |
| invalid_input      | reject                             | dead-letter                        |
| misconfigured      | dead-letter and tell               | dead-letter                        |
| unexpected         | retry, then dead-letter and tell   | retry, then dead-letter            |

"Pause the tenant" settles the event without effect and counts it
(`dealbooks_tenant_paused_total`): the company's grant is gone, so nothing for it can succeed
until a person reconnects it, and every further event of it is refused by connector-auth before
any QuickBooks call. Nothing is lost: the reconciliation passes (status-tracker's, and the sync
services' CDC) resume from their watermark for the company once it is connected again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from dealbooks_crm import (
    CrmAuthError,
    CrmError,
    CrmNotFound,
    CrmRateLimited,
    CrmUnavailable,
)
from dealbooks_http import AccountUnavailable, PortalNotInstalled
from dealbooks_qbo import (
    AuthError,
    AuthExpired,
    NotFound,
    QboError,
    ServerError,
    StaleObject,
    Throttled,
)
from pydantic import ValidationError as ModelValidationError
from pymongo.errors import ConnectionFailure, OperationFailure, WTimeoutError


class Failure(StrEnum):
    """What kind of failure an exception is."""

    # A passing outage: a timeout, a 5xx, a broker, database or service not answering.
    TRANSIENT = "transient"
    # A rate limit the client's own waits did not outlast (QuickBooks' or the CRM's 429).
    RATE_LIMITED = "rate_limited"
    # Somebody changed the record first (a stale SyncToken, a lost conditional update):
    # reading it again and retrying helps.
    CONFLICT = "conflict"
    # The company's or portal's grant was revoked or expired for good: a person must reconnect.
    AUTHORISATION_LOST = "authorisation_lost"
    # There is no connection at all: the company is disconnected, the app is not installed.
    NOT_CONNECTED = "not_connected"
    # The record the work is about no longer exists (deleted deal, voided-and-purged invoice).
    TARGET_GONE = "target_gone"
    # The event, or what it asks for, is refused and always will be: a business rule, a
    # validation fault, a 4xx that retrying cannot change.
    INVALID_INPUT = "invalid_input"
    # dealbooks itself is set up wrong for this tenant (no CRM token configured for a portal):
    # an operator must fix the configuration, then replay the dead letter.
    MISCONFIGURED = "misconfigured"
    # Anything else: a defect until shown otherwise. Retried, then dead-lettered.
    UNEXPECTED = "unexpected"


class Origin(StrEnum):
    """Who waits for the outcome of the work."""

    PERSON = "person"
    SYSTEM = "system"


class Action(StrEnum):
    """What is done about a failure."""

    RETRY = "retry"
    PAUSE_TENANT = "pause_tenant"
    DEAD_LETTER = "dead_letter"
    REJECT = "reject"
    SETTLE = "settle"


@dataclass(frozen=True)
class Rule:
    """What happens to one kind of failure: `action` at once, and when it is RETRY, `then`
    once the attempts run out. `tell` says the person waiting is told (a rejection) too."""

    action: Action
    then: Action | None = None
    tell: bool = False


_RETRY_THEN_DEAD_LETTER = Rule(Action.RETRY, Action.DEAD_LETTER)
_RETRY_THEN_TELL = Rule(Action.RETRY, Action.DEAD_LETTER, tell=True)
_REJECT = Rule(Action.REJECT, tell=True)

POLICY: dict[Origin, dict[Failure, Rule]] = {
    Origin.PERSON: {
        Failure.TRANSIENT: _RETRY_THEN_TELL,
        Failure.RATE_LIMITED: _RETRY_THEN_TELL,
        Failure.CONFLICT: _RETRY_THEN_TELL,
        Failure.AUTHORISATION_LOST: _REJECT,
        Failure.NOT_CONNECTED: _REJECT,
        Failure.TARGET_GONE: _REJECT,
        Failure.INVALID_INPUT: _REJECT,
        Failure.MISCONFIGURED: Rule(Action.DEAD_LETTER, tell=True),
        Failure.UNEXPECTED: _RETRY_THEN_TELL,
    },
    Origin.SYSTEM: {
        Failure.TRANSIENT: _RETRY_THEN_DEAD_LETTER,
        Failure.RATE_LIMITED: _RETRY_THEN_DEAD_LETTER,
        Failure.CONFLICT: _RETRY_THEN_DEAD_LETTER,
        Failure.AUTHORISATION_LOST: Rule(Action.PAUSE_TENANT),
        Failure.NOT_CONNECTED: Rule(Action.SETTLE),
        Failure.TARGET_GONE: Rule(Action.SETTLE),
        Failure.INVALID_INPUT: Rule(Action.DEAD_LETTER),
        Failure.MISCONFIGURED: Rule(Action.DEAD_LETTER),
        Failure.UNEXPECTED: _RETRY_THEN_DEAD_LETTER,
    },
}


class Failed(Exception):
    """A failure a handler found itself, with its kind. `reason` is written for a person (it
    goes to the log, the dead letter or the rejection); `detail` is the service's own account
    of it (say, the rejection it wants the person to read)."""

    failure: Failure = Failure.UNEXPECTED

    def __init__(self, reason: str, *, failure: Failure | None = None, detail: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if failure is not None:
            self.failure = failure
        self.detail = detail


class TransientError(Failed):
    """A passing failure: retried with backoff."""

    failure = Failure.TRANSIENT


class ConflictError(Failed):
    """Somebody changed the record first; retried from a fresh read."""

    failure = Failure.CONFLICT


class PermanentError(Failed):
    """Retrying cannot help (validation, a business rule): rejected to a person waiting,
    dead-lettered otherwise."""

    failure = Failure.INVALID_INPUT


class TargetGone(Failed):
    """The record the work is about no longer exists."""

    failure = Failure.TARGET_GONE


class NotConnected(Failed):
    """The tenant has no connection (company disconnected, app not installed)."""

    failure = Failure.NOT_CONNECTED


def classify(exc: BaseException) -> Failure:
    """The kind of failure `exc` is: the one place the project sorts its exceptions."""
    if isinstance(exc, Failed):
        return exc.failure
    if isinstance(exc, QboError):
        return _qbo(exc)
    if isinstance(exc, CrmError):
        return _crm(exc)
    if isinstance(exc, AccountUnavailable):
        return Failure.AUTHORISATION_LOST if exc.reauth_required else Failure.NOT_CONNECTED
    if isinstance(exc, PortalNotInstalled):
        return Failure.NOT_CONNECTED
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | httpx.TransportError):
        return Failure.TRANSIENT
    if isinstance(exc, ConnectionFailure | WTimeoutError):
        return Failure.TRANSIENT
    if isinstance(exc, OperationFailure) and exc.has_error_label("RetryableWriteError"):
        return Failure.TRANSIENT
    if isinstance(exc, ModelValidationError):
        return Failure.INVALID_INPUT
    if type(exc).__module__.startswith(("aiokafka", "kafka")):
        return Failure.TRANSIENT
    return Failure.UNEXPECTED


# QuickBooks errors by kind, the first that matches wins; any other is invalid input.
_QBO_FAILURES: tuple[tuple[type[QboError], Failure], ...] = (
    (Throttled, Failure.RATE_LIMITED),
    (ServerError, Failure.TRANSIENT),
    (StaleObject, Failure.CONFLICT),
    # The client refreshes an expired token itself; one that still comes out was
    # refreshed by somebody else meanwhile. The next attempt gets the new one.
    (AuthExpired, Failure.TRANSIENT),
    (AuthError, Failure.AUTHORISATION_LOST),
    (NotFound, Failure.TARGET_GONE),
)


def _qbo(exc: QboError) -> Failure:
    return next((f for kind, f in _QBO_FAILURES if isinstance(exc, kind)), Failure.INVALID_INPUT)


def _crm(exc: CrmError) -> Failure:
    if isinstance(exc, CrmRateLimited):
        # A daily limit lasts until midnight: retrying within minutes cannot outlast it.
        return Failure.INVALID_INPUT if exc.policy_name == "DAILY" else Failure.RATE_LIMITED
    if isinstance(exc, CrmUnavailable):
        return Failure.TRANSIENT
    if isinstance(exc, CrmAuthError):
        return Failure.TRANSIENT if exc.expired else Failure.AUTHORISATION_LOST
    if isinstance(exc, CrmNotFound):
        return Failure.TARGET_GONE
    if exc.status is not None and exc.status >= 500:
        return Failure.TRANSIENT
    return Failure.INVALID_INPUT


@dataclass(frozen=True)
class Decision:
    """What to do about one failure: its kind and the policy's rule for it."""

    failure: Failure
    rule: Rule
    reason: str

    @property
    def action(self) -> Action:
        return self.rule.action

    def final(self, attempt: int, attempts: int) -> Action:
        """What happens at this attempt: RETRY while attempts remain, else the final action."""
        if self.rule.action is Action.RETRY:
            return Action.RETRY if attempt < attempts else (self.rule.then or Action.DEAD_LETTER)
        return self.rule.action


def decide(exc: BaseException, origin: Origin) -> Decision:
    """The policy's decision for `exc` in work of `origin`."""
    failure = classify(exc)
    reason = exc.reason if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
    return Decision(failure, POLICY[origin][failure], reason)


def retried(exc: BaseException, origin: Origin = Origin.SYSTEM) -> bool:
    """Whether the policy retries `exc` (for code that must let such failures through and
    record every other one itself, like the sync engine's per-record outcomes)."""
    return decide(exc, origin).action is Action.RETRY


def retry_after(exc: BaseException) -> float | None:
    """The wait a rate-limited answer asked for, when the exception carries it."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


# ---- the same policy for a person calling an API ------------------------------------------

# What an API answers when a call it makes on the caller's behalf fails, by kind of failure.
# UNEXPECTED is not answered here: it stays a 500 (and a logged traceback).
HTTP_STATUS: dict[Failure, int] = {
    Failure.TRANSIENT: 503,
    Failure.RATE_LIMITED: 503,
    Failure.CONFLICT: 409,
    Failure.AUTHORISATION_LOST: 409,
    Failure.NOT_CONNECTED: 409,
    Failure.TARGET_GONE: 404,
    Failure.INVALID_INPUT: 422,
}
_RETRY_AFTER_SECONDS = {Failure.TRANSIENT: 5.0, Failure.RATE_LIMITED: 10.0}
_SAID = {
    Failure.TRANSIENT: "QuickBooks or the CRM did not answer in time; try again shortly.",
    Failure.RATE_LIMITED: "QuickBooks or the CRM asked dealbooks to slow down; try again shortly.",
    Failure.CONFLICT: "The record changed meanwhile; reload it and try again.",
    Failure.AUTHORISATION_LOST: "The connection was revoked; reconnect it and try again.",
    Failure.NOT_CONNECTED: "This company or portal is not connected.",
}

# The exception types an API answers through `failure_response` (everything `classify` sorts).
ANSWERED: tuple[type[BaseException], ...] = (
    Failed,
    QboError,
    CrmError,
    AccountUnavailable,
    PortalNotInstalled,
    httpx.TransportError,
    TimeoutError,
    ConnectionFailure,
)


def failure_answer(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """Status, JSON body and headers for `exc`, or None when it is unexpected (a 500)."""
    failure = classify(exc)
    status = HTTP_STATUS.get(failure)
    if status is None:
        return None
    message = exc.reason if isinstance(exc, Failed) else _SAID.get(failure, str(exc))
    headers: dict[str, str] = {}
    if failure in _RETRY_AFTER_SECONDS:
        wait = retry_after(exc) or _RETRY_AFTER_SECONDS[failure]
        headers["Retry-After"] = str(max(1, round(wait)))
    return status, {"error": failure.value, "message": message}, headers
