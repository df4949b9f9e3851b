"""The four screens the screens benchmark reads, in each server's naming: the gateway's
query, PostGraphile's over the gateway's own tables, the shape every answer must have,
and each node as a comparable row (so that the servers can be shown to agree)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from bench.harness.servers import BenchError
from gateway.enums import EmailStatus, FailureCategory, InvoiceStatus

__all__ = ["PAGE", "SCREENS", "Query", "Screen", "check_answer", "compare_rows", "emails_query", "shape_error"]

PAGE = 50

# --- response shapes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opt:
    """A value that may be null."""

    spec: Any


EMAIL_STATUSES = frozenset(status.value for status in EmailStatus)
INVOICE_STATUSES = frozenset(status.value for status in InvoiceStatus)
FAILURES = frozenset(category.value for category in FailureCategory)


def shape_error(value: Any, spec: Any, where: str = "node") -> str | None:
    """Why `value` does not have the shape `spec`, or None.

    A spec is a type (str, int, bool), a frozenset of allowed strings, Opt(spec), a
    one-element list (every item has that shape) or a dict (exactly these keys).
    """
    if isinstance(spec, Opt):
        return None if value is None else shape_error(value, spec.spec, where)
    if isinstance(spec, dict):
        if not isinstance(value, dict) or value.keys() != spec.keys():
            return f"{where}: expected the keys {sorted(spec)}, got {str(value)[:200]}"
        for key, inner in spec.items():
            error = shape_error(value[key], inner, f"{where}.{key}")
            if error:
                return error
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where}: expected a list, got {str(value)[:200]}"
        for i, item in enumerate(value):
            error = shape_error(item, spec[0], f"{where}[{i}]")
            if error:
                return error
        return None
    if isinstance(spec, frozenset):
        return None if value in spec else f"{where}: {value!r} is not one of {sorted(spec)}"
    if spec is int or spec is bool:
        ok = type(value) is spec
    else:
        ok = isinstance(value, spec)
    return None if ok else f"{where}: expected {spec.__name__}, got {str(value)[:200]}"


# --- the screens --------------------------------------------------------------------------------

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    """One server's query for a screen: where its edges are, their node shape, and the
    node as a comparable row."""

    text: str
    root: str
    node: dict[str, Any]
    row: Callable[[dict[str, Any]], Row]
    page: int = PAGE  # edges every answer must hold

    def body(self) -> bytes:
        return orjson.dumps({"query": self.text})


@dataclass(frozen=True)
class Screen:
    key: str
    title: str
    gateway: Query
    postgraphile: Callable[[int], Query]  # of the tenant id


def _gateway_pk(global_id: str, type_name: str) -> int:
    found, _, pk = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode().partition(":")
    if found != type_name:
        raise BenchError(f"{global_id!r} is not a {type_name} id")
    return int(pk)


def _postgraphile_pk(node_id: str, type_name: str) -> int:
    found, pk = orjson.loads(base64.b64decode(node_id))
    if found != type_name:
        raise BenchError(f"{node_id!r} is not a {type_name} node id")
    return int(pk)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _name_of(value: dict[str, Any] | None) -> str | None:
    return None if value is None else value["name"]


_GW_EMAIL = {
    "id": str,
    "subject": str,
    "recipient": str,
    "emailStatus": EMAIL_STATUSES,
    "sentAt": str,
    "relation": Opt({"name": str}),
    "documents": [{"title": str}],
}
_GW_DETAILS = {
    "status": EMAIL_STATUSES,
    "statusChangedAt": str,
    "failure": Opt({"category": FAILURES, "reason": str}),
    "opens": {"count": int, "likelyAutomated": bool},
}
_PG_EMAIL = {
    "id": str,
    "subject": str,
    "recipient": str,
    "status": EMAIL_STATUSES,
    "sentAt": str,
    "relationByRelationId": Opt({"name": str}),
    "emailDocumentsByEmailId": {"nodes": [{"documentByDocumentId": Opt({"title": str})}]},
}
_PG_DETAILS = {
    "statusChangedAt": str,
    "failureCategory": Opt(FAILURES),
    "failureReason": Opt(str),
    "openCount": int,
    "opensLikelyAutomated": bool,
}
_GW_EMAIL_FIELDS = "id subject recipient emailStatus sentAt relation { name } documents { title }"
_GW_DETAILS_FIELDS = "details { status statusChangedAt failure { category reason } opens { count likelyAutomated } }"
_PG_EMAIL_FIELDS = (
    "id subject recipient status sentAt relationByRelationId { name } "
    "emailDocumentsByEmailId { nodes { documentByDocumentId { title } } }"
)
_PG_DETAILS_FIELDS = "statusChangedAt failureCategory failureReason openCount opensLikelyAutomated"


def _gw_email_row(n: dict[str, Any]) -> Row:
    return (
        _gateway_pk(n["id"], "Email"),
        n["subject"],
        n["recipient"],
        n["emailStatus"],
        _time(n["sentAt"]),
        _name_of(n["relation"]),
        tuple(d["title"] for d in n["documents"]),
    )


def _pg_email_row(n: dict[str, Any]) -> Row:
    return (
        _postgraphile_pk(n["id"], "Email"),
        n["subject"],
        n["recipient"],
        n["status"],
        _time(n["sentAt"]),
        _name_of(n["relationByRelationId"]),
        tuple(link["documentByDocumentId"]["title"] for link in n["emailDocumentsByEmailId"]["nodes"]),
    )


def _gw_details_row(n: dict[str, Any]) -> Row:
    d = n["details"]
    failure = (d["failure"]["category"], d["failure"]["reason"]) if d["failure"] else None
    return (
        *_gw_email_row(n),
        d["status"],
        _time(d["statusChangedAt"]),
        failure,
        d["opens"]["count"],
        d["opens"]["likelyAutomated"],
    )


def _pg_details_row(n: dict[str, Any]) -> Row:
    # The gateway shows a failure only on a DELIVERY_FAILED e-mail; a front end reading
    # the raw columns through PostGraphile does the same.
    failed = n["status"] == "DELIVERY_FAILED" and n["failureCategory"] is not None
    failure = (n["failureCategory"], n["failureReason"] or "") if failed else None
    return (
        *_pg_email_row(n),
        n["status"],
        _time(n["statusChangedAt"]),
        failure,
        n["openCount"],
        n["opensLikelyAutomated"],
    )


def _condition(tenant_id: int, order: str) -> str:
    return f"first: {PAGE}, condition: {{tenantId: {tenant_id}}}, orderBy: [{order}]"


def emails_query(page: int) -> Query:
    """The gateway's E-mails screen with `page` rows."""
    return Query(
        f"query {{ emails(first: {page}) {{ edges {{ node {{ {_GW_EMAIL_FIELDS} }} }} }} }}",
        "emails",
        _GW_EMAIL,
        _gw_email_row,
        page,
    )


