"""product-sync's MongoDB: mapping sets received, item <-> product links, backfill runs."""

from __future__ import annotations

from dealbooks_sync.engine import INDEXES, Links, MappingSets

__all__ = ["INDEXES", "Links", "MappingSets"]
