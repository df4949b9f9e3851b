"""The GraphQL object types, one module per domain."""

__all__ = ["common", "emails", "enums", "items"]
