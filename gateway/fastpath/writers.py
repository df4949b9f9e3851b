"""Compiling selections into writers: plain rows in, the response's dicts out.

Each `compile_*` function walks one type's collected fields, records which
columns and lookups it needs in `Needs`, and returns a writer. Any field or
argument outside the supported set raises `Unsupported`, and the whole document
is left to the reference executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from graphql import FragmentDefinitionNode, SelectionSetNode

from gateway import rules
from gateway.ids import encode_id

from .fields import Collected, Unsupported, collect

__all__ = ["Lookups", "Needs", "Writer", "compile_document", "compile_email", "compile_invoice"]

Writer = Callable[[Any, "Lookups"], Any]
Fragments = dict[str, FragmentDefinitionNode]


@dataclass
class Needs:
    """Columns each kind of row must carry, and which lookups a plan makes."""

    email: set[str] = field(default_factory=lambda: {"id", "sent_at"})
    item: set[str] = field(default_factory=lambda: {"id"})  # the root documents or invoices
    relation: set[str] | None = None
    invoice: set[str] | None = None
    document: set[str] | None = None  # documents of e-mails
    latest_email: set[str] | None = None  # the newest e-mail of documents and invoices


@dataclass
class Lookups:
    """What the lookups found, by id."""

    history_days: int
    now: datetime
    relations: dict[int, Any] = field(default_factory=dict)
    invoices: dict[int, Any] = field(default_factory=dict)
    documents_by_email: dict[int, list[Any]] = field(default_factory=dict)
    latest_emails: dict[int, Any] = field(default_factory=dict)


def dt(value: datetime | None) -> datetime | None:
    """A timestamp in UTC, left for orjson, which writes it in C exactly as `isoformat()`
    writes an aware UTC datetime (the reference's format); asyncpg's already are."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def _fields(selections: list[SelectionSetNode], fragments: Fragments, *type_names: str) -> list[Collected]:
    found = collect(selections, fragments, frozenset(type_names))
    for f in found:
        if f.arguments:
            raise Unsupported(f"arguments on {f.name}")
    return found


class _Column:
    """A writer that reads one column, converted or not (`_object` inlines it)."""

    __slots__ = ("convert", "name")

    def __init__(self, name: str, convert: Callable[[Any], Any] | None) -> None:
        self.name, self.convert = name, convert

    def __call__(self, row: Any, _lookups: Lookups) -> Any:
        value = row[self.name]
        return value if self.convert is None else self.convert(value)


class _Constant:
    """A writer that answers the same value for every row (`_object` inlines it)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, _row: Any, _lookups: Lookups) -> Any:
        return self.value


def _object(parts: list[tuple[str, Writer]]) -> Writer:
    """One function that builds the object's dict in a single expression.

    As graphql-jit does: the source is generated once per selection, so a row's
    columns and constants are read inline, without a call per field.
    """
    names: dict[str, Any] = {}
    items = []
    for n, (key, part) in enumerate(parts):
        names[f"k{n}"] = key
        if isinstance(part, _Constant):
            names[f"v{n}"] = part.value
            items.append(f"k{n}: v{n}")
        elif isinstance(part, _Column) and part.convert is None:
            names[f"c{n}"] = part.name
            items.append(f"k{n}: row[c{n}]")
        elif isinstance(part, _Column):
            names[f"c{n}"], names[f"f{n}"] = part.name, part.convert
            items.append(f"k{n}: f{n}(row[c{n}])")
        else:
            names[f"w{n}"] = part
            items.append(f"k{n}: w{n}(row, lookups)")
    source = f"def write(row, lookups):\n    return {{{', '.join(items)}}}\n"
    exec(source, names)  # noqa: S102  (generated from the names above only: no text from the request)
    write: Writer = names["write"]
    return write


def _column(columns: set[str], name: str, convert: Callable[[Any], Any] | None = None) -> Writer:
    columns.add(name)
    return _Column(name, convert)


def _enum(value: Any) -> str | None:
    # An enum member from SQLAlchemy, its name as text from asyncpg: the same here.
    text: str | None = getattr(value, "value", value)
    return text


def _constant(value: Any) -> Writer:
    return _Constant(value)


Columns = dict[str, tuple[str, Callable[[Any], Any] | None]]


def _flat(
    type_name: str,
    selections: list[SelectionSetNode],
    fragments: Fragments,
    columns: set[str],
    names: Columns,
    constants: dict[str, Any] | None = None,
    interfaces: tuple[str, ...] = (),
) -> Writer:
    """An object whose fields are all columns of the row (or constants)."""
    parts: list[tuple[str, Writer]] = []
    for f in _fields(selections, fragments, type_name, *interfaces):
        if f.name == "__typename":
            parts.append((f.key, _constant(type_name)))
        elif constants and f.name in constants:
            parts.append((f.key, _constant(constants[f.name])))
        elif f.name in names:
            parts.append((f.key, _column(columns, *names[f.name])))
        else:
            raise Unsupported(f.name)
    return _object(parts)


def compile_failure(selections: list[SelectionSetNode], fragments: Fragments, columns: set[str]) -> Writer:
    columns.update(rules.FAILURE_COLUMNS)
    names: Columns = {
        "category": ("failure_category", _enum),
        "reason": ("failure_reason", lambda v: v or ""),
        "smtpCode": ("failure_smtp_code", None),
        "occurredAt": ("failure_occurred_at", dt),
    }
    body = _flat("DeliveryFailure", selections, fragments, columns, names)

    def write(row: Any, lookups: Lookups) -> Any:
        if not rules.failure_shown(_enum(row["status"]), row["failure_category"], row["failure_occurred_at"]):
            return None
        return body(row, lookups)

    return write


def compile_opens(selections: list[SelectionSetNode], fragments: Fragments, columns: set[str]) -> Writer:
    names: Columns = {
        "count": ("open_count", None),
        "firstOpenedAt": ("first_opened_at", dt),
        "lastOpenedAt": ("last_opened_at", dt),
        "likelyAutomated": ("opens_likely_automated", None),
    }
    return _flat("OpenTracking", selections, fragments, columns, names, {"notice": rules.OPEN_NOTICE})


def compile_complaint(selections: list[SelectionSetNode], fragments: Fragments, columns: set[str]) -> Writer:
    columns.add("complained_at")
    names: Columns = {"complainedAt": ("complained_at", dt)}
    constants = {"addressSuppressed": True, "notice": rules.COMPLAINT_NOTICE}
    body = _flat("SpamComplaint", selections, fragments, columns, names, constants)

    def write(row: Any, lookups: Lookups) -> Any:
        return None if row["complained_at"] is None else body(row, lookups)

    return write


def compile_details(selections: list[SelectionSetNode], fragments: Fragments, columns: set[str]) -> Writer:
    simple = {
        "status": ("status", _enum),
        "statusChangedAt": ("status_changed_at", dt),
        "subject": ("subject", None),
        "recipient": ("recipient", None),
        "sentAt": ("sent_at", dt),
        "deliveredAt": ("delivered_at", dt),
    }
    parts: list[tuple[str, Writer]] = []
    for f in _fields(selections, fragments, "EmailDetails"):
        if f.name == "__typename":
            parts.append((f.key, _constant("EmailDetails")))
        elif f.name == "emailId":
            parts.append((f.key, _column(columns, "id", lambda v: encode_id("Email", v))))
        elif f.name in simple:
            parts.append((f.key, _column(columns, *simple[f.name])))
        elif f.name == "failure":
            parts.append((f.key, compile_failure(f.selections, fragments, columns)))
        elif f.name == "opens":
            parts.append((f.key, compile_opens(f.selections, fragments, columns)))
        elif f.name == "complaint":
            parts.append((f.key, compile_complaint(f.selections, fragments, columns)))
        elif f.name in ("historyAvailableUntil", "historyExpired"):
            columns.update(rules.HISTORY_COLUMNS)
            parts.append((f.key, _until if f.name == "historyAvailableUntil" else _expired))
        else:
            raise Unsupported(f.name)  # history: the reference loads it
    return _object(parts)


def _until(row: Any, lookups: Lookups) -> datetime | None:
    return dt(rules.history_available_until(row["sent_at"], lookups.history_days))


def _expired(row: Any, lookups: Lookups) -> bool:
    return rules.history_expired(row["sent_at"], row["history_purged_at"], lookups.history_days, lookups.now)


def compile_relation(selections: list[SelectionSetNode], fragments: Fragments, needs: Needs) -> Writer:
    if needs.relation is None:
        needs.relation = {"id"}
    names: Columns = {
        "id": ("id", lambda v: encode_id("Relation", v)),
        "externalId": ("external_id", None),
        "name": ("name", None),
    }
    # timeline is not a column: the reference pages it
    return _flat("Relation", selections, fragments, needs.relation, names, interfaces=("Node",))


def _relation_of(columns: set[str], selections: list[SelectionSetNode], fragments: Fragments, needs: Needs) -> Writer:
    columns.add("relation_id")
    relation = compile_relation(selections, fragments, needs)

    def write(row: Any, lookups: Lookups) -> Any:
        found = lookups.relations.get(row["relation_id"])
        return relation(found, lookups) if found is not None else None

    return write


def compile_email(selections: list[SelectionSetNode], fragments: Fragments, needs: Needs, columns: set[str]) -> Writer:
    simple = {
        "externalId": ("external_id", None),
        "subject": ("subject", None),
        "recipient": ("recipient", None),
        "sentAt": ("sent_at", dt),
        "emailStatus": ("status", _enum),
    }
    parts: list[tuple[str, Writer]] = []
    for f in _fields(selections, fragments, "Email", "Node", "EmailTracked"):
        if f.name == "__typename":
            parts.append((f.key, _constant("Email")))
        elif f.name == "id":
            parts.append((f.key, _column(columns, "id", lambda v: encode_id("Email", v))))
        elif f.name in simple:
            parts.append((f.key, _column(columns, *simple[f.name])))
        elif f.name == "details":
            parts.append((f.key, compile_details(f.selections, fragments, columns)))
        elif f.name == "relation":
            parts.append((f.key, _relation_of(columns, f.selections, fragments, needs)))
        elif f.name == "documents":
            if needs.document is None:
                needs.document = {"id"}
            document = compile_document(f.selections, fragments, needs, needs.document)

            def write_documents(row: Any, lk: Lookups, w: Writer = document) -> list[Any]:
                return [w(d, lk) for d in lk.documents_by_email.get(row["id"], ())]

            parts.append((f.key, write_documents))
        elif f.name == "invoice":
            columns.add("invoice_id")
            if needs.invoice is None:
                needs.invoice = {"id"}
            invoice = compile_invoice(f.selections, fragments, needs, needs.invoice)

            def write_invoice(row: Any, lk: Lookups, w: Writer = invoice) -> Any:
                found = lk.invoices.get(row["invoice_id"])
                return w(found, lk) if found is not None else None

            parts.append((f.key, write_invoice))
        else:
            raise Unsupported(f.name)
    return _object(parts)


def _item(
    kind: str,
    selections: list[SelectionSetNode],
    fragments: Fragments,
    needs: Needs,
    columns: set[str],
    simple: Columns,
) -> Writer:
    type_name = kind.capitalize()
    parts: list[tuple[str, Writer]] = []
    for f in _fields(selections, fragments, type_name, "Node", "EmailTracked"):
        if f.name == "__typename":
            parts.append((f.key, _constant(type_name)))
        elif f.name == "id":
            parts.append((f.key, _column(columns, "id", partial(encode_id, type_name))))
        elif f.name in simple:
            parts.append((f.key, _column(columns, *simple[f.name])))
        elif f.name == "relation":
            parts.append((f.key, _relation_of(columns, f.selections, fragments, needs)))
        elif f.name in ("emailStatus", "details"):
            columns.add("latest_email_id")
            if needs.latest_email is None:
                needs.latest_email = {"id", "sent_at"}
            latest = needs.latest_email
            inner = (
                _column(latest, "status", _enum)
                if f.name == "emailStatus"
                else compile_details(f.selections, fragments, latest)
            )

            def write_latest(row: Any, lk: Lookups, w: Writer = inner) -> Any:
                email = lk.latest_emails.get(row["latest_email_id"])
                return w(email, lk) if email is not None else None

            parts.append((f.key, write_latest))
        else:
            raise Unsupported(f.name)  # emails: the reference pages them
    return _object(parts)


def compile_document(
    selections: list[SelectionSetNode], fragments: Fragments, needs: Needs, columns: set[str]
) -> Writer:
    simple: Columns = {"externalId": ("external_id", None), "title": ("title", None)}
    return _item("document", selections, fragments, needs, columns, simple)


def compile_invoice(
    selections: list[SelectionSetNode], fragments: Fragments, needs: Needs, columns: set[str]
) -> Writer:
    simple: Columns = {
        "externalId": ("external_id", None),
        "number": ("number", None),
        "invoiceStatus": ("invoice_status", _enum),
    }
    return _item("invoice", selections, fragments, needs, columns, simple)
