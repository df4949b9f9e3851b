"""Data access: async functions with keyword-only arguments that return models or None.

Every function that reads for a client takes the tenant explicitly: no such query
can reach another tenant's rows, because the tenant is part of every WHERE clause.
The ingestion path's matching (`events`) and the purge (`retention`) span tenants
by nature: a provider's webhook names a message, not an office.
"""

__all__ = [
    "api_keys",
    "changes",
    "demo",
    "emails",
    "events",
    "items",
    "pages",
    "registration",
    "retention",
    "trusted_documents",
    "webhook_nonces",
]
