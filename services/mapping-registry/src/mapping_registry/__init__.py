"""mapping-registry: field mappings, sync settings and property-sync status per account."""
