from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

__all__ = ["PropertyValue", "to_decimal", "to_properties", "to_property_value"]

PropertyValue = str | int | Decimal | bool | date | datetime | None


def to_property_value(value: PropertyValue) -> str:
    """Render a value the way HubSpot stores it: always a string; `""` clears the property.

    Decimal stays exact; dates become `YYYY-MM-DD`; datetimes ISO-8601 UTC with milliseconds.
    Floats are refused so money never passes through binary floating point.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError("float property values are not allowed; use Decimal or str")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        utc = aware.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def to_properties(values: dict[str, PropertyValue]) -> dict[str, str]:
    """Apply `to_property_value` to every value of a properties mapping."""
    return {name: to_property_value(v) for name, v in values.items()}


def to_decimal(value: str | None) -> Decimal | None:
    """Parse a HubSpot number property; empty or missing is None."""
    if value is None or value == "":
        return None
    return Decimal(value)