SCREENS: dict[str, Screen] = {
    s.key: s
    for s in (
        Screen(
            key="emails",
            title="E-mails screen: 50 most recent e-mails, relation name, document titles",
            gateway=emails_query(PAGE),
            postgraphile=lambda t: Query(
                f"query {{ allEmails({_condition(t, 'SENT_AT_DESC, ROW_ID_DESC')}) "
                f"{{ edges {{ node {{ {_PG_EMAIL_FIELDS} }} }} }} }}",
                "allEmails",
                _PG_EMAIL,
                _pg_email_row,
            ),
        ),
        Screen(
            key="details",
            title="E-mails screen with details (status, time, failure, opens)",
            gateway=Query(
                f"query {{ emails(first: {PAGE}) {{ edges {{ node {{ {_GW_EMAIL_FIELDS} "
                f"{_GW_DETAILS_FIELDS} }} }} }} }}",
                "emails",
                {**_GW_EMAIL, "details": _GW_DETAILS},
                _gw_details_row,
            ),
            postgraphile=lambda t: Query(
                f"query {{ allEmails({_condition(t, 'SENT_AT_DESC, ROW_ID_DESC')}) "
                f"{{ edges {{ node {{ {_PG_EMAIL_FIELDS} {_PG_DETAILS_FIELDS} }} }} }} }}",
                "allEmails",
                {**_PG_EMAIL, **_PG_DETAILS},
                _pg_details_row,
            ),
        ),
        Screen(
            key="documents",
            title="Documents screen: 50 newest documents, status of their latest e-mail, relation",
            gateway=Query(
                f"query {{ documents(first: {PAGE}) {{ edges {{ node {{ id title emailStatus "
                "relation { name } } } } }",
                "documents",
                {
                    "id": str,
                    "title": str,
                    "emailStatus": Opt(EMAIL_STATUSES),
                    "relation": Opt({"name": str}),
                },
                lambda n: (
                    _gateway_pk(n["id"], "Document"),
                    n["title"],
                    n["emailStatus"],
                    _name_of(n["relation"]),
                ),
            ),
            postgraphile=lambda t: Query(
                f"query {{ allDocuments({_condition(t, 'ROW_ID_DESC')}) "
                "{ edges { node { id title "
                "emailByLatestEmailId { status } relationByRelationId { name } } } } }",
                "allDocuments",
                {
                    "id": str,
                    "title": str,
                    "emailByLatestEmailId": Opt({"status": EMAIL_STATUSES}),
                    "relationByRelationId": Opt({"name": str}),
                },
                lambda n: (
                    _postgraphile_pk(n["id"], "Document"),
                    n["title"],
                    n["emailByLatestEmailId"]["status"] if n["emailByLatestEmailId"] else None,
                    _name_of(n["relationByRelationId"]),
                ),
            ),
        ),
        Screen(
            key="invoices",
            title="Invoicing screen: 50 newest invoices, invoice and e-mail status, relation",
            gateway=Query(
                f"query {{ invoices(first: {PAGE}) {{ edges {{ node {{ id number invoiceStatus "
                "emailStatus relation { name } } } } }",
                "invoices",
                {
                    "id": str,
                    "number": str,
                    "invoiceStatus": INVOICE_STATUSES,
                    "emailStatus": Opt(EMAIL_STATUSES),
                    "relation": Opt({"name": str}),
                },
                lambda n: (
                    _gateway_pk(n["id"], "Invoice"),
                    n["number"],
                    n["invoiceStatus"],
                    n["emailStatus"],
                    _name_of(n["relation"]),
                ),
            ),
            postgraphile=lambda t: Query(
                f"query {{ allInvoices({_condition(t, 'ROW_ID_DESC')}) "
                "{ edges { node { id number invoiceStatus emailByLatestEmailId { status } "
                "relationByRelationId { name } } } } }",
                "allInvoices",
                {
                    "id": str,
                    "number": str,
                    "invoiceStatus": INVOICE_STATUSES,
                    "emailByLatestEmailId": Opt({"status": EMAIL_STATUSES}),
                    "relationByRelationId": Opt({"name": str}),
                },
                lambda n: (
                    _postgraphile_pk(n["id"], "Invoice"),
                    n["number"],
                    n["invoiceStatus"],
                    n["emailByLatestEmailId"]["status"] if n["emailByLatestEmailId"] else None,
                    _name_of(n["relationByRelationId"]),
                ),
            ),
        ),
    )
}


