"""contact-sync keeps, in its own database: the contact mappings it received per account
(`mapping_sets`), which contact each customer became (`links`, by realm and customer id),
its backfill runs (`backfills`), the CDC watermark of each account (`cdc_watermarks`) and
its audit trail (`audit`). The collections' code is in `dealbooks_sync` (`mapping_sets`,
`links`, `runs`, `healing`)."""

from __future__ import annotations

from dealbooks_sync.links import Links
from dealbooks_sync.runs import BackfillRuns

INDEXES = (*Links.INDEXES, *BackfillRuns.INDEXES)
"""Beside the natural keys in `_id`: contacts by CRM id, runs by account and by run id."""
