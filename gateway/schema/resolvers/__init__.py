"""Resolver functions: root fields call these; they call loaders and repositories."""

__all__ = ["emails", "items", "mutations", "nodes", "pages"]
