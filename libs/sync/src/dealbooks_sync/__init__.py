"""QBO -> CRM record sync shared by contact-sync, product-sync and the mapping registry:
the pure mapping rules (`dealbooks_sync.domain`), the sync engine and backfill
(`dealbooks_sync.engine`), settings and the backfill routes."""
