"""product-sync: QuickBooks items become CRM products, under the portal's settings."""
