"""contact-sync's HTTP routes: the customer backfill (see `dealbooks_sync.api`)."""

from __future__ import annotations

from dealbooks_sync.api import backfill_api

__all__ = ["backfill_api"]
