"""Data access: async functions with keyword-only arguments that return models or None.

Every function takes the tenant explicitly: no query here can reach another
tenant's rows, because the tenant is part of every WHERE clause.
"""

__all__ = ["api_keys", "emails", "items", "pages"]
