"""Plans: compiled once per query document, run per request."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_operation_ast,
    get_variable_values,
    parse,
    validate,
)
from graphql.execution.values import VariableValues, get_argument_values

from gateway.errors import BadInput
from gateway.ids import decode_cursor, encode_cursor
from gateway.repositories.items import ItemKind
from gateway.repositories.lookups import Lookup
from gateway.repositories.pages import PageRequest, check_first
from gateway.schema import Validator
from gateway.schema.inputs import DocumentFilter, EmailFilter, InvoiceFilter, email_query, item_query
from gateway.schema.limits import Limits, check_request

from .fields import Unsupported, collect
from .rows import Fold, Folded, Rows, RowSource
from .writers import Fragments, Lookups, Needs, Writer, compile_document, compile_email, compile_invoice

__all__ = ["FastPath", "Plan", "compile_plan"]

log = logging.getLogger(__name__)

_ROOTS = {"emails": "Email", "documents": "Document", "invoices": "Invoice"}
_CURSOR_KIND = {"emails": "email", "documents": "document", "invoices": "invoice"}
_ITEM_KINDS: dict[str, ItemKind] = {"documents": "document", "invoices": "invoice"}
_BACKWARD = frozenset({"last", "before"})

# A node's compiler: its selections in, its writer out (the columns and lookups it needs noted).
Compiler = Callable[[list[SelectionSetNode], Fragments, Needs, set[str]], Writer]


@dataclass
class _Page:
    rows: list[Any]
    has_next: bool
    has_previous: bool
    count: int | None
    folded: Folded


@dataclass
class _Root:
    key: str
    name: str
    node: FieldNode
    write: Callable[[_Page, Lookups], Any]
    wants_count: bool


@dataclass
class Plan:
    document: DocumentNode
    operation: OperationDefinitionNode
    roots: list[_Root]
    needs: Needs
    item_columns: dict[str, set[str]] = field(default_factory=dict)
    folds: dict[str, tuple[Fold, ...]] = field(default_factory=dict)  # by root field name


# The lookups a page of each root can carry: (lookup, the page column it needs, its Needs field).
_FOLDABLE: dict[str, tuple[tuple[Lookup, str, str], ...]] = {
    "emails": (
        ("relations", "relation_id", "relation"),
        ("invoices", "invoice_id", "invoice"),
        ("documents_by_email", "id", "document"),
    ),
    "documents": (("relations", "relation_id", "relation"), ("latest_emails", "latest_email_id", "latest_email")),
    "invoices": (("relations", "relation_id", "relation"), ("latest_emails", "latest_email_id", "latest_email")),
}


def _folds(plan: Plan, name: str) -> tuple[Fold, ...]:
    columns = plan.needs.email if name == "emails" else plan.item_columns[name]
    folds = []
    for lookup, key, need in _FOLDABLE[name]:
        wanted: set[str] | None = getattr(plan.needs, need)
        if wanted is not None and key in columns:
            folds.append(Fold(lookup, key, tuple(sorted(wanted))))
    return tuple(folds)


def _cursor_of(name: str) -> Callable[[Any], str]:
    if name == "emails":
        return lambda row: encode_cursor("email", row["sent_at"], row["id"])
    kind = _CURSOR_KIND[name]
    return lambda row: encode_cursor(kind, None, row["id"])


def _compile_connection(
    name: str,
    selections: list[SelectionSetNode],
    fragments: dict[str, FragmentDefinitionNode],
    needs: Needs,
    columns: set[str],
) -> tuple[Callable[[_Page, Lookups], Any], bool]:
    type_name = _ROOTS[name]
    cursor = _cursor_of(name)
    if name == "emails":
        node: Compiler = compile_email
    else:
        node = compile_document if name == "documents" else compile_invoice
    parts: list[tuple[str, Callable[[_Page, Lookups], Any]]] = []
    wants_count = False
    for f in collect(selections, fragments, frozenset({f"{type_name}Connection"})):
        if f.arguments:
            raise Unsupported("arguments")
        if f.name == "__typename":
            parts.append((f.key, _constant(f"{type_name}Connection")))
        elif f.name == "totalCount":
            wants_count = True
            parts.append((f.key, lambda p, _l: p.count))
        elif f.name == "pageInfo":
            parts.append((f.key, _compile_page_info(f.selections, fragments, cursor)))
        elif f.name == "edges":
            edge_parts: list[tuple[str, Writer]] = []
            for e in collect(f.selections, fragments, frozenset({f"{type_name}Edge"})):
                if e.arguments:
                    raise Unsupported("arguments")
                if e.name == "__typename":
                    edge_parts.append((e.key, _constant(f"{type_name}Edge")))
                elif e.name == "cursor":
                    edge_parts.append((e.key, lambda r, _l: cursor(r)))
                elif e.name == "node":
                    edge_parts.append((e.key, node(e.selections, fragments, needs, columns)))
                else:
                    raise Unsupported(e.name)
            parts.append((f.key, _edges(edge_parts)))
        else:
            raise Unsupported(f.name)
    return (lambda page, lookups: {key: part(page, lookups) for key, part in parts}), wants_count


def _constant(value: str) -> Callable[[Any, Lookups], str]:
    return lambda _source, _lookups: value


def _edges(parts: list[tuple[str, Writer]]) -> Callable[[_Page, Lookups], list[dict[str, Any]]]:
    return lambda page, lookups: [{key: write(row, lookups) for key, write in parts} for row in page.rows]


def _compile_page_info(
    selections: list[SelectionSetNode], fragments: dict[str, FragmentDefinitionNode], cursor: Callable[[Any], str]
) -> Callable[[_Page, Lookups], Any]:
    parts: list[tuple[str, Callable[[_Page], Any]]] = []
    for f in collect(selections, fragments, frozenset({"PageInfo"})):
        if f.arguments:
            raise Unsupported("arguments")
        getter: Callable[[_Page], Any]
        if f.name == "__typename":
            getter = lambda _p: "PageInfo"  # noqa: E731
        elif f.name == "hasNextPage":
            getter = lambda p: p.has_next  # noqa: E731
        elif f.name == "hasPreviousPage":
            getter = lambda p: p.has_previous  # noqa: E731
        elif f.name == "startCursor":
            getter = lambda p: cursor(p.rows[0]) if p.rows else None  # noqa: E731
        elif f.name == "endCursor":
            getter = lambda p: cursor(p.rows[-1]) if p.rows else None  # noqa: E731
        else:
            raise Unsupported(f.name)
        parts.append((f.key, getter))
    return lambda page, _l: {key: get(page) for key, get in parts}


def compile_plan(
    schema: GraphQLSchema,
    query: str,
    operation_name: str | None,
    *,
    validator: Validator | None = None,
    max_tokens: int | None = None,
) -> Plan | None:
    """The plan of a query document, from the document and the schema alone.

    None when the document is not the compiler's to judge (too many tokens, a
    syntax or validation error by the reference's own `validator`, or no
    operation by that name: the reference reports those); raises `Unsupported`
    with the reason when it is a valid document the plans cannot serve.
    """
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return None
    if (validator or _specified)(schema, document):
        return None
    # None when the name matches nothing, or when none is given and there are several.
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    try:
        return _compile_operation(document, operation)
    except Unsupported as unsupported:
        unsupported.operation = operation.name.value if operation.name else None
        raise


def _compile_operation(document: DocumentNode, operation: OperationDefinitionNode) -> Plan:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    if operation.operation is not OperationType.QUERY:
        raise Unsupported(operation.operation.value)
    if operation.directives:
        raise Unsupported("operation directives")
    needs = Needs()
    roots: list[_Root] = []
    plan = Plan(document=document, operation=operation, roots=roots, needs=needs)
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            raise Unsupported("root selection")
        name = selection.name.value
        if name not in _ROOTS or selection.selection_set is None:
            raise Unsupported(name)
        if any(a.name.value in _BACKWARD for a in selection.arguments or ()):
            raise Unsupported("backward pagination")  # the compiled pages only go forwards
        if any(r.key == (selection.alias.value if selection.alias else name) for r in roots):
            raise Unsupported("repeated root key")
        columns = needs.email if name == "emails" else plan.item_columns.setdefault(name, {"id"})
        write, wants_count = _compile_connection(name, [selection.selection_set], fragments, needs, columns)
        key = selection.alias.value if selection.alias else name
        roots.append(_Root(key, name, selection, write, wants_count))
    plan.folds = {root.name: _folds(plan, root.name) for root in roots}
    return plan


def _specified(schema: GraphQLSchema, document: DocumentNode) -> list[GraphQLError]:
    return validate(schema, document)


class FastPath:
    """Plans by query text or persisted hash; `run` answers a request or returns None for the reference.

    A document is compiled the first time it is seen. One the plans cannot serve
    is said so once, by a log line and `on_unsupported(reason)` (a metric), so a
    screen query left to the reference executor shows.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        limits: Limits,
        history_days: int,
        validator: Validator | None = None,
        max_tokens: int | None = None,
        on_unsupported: Callable[[str], None] | None = None,
        size: int = 512,
    ) -> None:
        self._schema = schema
        self._validator = validator  # the reference's rules (depth, aliases...): what it refuses, no plan serves
        self._max_tokens = max_tokens
        self._limits = limits
        self._max_page_size = limits.max_page_size
        self._history_days = history_days
        self._on_unsupported = on_unsupported
        self._size = size
        self._plans: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()

    def plan(self, query: str, operation_name: str | None, digest: str | None = None) -> Plan | None:
        """The document's plan, compiled on first sight; None when the reference must answer it.

        A persisted document is keyed by its SHA-256 (`digest`), the text otherwise.
        """
        key = (digest or query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        try:
            plan = compile_plan(
                self._schema, query, operation_name, validator=self._validator, max_tokens=self._max_tokens
            )
        except Unsupported as unsupported:
            reason = str(unsupported)
            name = unsupported.operation or "(anonymous)"
            log.info("fast path: operation %s left to the reference executor (%s)", name, reason)
            if self._on_unsupported is not None:
                self._on_unsupported(reason)
            plan = None
        self._plans[key] = plan
        while len(self._plans) > self._size:
            self._plans.popitem(last=False)
        return plan

    async def run(
        self, plan: Plan, variables: dict[str, Any] | None, tenant_id: int, source: RowSource
    ) -> bytes | None:
        """The response body, or None when the reference executor must answer instead."""
        try:
            check_request(self._schema, plan.document, plan.operation, variables, self._limits)
        except GraphQLError:
            return None  # the reference refuses it, with the same check
        coerced = get_variable_values(self._schema, plan.operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return None  # the reference reports the variables' errors
        try:
            requests = [self._page_request(root, coerced) for root in plan.roots]
        except (BadInput, GraphQLError, TypeError, ValueError):
            return None
        lookups = Lookups(history_days=self._history_days, now=datetime.now(UTC))
        async with source.open(tenant_id) as rows:
            pages = [
                await self._fetch(rows, plan, root, request) for root, request in zip(plan.roots, requests, strict=True)
            ]
            await self._look_up(rows, plan, pages, lookups)
        data = {root.key: root.write(page, lookups) for root, page in zip(plan.roots, pages, strict=True)}
        return orjson.dumps({"data": data})

    def _page_request(self, root: _Root, variables: VariableValues) -> tuple[Any, PageRequest]:
        field_def = self._schema.query_type.fields[root.name]  # type: ignore[union-attr]  # a schema has a Query
        arguments = get_argument_values(field_def, root.node, variables)
        first = check_first(arguments.get("first"), self._max_page_size)
        after = arguments.get("after")
        position = decode_cursor(after, _CURSOR_KIND[root.name]) if after is not None else None
        raw_filter = arguments.get("filter")
        page = PageRequest(first=first, after=position)
        if root.name == "emails":
            return email_query(_input(EmailFilter, raw_filter)), page
        return item_query(_input(DocumentFilter if root.name == "documents" else InvoiceFilter, raw_filter)), page

    async def _fetch(self, rows: Rows, plan: Plan, root: _Root, request: tuple[Any, PageRequest]) -> _Page:
        query, page = request
        folds = plan.folds[root.name]
        if root.name == "emails":
            found = await rows.email_page(query, page, sorted(plan.needs.email), folds)
            count = await rows.email_count(query) if root.wants_count else None
        else:
            kind = _ITEM_KINDS[root.name]
            found = await rows.item_page(kind, query, page, sorted(plan.item_columns[root.name]), folds)
            count = await rows.item_count(kind, query) if root.wants_count else None
        return _Page(found.rows, found.has_next, page.after is not None, count, found.folded)

    async def _look_up(self, rows: Rows, plan: Plan, pages: list[_Page], lookups: Lookups) -> None:
        """Fill the lookups: first what the pages carried, then a statement per kind for the rest."""
        for page in pages:
            for lookup, found in page.folded.items():
                getattr(lookups, lookup).update(found)
        needs = plan.needs
        emails = [row for r, p in zip(plan.roots, pages, strict=True) if r.name == "emails" for row in p.rows]
        items = [row for r, p in zip(plan.roots, pages, strict=True) if r.name != "emails" for row in p.rows]
        if needs.document is not None:
            missing = {e["id"] for e in emails} - lookups.documents_by_email.keys()
            if missing:
                for row in await rows.documents_by_email_ids(sorted(missing), sorted(needs.document)):
                    lookups.documents_by_email.setdefault(row["email_id"], []).append(row)
        if needs.invoice is not None:
            ids = {e["invoice_id"] for e in emails} - {None} - lookups.invoices.keys()
            if ids:
                lookups.invoices.update(
                    {r["id"]: r for r in await rows.items_by_ids("invoice", sorted(ids), sorted(needs.invoice))}
                )
        documents = [d for ds in lookups.documents_by_email.values() for d in ds]
        carried = [*items, *documents, *(i for i in lookups.invoices.values() if i is not None)]
        if needs.latest_email is not None:
            ids = {r.get("latest_email_id") for r in carried} - {None} - lookups.latest_emails.keys()
            if ids:
                latest = await rows.emails_by_ids(sorted(ids), sorted(needs.latest_email))
                lookups.latest_emails.update({r["id"]: r for r in latest})
        if needs.relation is not None:
            ids = {r.get("relation_id") for r in (*emails, *carried)} - {None} - lookups.relations.keys()
            if ids:
                relations = await rows.items_by_ids("relation", sorted(ids), sorted(needs.relation))
                lookups.relations.update({r["id"]: r for r in relations})


def _input(cls: type, value: dict[str, Any] | None) -> Any:
    """graphql-core's coerced input object (camelCase keys) as the schema's input class."""
    if value is None:
        return None
    return cls(**{re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in value.items()})
