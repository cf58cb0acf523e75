"""Building blocks shared by every payload: base models, money, codes, addresses."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

__all__ = [
    "Address",
    "ContractModel",
    "CountryCode",
    "CurrencyCode",
    "DecimalString",
    "EventPayload",
    "Money",
    "NonEmptyStr",
]


class ContractModel(BaseModel):
    """Base of every model that travels on Kafka.

    Frozen, because an event is a fact. Unknown fields are ignored, so a consumer built against
    an older minor shape keeps reading events that gained additive optional fields.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")


class EventPayload(ContractModel):
    """Base of the ``data`` of an envelope; each subclass is registered to exactly one topic."""


def _reject_float(value: object) -> object:
    # A float has already lost precision; the only safe inputs are Decimal, int and strings.
    if isinstance(value, float):
        raise ValueError("use a Decimal or a decimal string, never a float")
    return value


def _decimal_to_wire(value: Decimal) -> str:
    # Fixed-point notation: str(Decimal("1E+2")) would put "1E+2" on the wire.
    return format(value, "f")


DecimalString = Annotated[
    Decimal,
    BeforeValidator(_reject_float),
    Field(allow_inf_nan=False),
    PlainSerializer(_decimal_to_wire, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}),
]
"""A Decimal that is a JSON string on the wire (``"1250.00"``) and refuses float input."""

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""ISO 4217 alphabetic currency code, e.g. ``USD``, ``GBP``."""

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2 country code, e.g. ``US``, ``GB``."""

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
"""A string that must not be empty (ids, names)."""


class Money(ContractModel):
    """An amount in one currency; the amount is a decimal string on the wire."""

    amount: DecimalString
    currency: CurrencyCode


class Address(ContractModel):
    """A postal address as QuickBooks and the CRM both hold it."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = Field(default=None, description="State, county or province.")
    postal_code: str | None = None
    country: str | None = None
