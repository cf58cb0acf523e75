from __future__ import annotations

__all__ = ["NOTE_TO", "TASK_TO", "AssociationTypes", "ObjectTypes"]


class ObjectTypes:
    """Object type names as they appear in paths."""

    CONTACTS = "contacts"
    COMPANIES = "companies"
    DEALS = "deals"
    PRODUCTS = "products"
    LINE_ITEMS = "line_items"
    QUOTES = "quotes"
    INVOICES = "invoices"
    NOTES = "notes"
    TASKS = "tasks"


class AssociationTypes:
    """HUBSPOT_DEFINED association type ids; the direction matters (from -> to)."""

    DEAL_TO_CONTACT = 3
    CONTACT_TO_DEAL = 4
    DEAL_TO_COMPANY = 341
    COMPANY_TO_DEAL = 342
    DEAL_TO_COMPANY_PRIMARY = 5
    COMPANY_TO_DEAL_PRIMARY = 6
    CONTACT_TO_COMPANY = 279
    COMPANY_TO_CONTACT = 280
    CONTACT_TO_COMPANY_PRIMARY = 1
    COMPANY_TO_CONTACT_PRIMARY = 2
    DEAL_TO_LINE_ITEM = 19
    LINE_ITEM_TO_DEAL = 20
    DEAL_TO_QUOTE = 63
    QUOTE_TO_DEAL = 64
    QUOTE_TO_LINE_ITEM = 67
    LINE_ITEM_TO_QUOTE = 68
    QUOTE_TO_CONTACT = 69
    CONTACT_TO_QUOTE = 70
    QUOTE_TO_COMPANY = 71
    COMPANY_TO_QUOTE = 72
    INVOICE_TO_CONTACT = 177
    INVOICE_TO_COMPANY = 179
    INVOICE_TO_DEAL = 175
    INVOICE_TO_LINE_ITEM = 409
    NOTE_TO_DEAL = 214
    DEAL_TO_NOTE = 213
    NOTE_TO_CONTACT = 202
    CONTACT_TO_NOTE = 201
    NOTE_TO_COMPANY = 190
    COMPANY_TO_NOTE = 189
    TASK_TO_DEAL = 216
    DEAL_TO_TASK = 215
    TASK_TO_CONTACT = 204
    CONTACT_TO_TASK = 203
    TASK_TO_COMPANY = 192
    COMPANY_TO_TASK = 191


# A note goes on a record through the HUBSPOT_DEFINED type from notes to the record's type.
NOTE_TO: dict[str, int] = {
    ObjectTypes.DEALS: AssociationTypes.NOTE_TO_DEAL,
    ObjectTypes.CONTACTS: AssociationTypes.NOTE_TO_CONTACT,
    ObjectTypes.COMPANIES: AssociationTypes.NOTE_TO_COMPANY,
}
# A task likewise (see the CRM sandbox's README on these ids).
TASK_TO: dict[str, int] = {
    ObjectTypes.DEALS: AssociationTypes.TASK_TO_DEAL,
    ObjectTypes.CONTACTS: AssociationTypes.TASK_TO_CONTACT,
    ObjectTypes.COMPANIES: AssociationTypes.TASK_TO_COMPANY,
}
# The properties a task is read with.
TASK_PROPERTIES = [
    "hs_task_subject",
    "hs_task_body",
    "hs_task_status",
    "hs_task_priority",
    "hs_task_type",
    "hs_timestamp",
    "hubspot_owner_id",
]
