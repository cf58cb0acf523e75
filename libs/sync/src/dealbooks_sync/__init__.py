"""QBO -> CRM record sync shared by contact-sync, product-sync and the mapping registry: the
pure mapping rules and sync decisions (`domain`), and the parts a sync service composes: its
record kind (`kinds`), mapping sets and links (`mapping_sets`, `links`), the record write
pipeline (`records`, `outcomes`, `crm_writes`), healing (`healing`), backfill (`backfill`,
`backfill_pages`, `runs`), the backfill routes (`api`), settings and clients (`settings`),
built together by `parts`."""
