"""contact-sync: QuickBooks customers become CRM contacts, under the portal's settings."""
