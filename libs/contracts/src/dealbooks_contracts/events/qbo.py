"""Events that carry QuickBooks Online change notifications into the system."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints

from .._types import EventPayload, NonEmptyStr

__all__ = ["QboEntity", "QboEntityChanged", "QboOperation"]


class QboOperation(StrEnum):
    """The operation a QBO webhook reports, spelled as QBO spells it."""

    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"
    MERGE = "Merge"
    VOID = "Void"
    EMAILED = "Emailed"


class QboEntity(StrEnum):
    """QBO entity names dealbooks acts on.

    The ``entity`` field stays a plain string because QBO may notify about entities dealbooks
    ignores; compare it with these members.
    """

    CUSTOMER = "Customer"
    ITEM = "Item"
    INVOICE = "Invoice"
    PAYMENT = "Payment"
    PREFERENCES = "Preferences"
    COMPANY_INFO = "CompanyInfo"
    TERM = "Term"
    TAX_CODE = "TaxCode"
    ESTIMATE = "Estimate"
    CREDIT_MEMO = "CreditMemo"


QboEntityName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]+$")]


class QboEntityChanged(EventPayload):
    """One entity changed in one QuickBooks company (one event per entity of a webhook).

    It carries ids only; consumers fetch the entity when they need its content.
    """

    realm_id: NonEmptyStr
    entity: QboEntityName = Field(description="QBO entity name, e.g. 'Invoice' (see QboEntity).")
    entity_id: NonEmptyStr
    operation: QboOperation
    last_updated: AwareDatetime
    deleted_id: str | None = Field(
        default=None, description="On Merge: the id of the entity merged into entity_id."
    )