def check_answer(content: bytes, query: Query) -> list[dict[str, Any]]:
    """The nodes of a correct answer; BenchError for anything else."""
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise BenchError(f"not JSON: {content[:300]!r}") from None
    if not isinstance(payload, dict) or payload.get("errors") or not isinstance(payload.get("data"), dict):
        raise BenchError(f"errors in the answer: {content[:600]!r}")
    connection = payload["data"].get(query.root)
    edges = connection.get("edges") if isinstance(connection, dict) else None
    if not isinstance(edges, list) or len(edges) != query.page:
        raise BenchError(f"expected {query.page} edges under data.{query.root}.edges: {content[:300]!r}")
    nodes = []
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict) or edge.keys() != {"node"}:
            raise BenchError(f"edge {i} is not {{node}}: {str(edge)[:200]}")
        error = shape_error(edge["node"], query.node, f"edges[{i}].node")
        if error:
            raise BenchError(error)
        nodes.append(edge["node"])
    return nodes


def compare_rows(screen: str, answers: dict[str, tuple[Query, bytes]]) -> str:
    """The same rows in every server's answer (label: (query, answer)), or BenchError
    showing the first difference."""
    rows = {label: [query.row(n) for n in check_answer(content, query)] for label, (query, content) in answers.items()}
    (first_label, first), *others = rows.items()
    for label, other in others:
        for i, (a, b) in enumerate(zip(first, other, strict=True)):
            if a != b:
                raise BenchError(f"{screen}: row {i} differs\n  {first_label}: {a}\n  {label}: {b}")
    ids = [r[0] for r in first]
    documents = ", documents" if screen.startswith(("emails", "details")) else ""
    return (
        f"same {len(first)} rows from {', '.join(rows)} (ids {ids[0]}..{ids[-1]}, "
        f"subjects/titles, statuses, relations{documents})"
    )
