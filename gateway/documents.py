"""Persisted documents: automatic persisted queries (APQ) and trusted documents.

A client may send, instead of its query text, the SHA-256 of it in
`extensions.persistedQuery {version: 1, sha256Hash}` (Apollo's protocol, over
POST and GET). The gateway finds the text:

- **Trusted documents**: registered at build time (`gateway register-documents`)
  in the database, so every replica knows them. Found ones are kept in memory:
  a hash names one text forever.
- **APQ**: any other document a client sent once with its hash, kept in a
  bounded in-process LRU (per replica). An unknown hash answers
  `PersistedQueryNotFound`; the client then sends hash and text together, and
  the text is kept once its hash is checked.

With `GATEWAY_TRUSTED_DOCUMENTS_ONLY` only trusted documents run: any other
text, or hash, is refused (`TRUSTED_DOCUMENT_REQUIRED`) and nothing is kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import GraphQLError, parse, print_ast
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.repositories.trusted_documents import add_trusted_documents, get_trusted_document

__all__ = [
    "DocumentRefused",
    "PersistedDocuments",
    "Resolved",
    "read_documents",
    "register_documents",
    "sha256_hex",
]

_HASH = re.compile(r"[0-9a-f]{64}")
# A longer text still runs, but is not kept: the LRU's memory stays bounded by size x this.
_MAX_KEPT_CHARS = 50_000
# Trusted documents found, kept whatever the LRU of APQ texts does (a few hundred per app).
_MAX_TRUSTED_CACHED = 10_000


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class DocumentRefused(Exception):
    """A persisted-document request the gateway does not run; `code` goes to `extensions.code`."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True, slots=True)
class Resolved:
    """The text to run, and its hash when the client named one (the fast path's key)."""

    query: str
    sha256: str | None


def _persisted_hash(extensions: object) -> str | None:
    """The sha256Hash a request names, or None; DocumentRefused when it is malformed."""
    if not isinstance(extensions, Mapping) or extensions.get("persistedQuery") is None:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, Mapping) or persisted.get("version") != 1:
        raise DocumentRefused(
            "Unsupported persisted query version: send extensions.persistedQuery {version: 1, sha256Hash}",
            "PERSISTED_QUERY_NOT_SUPPORTED",
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest.lower()):
        raise DocumentRefused(
            f"persistedQuery.sha256Hash {str(digest)[:80]!r} is not a SHA-256 in hexadecimal", "BAD_USER_INPUT"
        )
    return digest.lower()


class _Lru:
    """A bounded map of hash -> text; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: str, value: str) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class PersistedDocuments:
    """Finds the text of a request's document from its hash, and enforces trusted documents."""

    def __init__(
        self, *, session_factory: async_sessionmaker[AsyncSession], trusted_only: bool, cache_size: int
    ) -> None:
        self._session_factory = session_factory
        self._trusted_only = trusted_only
        self._automatic = _Lru(cache_size)
        self._trusted = _Lru(_MAX_TRUSTED_CACHED)

    async def resolve(self, query: object, extensions: object) -> Resolved | None:
        """The document a request runs; None when it names neither text nor hash (the view says so).

        Raises DocumentRefused for an unknown hash, a hash that is not the text's,
        or, with trusted documents only, anything not registered.
        """
        digest = _persisted_hash(extensions)
        text = query if isinstance(query, str) else None
        if digest is None:
            if text is None:
                return None
            if self._trusted_only and await self._trusted_text(sha256_hex(text)) is None:
                raise self._untrusted(None)
            return Resolved(text, None)
        if text is not None:
            if sha256_hex(text) != digest:
                raise DocumentRefused(
                    f"persistedQuery.sha256Hash {digest} is not the SHA-256 of the query sent", "BAD_USER_INPUT"
                )
            if self._trusted_only:
                if await self._trusted_text(digest) is None:
                    raise self._untrusted(digest)
            elif len(text) <= _MAX_KEPT_CHARS:
                self._automatic.put(digest, text)
            return Resolved(text, digest)
        found = None if self._trusted_only else self._automatic.get(digest)
        if found is None:
            found = await self._trusted_text(digest)
        if found is None:
            if self._trusted_only:
                raise self._untrusted(digest)
            # The exact message and code Apollo's PersistedQueryLink waits for to send the text.
            raise DocumentRefused("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        return Resolved(found, digest)

    async def _trusted_text(self, digest: str) -> str | None:
        found = self._trusted.get(digest)
        if found is None:
            async with self._session_factory() as session:
                found = await get_trusted_document(session=session, sha256=digest)
            if found is not None:
                self._trusted.put(digest, found)
        return found

    @staticmethod
    def _untrusted(digest: str | None) -> DocumentRefused:
        named = f"document {digest}" if digest else "a document that was not"
        return DocumentRefused(
            f"This gateway runs trusted documents only, and {named} is not registered: "
            "register it at build time with `gateway register-documents`",
            "TRUSTED_DOCUMENT_REQUIRED",
        )


# -- registering -----------------------------------------------------------------------------------


def _forms(text: str) -> dict[str, str]:
    """A .graphql file's document as written and as graphql-js `print` renders it (what Apollo hashes)."""
    forms = {sha256_hex(text): text}
    try:
        printed = print_ast(parse(text))
    except GraphQLError as error:
        raise ValueError(f"not a GraphQL document: {error.message}") from None
    forms[sha256_hex(printed)] = printed
    return forms


def _manifest(data: Any, name: str) -> dict[str, str]:
    """`{hash: document}` (GraphQL Codegen's persisted documents) or Apollo's persisted query manifest."""
    if isinstance(data, dict) and data.get("format") == "apollo-persisted-query-manifest":
        pairs: Iterable[tuple[Any, Any]] = (
            (op.get("id"), op.get("body")) for op in data.get("operations", []) if isinstance(op, dict)
        )
    elif isinstance(data, dict):
        pairs = data.items()
    else:
        raise ValueError(f"{name}: a manifest is a JSON object")
    documents = {}
    for digest, text in pairs:
        if not isinstance(digest, str) or not isinstance(text, str):
            raise ValueError(f"{name}: every entry needs a hash and a document text")
        if sha256_hex(text) != digest.lower():
            raise ValueError(f"{name}: {digest[:80]!r} is not the SHA-256 of its document")
        documents[digest.lower()] = text
    return documents


def read_documents(paths: Iterable[Path]) -> dict[str, str]:
    """`{sha256: text}` of .graphql files and JSON manifests; ValueError names the bad file."""
    documents: dict[str, str] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not JSON ({error})") from None
            documents.update(_manifest(data, str(path)))
        else:
            try:
                documents.update(_forms(text))
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
    return documents


async def register_documents(*, session: AsyncSession, documents: Mapping[str, str]) -> int:
    """Store these documents (hash -> text); returns how many were new. Idempotent."""
    added = await add_trusted_documents(session=session, documents=documents)
    await session.commit()
    return added
