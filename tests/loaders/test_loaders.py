"""The per-request loaders, on their own: one statement per batch, key order, tenancy.

Each loader is reached as a request reaches it (`Loaders.create` on a `RequestDb`),
against a real database holding two offices. The second office uses the same
external ids as the first, so a loader that forgot its tenant would find its rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import _empty_tables
from factories import T0, event, make_tenant, record, register
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import models
from gateway.db import RequestDb, SessionFactory, create_session_factory
from gateway.enums import EmailStatus
from gateway.loaders import Loaders
from gateway.repositories.pages import Page, PageRequest

SENT, DELIVERED, FAILED, OPENED = (
    EmailStatus.SENT,
    EmailStatus.DELIVERED,
    EmailStatus.DELIVERY_FAILED,
    EmailStatus.OPENED,
)

# e-mail n: (relation, documents, invoice, events after registration); a larger n is sent later.
OWN = {
    1: ("r1", ("d1", "d2"), "i1", (DELIVERED, OPENED)),
    2: ("r1", ("d2",), None, (FAILED,)),
    3: ("r2", (), "i2", ()),
    4: (None, ("d3", "d1"), "i1", (DELIVERED,)),
    5: ("r1", ("d1",), "i3", (DELIVERED,)),
    6: ("r3", ("d4",), None, (DELIVERED, FAILED, DELIVERED)),
}
# The other office: the same external ids (a different relation "r1", document "d1", ...).
FOREIGN = {
    11: ("r1", ("d1",), "i1", (DELIVERED,)),
    12: ("rb", ("db",), "ib", ()),
}
MISSING = 9_999_999  # no row has this id, or the ids just above it


ROW_MODELS = {"relations": models.Relation, "documents": models.Document, "invoices": models.Invoice}


@dataclass
class Office:
    tenant_id: int
    emails: dict[int, int] = field(default_factory=dict)  # n -> e-mail id
    relations: dict[str, int] = field(default_factory=dict)  # external id -> id
    documents: dict[str, int] = field(default_factory=dict)
    invoices: dict[str, int] = field(default_factory=dict)


@dataclass
class Data:
    own: Office
    foreign: Office

    def ids(self, kind: str) -> list[int]:
        """Own ids, the other office's ids and missing ids of one kind of row."""
        own, foreign = getattr(self.own, kind), getattr(self.foreign, kind)
        return [*own.values(), *foreign.values(), MISSING, MISSING + 1]


async def _office(factory: SessionFactory, name: str, emails: dict[int, Any]) -> Office:
    tenant = await make_tenant(factory, name=name)
    office = Office(tenant_id=tenant.id)
    for n, (relation, documents, invoice, statuses) in emails.items():
        email = await register(factory, tenant, n=n, relation=relation, documents=documents, invoice=invoice)
        office.emails[n] = email.id  # type: ignore[assignment]
        history = [event(status, T0.replace(hour=10 + i), f"{n}-{i}") for i, status in enumerate(statuses)]
        if history:
            await record(factory, email, *history)
    async with factory() as session:
        for kind, model in (
            ("relations", models.Relation),
            ("documents", models.Document),
            ("invoices", models.Invoice),
        ):
            found = await session.execute(select(model.id, model.external_id).where(model.tenant_id == tenant.id))  # type: ignore[call-overload]
            getattr(office, kind).update({external_id: row_id for row_id, external_id in found.all()})
    return office


@pytest.fixture(scope="module")
async def factory(engine: AsyncEngine) -> SessionFactory:
    """One data set for the module: every test here only reads, so it is written once.

    No test here may use `session_factory` (it empties the tables); pytest tears this
    fixture down when it leaves the module, so no other module's test sees or spoils it.
    """
    await _empty_tables(engine)
    return create_session_factory(engine)


@pytest.fixture(scope="module")
async def data(factory: SessionFactory) -> Data:
    return Data(own=await _office(factory, "Own office", OWN), foreign=await _office(factory, "Other office", FOREIGN))


