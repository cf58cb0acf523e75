"""connector-auth: links CRM portals to QuickBooks companies and is the only keeper of their
OAuth tokens; other services get short-lived access tokens from its internal endpoint."""
