"""product-sync's HTTP routes: the item backfill (see `dealbooks_sync.api`)."""

from __future__ import annotations

from dealbooks_sync.api import backfill_api

__all__ = ["backfill_api"]