@asynccontextmanager
async def request_loaders(factory: SessionFactory, tenant_id: int) -> AsyncIterator[Loaders]:
    """Fresh loaders on a request's database access, as `gateway.context` makes them."""
    db = RequestDb(factory)
    try:
        yield Loaders.create(db=db, tenant_id=tenant_id)
    finally:
        await db.close()


async def load_batch(factory: SessionFactory, tenant_id: int, name: str, keys: Sequence[Any]) -> list[Any]:
    """Every key through one loader of one request, all pending at once."""
    async with request_loaders(factory, tenant_id) as loaders:
        return await asyncio.gather(*(getattr(loaders, name).load(key) for key in keys))


def plain(value: Any) -> Any:
    """A loaded value as data, comparable across sessions (rows by their columns)."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, Page):
        return {"items": [plain(v) for v in value.items], "next": value.has_next, "previous": value.has_previous}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.model_dump()


PAGE = PageRequest(first=2)


EMPTY_PAGE = {"items": [], "next": False, "previous": False}
# Each loader: the kind of row its keys name, whether a key carries a page request, and
# what a foreign or missing key answers.
LOADERS: dict[str, tuple[str, bool, Any]] = {
    "email_by_id": ("emails", False, None),
    "events_by_email_id": ("emails", False, []),
    "relation_by_id": ("relations", False, None),
    "document_by_id": ("documents", False, None),
    "invoice_by_id": ("invoices", False, None),
    "documents_by_email_id": ("emails", False, []),
    "emails_by_document_id": ("documents", True, EMPTY_PAGE),
    "emails_by_invoice_id": ("invoices", True, EMPTY_PAGE),
    "emails_by_relation_id": ("relations", True, EMPTY_PAGE),
    "email_count_by_document_id": ("documents", False, 0),
    "email_count_by_invoice_id": ("invoices", False, 0),
}


def batch_keys(d: Data, name: str) -> list[Any]:
    """Every key of a loader's kind: own, foreign and missing."""
    kind, paged, _ = LOADERS[name]
    return [(i, PAGE) if paged else i for i in d.ids(kind)]


def is_own(d: Data, name: str, key: Any) -> bool:
    kind, paged, _ = LOADERS[name]
    return (key[0] if paged else key) in getattr(d.own, kind).values()


def test_every_loader_of_a_request_is_covered_here() -> None:
    # a loader added to Loaders without a line in LOADERS would go untested
    assert set(Loaders.__dataclass_fields__) == set(LOADERS)


def _expected(d: Data, name: str, key: Any) -> Any:
    """What the own office's data says a loader answers for one of its keys."""
    own = d.own
    n_of = {email_id: n for n, email_id in own.emails.items()}
    newest_first = sorted(OWN, reverse=True)

    def emails_where(match: Callable[[int], bool]) -> list[int]:
        return [own.emails[n] for n in newest_first if match(n)]

    def id_of(kind: str, external_id: str | None) -> int | None:
        return None if external_id is None else getattr(own, kind)[external_id]

    if name == "email_by_id":
        return {"id": key, "subject": f"Subject {n_of[key]}"}
    if name == "events_by_email_id":
        return list(OWN[n_of[key]][3])
    if name in {"relation_by_id", "document_by_id", "invoice_by_id"}:
        external_ids = {row_id: x for x, row_id in getattr(own, f"{name.split('_')[0]}s").items()}
        return {"id": key, "external_id": external_ids[key]}
    if name == "documents_by_email_id":
        return sorted(own.documents[x] for x in OWN[n_of[key]][1])
    parent_id, _ = key if isinstance(key, tuple) else (key, None)
    if name.endswith("document_id"):
        found = emails_where(lambda n: parent_id in {own.documents[x] for x in OWN[n][1]})
    elif name.endswith("invoice_id"):
        found = emails_where(lambda n: id_of("invoices", OWN[n][2]) == parent_id)
    else:
        found = emails_where(lambda n: id_of("relations", OWN[n][0]) == parent_id)
    if name.startswith("email_count"):
        return len(found)
    return {"ids": found[: PAGE.first], "next": len(found) > PAGE.first}


