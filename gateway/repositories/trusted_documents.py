"""Trusted GraphQL documents: what client teams registered at build time, by SHA-256."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway import models

__all__ = ["add_trusted_documents", "get_trusted_document"]


async def get_trusted_document(*, session: AsyncSession, sha256: str) -> str | None:
    """The text registered under this hex SHA-256, or None when no such document was registered."""
    row = await session.get(models.TrustedDocument, sha256)
    return row.document if row is not None else None


async def add_trusted_documents(*, session: AsyncSession, documents: Mapping[str, str]) -> int:
    """Add the documents (hash -> text) not registered yet; returns how many were new.

    A hash already known keeps its text: a document's hash is its identity. The
    caller commits.
    """
    if not documents:
        return 0
    doc = models.TrustedDocument
    known = set((await session.execute(select(col(doc.sha256)).where(col(doc.sha256).in_(list(documents))))).scalars())
    new = [doc(sha256=h, document=t) for h, t in documents.items() if h not in known]
    session.add_all(new)
    return len(new)
