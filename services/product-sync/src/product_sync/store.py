"""product-sync's MongoDB database. Collections: `links` (QBO item -> CRM product),
`mapping_sets` (product mappings per account), `backfills`, `cdc_watermarks` and `audit`;
each one's code lives with the part of `dealbooks_sync` that uses it."""

from __future__ import annotations

from dealbooks_sync.links import Links
from dealbooks_sync.runs import BackfillRuns

INDEXES = (*Links.INDEXES, *BackfillRuns.INDEXES)
"""Indexes declared at start; an `_id` holds each natural key."""