def _seen(name: str, value: Any) -> Any:
    """The part of a loaded value `_expected` describes."""
    if name == "email_by_id":
        return {"id": value.id, "subject": value.subject}
    if name == "events_by_email_id":
        # registration's SENT is not an event: the history holds what was recorded
        return [e.status for e in value]
    if name in {"relation_by_id", "document_by_id", "invoice_by_id"}:
        return {"id": value.id, "external_id": value.external_id}
    if name == "documents_by_email_id":
        return [doc.id for doc in value]
    if isinstance(value, Page):
        return {"ids": [e.id for e in value.items], "next": value.has_next}
    return value


@pytest.mark.parametrize("name", LOADERS)
async def test_a_batch_is_one_statement_whatever_its_size(factory, data, count_statements, name):  # type: ignore[no-untyped-def]
    # given: a batch of every key (own, foreign, missing), and a batch of one
    many = batch_keys(data, name)
    # when
    with count_statements:
        await load_batch(factory, data.own.tenant_id, name, many[:1])
        one = count_statements.count
        await load_batch(factory, data.own.tenant_id, name, many)
        both = count_statements.count
    # then
    assert (one, both - one) == (1, 1), count_statements.statements


@pytest.mark.parametrize("name", LOADERS)
async def test_results_come_in_key_order(factory, data, name):  # type: ignore[no-untyped-def]
    # given: the own office's keys, newest row first (the reverse of the rows' own order)
    own_keys = [k for k in batch_keys(data, name) if is_own(data, name, k)][::-1]
    # when
    loaded = await load_batch(factory, data.own.tenant_id, name, own_keys)
    # then: each answer sits at its key's place and says what the data says
    assert len(own_keys) >= 3
    assert [_seen(name, v) for v in loaded] == [_expected(data, name, k) for k in own_keys]


@pytest.mark.parametrize("name", LOADERS)
async def test_another_offices_ids_answer_like_missing_ones(factory, data, name):  # type: ignore[no-untyped-def]
    # given: the other office's keys and missing keys, mixed with the own office's
    nothing = LOADERS[name][2]
    every = batch_keys(data, name)
    # when
    loaded = dict(zip(every, await load_batch(factory, data.own.tenant_id, name, every), strict=True))
    # then: foreign and missing keys all answer "nothing", the own ones something
    foreign = [k for k in every if not is_own(data, name, k)]
    assert len(foreign) >= 3
    assert [plain(loaded[k]) for k in foreign] == [nothing] * len(foreign)
    assert any(plain(loaded[k]) != nothing for k in every if is_own(data, name, k))


def _keys(d: Data) -> st.SearchStrategy[tuple[str, list[Any]]]:
    """A loader and a batch of its keys: any mix of own, foreign and missing, repeats included."""

    def batch(name: str) -> st.SearchStrategy[tuple[str, list[Any]]]:
        kind, paged, _ = LOADERS[name]
        ids = st.sampled_from(d.ids(kind))
        # page loaders: several page requests may share one batch
        pages = st.sampled_from([PageRequest(first=1), PAGE, PageRequest(first=10)])
        key = st.tuples(ids, pages) if paged else ids
        return st.tuples(st.just(name), st.lists(key, min_size=1, max_size=12))

    return st.sampled_from(sorted(LOADERS)).flatmap(batch)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
async def test_a_batch_answers_as_loading_each_key_alone(factory, data, hypothesis_data):  # type: ignore[no-untyped-def]
    # given: a loader and a batch of keys
    name, keys = hypothesis_data.draw(_keys(data))
    # when: the batch in one request, and each key in a request of its own
    batched = await load_batch(factory, data.own.tenant_id, name, keys)
    alone = [(await load_batch(factory, data.own.tenant_id, name, [key]))[0] for key in keys]
    # then
    assert [plain(v) for v in batched] == [plain(v) for v in alone]
