"""Fuzz the GraphQL API of a real server, on SQLite and on PostgreSQL.

What is fuzzed: a gateway served by uvicorn on a loopback port (`create_app`, the
demo data set, a read-write key) gets, over real HTTP,
- operations that hypothesis-graphql builds from the schema, queries and mutations
  with literal arguments: valid ones (ids drawn from the tenant's own rows, another
  tenant's rows and garbage; any `Int`, so `first` far past the page size), and
  invalid ones (its negative mode: wrong types, missing arguments, unknown enum values);
- the screens' and mutations' operations with hostile variables, well typed (NUL
  bytes, huge lists, any 32-bit `first`, foreign and garbage ids, bad cursors,
  extreme timestamps, nested connections at any page size) or not (wrong JSON
  types, deep nesting, missing and unknown fields, odd request bodies);
- hostile documents: several operations without `operationName`, subscriptions
  over HTTP, deeply nested literals, NUL bytes, random text.

The property: no answer is a 5xx, and no answer carries "Unexpected error.": every
error is an expected one, with its `extensions.code` (a 4xx that is no GraphQL
answer says what is wrong by its status). A document with several operations and
no `operationName` must be refused. The runs are bounded and derandomized, so CI
sees the same examples every time; a failure prints the request body and the answer.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import graphql
import httpx
import pytest
from fuzz_helpers import Gateway, assert_expected_answer, served_gateway
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from gateway.ids import encode_id
from gateway.schema import sdl

SDL = sdl()
STATUSES = ["SENT", "DELIVERED", "DELIVERY_FAILED", "OPENED"]
INVOICE_STATUSES = ["DRAFT", "ISSUED", "PAID", "CANCELLED"]
FAILURE_CATEGORIES = [
    "HARD_BOUNCE",
    "SOFT_BOUNCE",
    "BLOCKED",
    "INVALID_RECIPIENT",
    "SPAM_COMPLAINT",
    "DROPPED",
    "OTHER",
]
TYPE_NAMES = [
    "Email",
    "EmailInteraction",
    "Relation",
    "Document",
    "Invoice",
    "EmailEvent",
    "Tenant",
    "",
]

# One budget for every test here: fixed examples, no deadline (a loaded 2-core CI
# machine is slow, never wrong), the same examples on every run. The served
# gateway is shared by all examples on purpose, hence the fixture health check.
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

EMAILS = """
query Emails($filter: EmailFilter, $first: Int, $after: String) {
  emails(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id emailStatus subject relation { id name } documents { id title } invoice { id number }
      details { status failure { category } opens { count } history { id status } }
    } }
  }
}
"""
DOCUMENTS = """
query Documents($filter: DocumentFilter, $first: Int, $after: String) {
  documents(filter: $filter, first: $first, after: $after) {
    totalCount
    edges { cursor node { id title emailStatus relation { id } emails(first: $first) { totalCount } } }
  }
}
"""
INVOICES = """
query Invoices($filter: InvoiceFilter, $first: Int, $after: String) {
  invoices(filter: $filter, first: $first, after: $after) {
    totalCount edges { cursor node { id number invoiceStatus emailStatus details { status } } }
  }
}
"""
TIMELINE = """
query Timeline($relationId: ID!, $first: Int, $after: String) {
  relationTimeline(relationId: $relationId, first: $first, after: $after) {
    relation { id name }
    pageInfo { endCursor }
    edges { cursor node { ... on EmailInteraction { id emailStatus } } }
  }
}
"""
NODE = """
query Node($id: ID!) {
  node(id: $id) {
    id ... on Email { subject } ... on Relation { name } ... on Document { title } ... on Invoice { number }
  }
}
"""
EMAIL = "query Email($id: ID!) { email(id: $id) { id subject emailStatus details { history { id } } } }"
STATS = "query Stats($filter: EmailStatsFilter) { emailStats(filter: $filter) { total byStatus { status count } } }"
REGISTER = """
mutation Register($input: RegisterEmailInput!) {
  registerEmail(input: $input) {
    email { id emailStatus documents { id } invoice { id } relation { id } }
    trackingPixelUrl
  }
}
"""
RECORD = "mutation Record($input: RecordEmailEventInput!) { recordEmailEvent(input: $input) { id emailStatus } }"
# Connections nested to the deepest query accepted (12), each at a page size the
# variables choose: the query cost is their product.
NESTED = """
query Nested($first: Int, $inner: Int) {
  emails(first: $first) { edges { node { documents { emails(first: $inner) { edges { node {
    relation { timeline(first: $inner) { edges { node { ... on EmailInteraction { id } } } } }
  } } } } } } }
}
"""
# Several operations in one document: the request must name the one to run.
TWO_OPERATIONS = """
query First { emails(first: 1) { totalCount } }
query Second { emailStats { total } }
"""
QUERY_AND_MUTATION = """
mutation Register {
  registerEmail(input: {externalId: "two-ops", subject: "s", recipient: "a@example.com"}) { trackingPixelUrl }
}
query Stats { emailStats { total } }
"""
SUBSCRIPTION = "subscription Live { emailStatusChanged { cursor status } }"


@pytest.fixture(scope="module")
def gateway(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with served_gateway(backend, tmp_path_factory.mktemp("fuzz")) as served:
        yield served


# An answer slower than this fails the example (httpx raises): the gateway bounds its
# work per request, and no fuzzed request is more than a few pages of demo data.
ANSWER_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=ANSWER_TIMEOUT) as client:
        yield client


# --- values --------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Deep:
    """A JSON value nested `depth` times: written as text, as no JSON encoder nests that deep."""

    def __init__(self, depth: int, opening: str) -> None:
        self.depth, self.opening = depth, opening

    def __repr__(self) -> str:
        return f"Deep({self.depth}, {self.opening!r})"

    def json(self) -> str:
        if self.opening == "[":
            return "[" * self.depth + "]" * self.depth
        return '{"a":' * self.depth + "null" + "}" * self.depth


texts = st.one_of(
    st.text(min_size=1, max_size=30),  # any code point but surrogates, NUL included
    st.text(alphabet="\x00\x01\u200b\ufeff'\"\\%_;-", min_size=1, max_size=10),
    st.sampled_from(["", "x" * 10_000, "\x00" * 100, "' OR 1=1 --", "%", "_", "\\", "\U0010ffff"]),
)
short = st.one_of(st.text(max_size=8), st.integers(), st.none())
big_ints = st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63) - 1, 10**30])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    big_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
# Any JSON value: the wrong type wherever a variable wants another.
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=8,
)
deep = st.builds(Deep, st.sampled_from([64, 500, 1100, 5000]), st.sampled_from("[{"))


def huge_list(item: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """One small value repeated up to 40,000 times: past the databases' 32,767 bound parameters.

    Only ever of flat items: a huge list of values that hold huge lists would
    multiply to gigabytes.
    """
    return st.tuples(item, st.sampled_from([1_000, 40_000])).map(lambda pair: [pair[0]] * pair[1])


offsets = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=14)),
        timezone(-timedelta(hours=12)),
        timezone(timedelta(minutes=-1)),
    ]
)
EXTREME_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
]
# Mostly around the demo data's dates, so that filters and cursors select rows;
# sometimes anywhere in datetime's range, or at its very ends.
_recent = st.datetimes(  # hypothesis takes naive bounds and adds the zone itself
    min_value=datetime(2026, 1, 1),
    max_value=datetime(2027, 1, 1),
    timezones=offsets,  # noqa: DTZ001
)
datetimes = st.one_of(
    _recent.map(lambda d: d.isoformat()),
    _recent.map(lambda d: d.isoformat()),
    st.datetimes(timezones=offsets).map(lambda d: d.isoformat()),
    st.sampled_from(EXTREME_TIMES),
)
bad_datetimes = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),  # naive: no offset
    st.sampled_from(
        [
            "",
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-11-20T09:00:00+99:00",
            "2026-11-20T09:00:00.123456789Z",
            "2026-11-20T09:00:00Z\x00",
        ]
    ),
    texts,
)
# Mostly a page size the gateway takes, so that the other variables get used.
int32 = st.one_of(st.integers(0, 100), st.integers(0, 100), st.integers(min_value=-(2**31), max_value=2**31 - 1))


def ids(gateway: Gateway, type_name: str | None = None) -> st.SearchStrategy[str]:
    """Own ids (of `type_name` first), foreign ids (another tenant's rows), and garbage."""
    shaped = st.builds(encode_id, st.sampled_from(TYPE_NAMES), st.one_of(st.integers(), big_ints))
    garbage = st.one_of(
        shaped,
        texts,
        st.binary(max_size=40).map(_b64),
        st.sampled_from(
            [
                "",
                "=",
                "%%%",
                _b64(b"Email:"),
                _b64(b"Email:1.5"),
                _b64(b"Email:\x00"),
                _b64(b"\xff\xfe:1"),
            ]
        ),
    )
    real = [gateway.own.all_ids, gateway.foreign.all_ids]
    if type_name is not None:  # then ids of other types are wrong ids too
        real = [gateway.own.ids[type_name], gateway.foreign.ids[type_name], gateway.own.all_ids]
    return st.one_of(*map(st.sampled_from, real), garbage)


def _reshaped(cursor: str, time: object, pk: object) -> str:
    """A real cursor with its time and key replaced: the right kind, the wrong values.

    (The cursor's format, base64 of a JSON list, is the gateway's; any other format
    leaves the cursor as it is.)
    """
    try:
        kind = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[0]
    except (ValueError, TypeError, IndexError, KeyError):
        return cursor
    return _b64(json.dumps([kind, time, pk]).encode())


def cursors(gateway: Gateway) -> st.SearchStrategy[str | None]:
    """Real cursors of every connection (wrong kinds included), foreign ones, altered ones, and junk."""
    real = st.sampled_from(gateway.own.cursors + gateway.foreign.cursors)
    junk = st.one_of(any_json, texts, st.binary(max_size=40).map(_b64)).map(
        lambda value: _b64(json.dumps(value).encode()) if not isinstance(value, str) else value
    )
    reshaped = st.builds(
        _reshaped,
        real,
        st.one_of(st.sampled_from(EXTREME_TIMES), datetimes, st.none(), bad_datetimes),
        st.one_of(big_ints, st.integers(), st.floats(allow_nan=False), texts, st.booleans(), st.none()),
    )
    altered = real.flatmap(lambda c: st.sampled_from([c[:-1], c + "A", c[::-1], c.upper(), c + "\x00"]))
    # no cursor or a real one half the time, so that the other variables get used
    return st.one_of(st.none(), real, st.one_of(altered, reshaped, junk))


class Variables:
    """Variables for the screens' and mutations' operations, hostile in one of two ways.

    Well typed (`wrong_types=False`): every value has its declared type and is nasty
    within it (NUL bytes, huge lists of valid values, foreign and garbage ids, bad
    cursors, any 32-bit `first`, extreme timestamps): what reaches the resolvers.
    Wrong types: any value may also be any JSON, deep nesting or a huge list of junk,
    input objects may lack required fields or carry unknown ones: what the coercion
    of variables must refuse. Two modes, as mixing both in every value would make a
    request that reaches a resolver rare.
    """

    def __init__(self, gateway: Gateway, *, wrong_types: bool) -> None:
        self.gateway = gateway
        self.wrong = wrong_types

    def hostile(
        self, typed: st.SearchStrategy[Any], junk: st.SearchStrategy[Any] = st.nothing()
    ) -> st.SearchStrategy[Any]:
        if not self.wrong:
            return typed
        return st.one_of(typed, junk, any_json, deep, huge_list(short))

    def list_of(self, item: st.SearchStrategy[Any], flat: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """A few items, or thousands of `flat` (small) ones."""
        return st.one_of(self.hostile(st.lists(item, max_size=5)), huge_list(flat))

    def inputs(
        self, fields: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = ()
    ) -> st.SearchStrategy[Any]:
        """An input object; with wrong types, any field may be missing and an unknown one may come."""
        values = {name: self.hostile(value) for name, value in fields.items()}
        if self.wrong:
            return self.hostile(st.fixed_dictionaries({}, optional={**values, "unknownField": any_json}))
        return st.fixed_dictionaries(
            {name: values[name] for name in required},
            optional={name: value for name, value in values.items() if name not in required},
        )

    def enums(self, values: list[str]) -> st.SearchStrategy[Any]:
        return self.list_of(self.hostile(st.sampled_from(values), texts), st.sampled_from(values))

    def operations(self) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        """(document, variables) pairs for the screens and the mutations."""
        an_id = self.hostile(ids(self.gateway))
        email_id = self.hostile(ids(self.gateway, "Email"))
        when = self.hostile(datetimes, bad_datetimes)
        page = {
            "first": self.hostile(st.none() | int32, big_ints),
            "after": self.hostile(cursors(self.gateway)),
        }
        relation = {"relationId": self.hostile(ids(self.gateway, "Relation"))}
        times = {"sentAfter": when, "sentBefore": when}

        def variables(
            values: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = ()
        ) -> st.SearchStrategy[dict[str, Any]]:
            """The operation's variables; with wrong types, the required ones may be missing too."""
            if self.wrong:
                required = ()
            return st.fixed_dictionaries(
                {name: values[name] for name in required},
                optional={name: value for name, value in values.items() if name not in required},
            )

        register = self.inputs(
            {
                "externalId": texts,
                "subject": texts,
                "recipient": st.one_of(st.emails(), st.emails(), texts),
                "sentAt": when,
                "providerMessageId": texts,
                "relation": self.inputs({"externalId": texts, "name": texts}, ("externalId", "name")),
                "documents": self.list_of(
                    self.inputs({"externalId": texts, "title": texts}, ("externalId", "title")),
                    st.fixed_dictionaries({"externalId": st.text(max_size=8), "title": st.text(max_size=8)}),
                ),
                "invoice": self.inputs(
                    {
                        "externalId": texts,
                        "number": texts,
                        "invoiceStatus": self.hostile(st.sampled_from(INVOICE_STATUSES), texts),
                    },
                    ("externalId", "number"),
                ),
            },
            ("externalId", "subject", "recipient"),
        )
        record = self.inputs(
            {
                "emailId": email_id,
                "status": self.hostile(st.sampled_from(STATUSES), texts),
                "occurredAt": when,
                "eventKey": texts,
                "description": texts,
                "failureCategory": self.hostile(st.sampled_from(FAILURE_CATEGORIES), texts),
                "smtpCode": self.hostile(int32, big_ints),
            },
            ("emailId", "status", "occurredAt", "eventKey"),
        )
        statuses = self.enums(STATUSES)
        return st.one_of(
            st.tuples(
                st.just(EMAILS),
                variables(
                    {
                        "filter": self.inputs({"statuses": statuses, **relation, **times, "search": texts}),
                        **page,
                    }
                ),
            ),
            st.tuples(
                st.just(DOCUMENTS),
                variables({"filter": self.inputs({"emailStatuses": statuses, **relation}), **page}),
            ),
            st.tuples(
                st.just(INVOICES),
                variables(
                    {
                        "filter": self.inputs(
                            {
                                "emailStatuses": statuses,
                                "invoiceStatuses": self.enums(INVOICE_STATUSES),
                                **relation,
                            }
                        ),
                        **page,
                    }
                ),
            ),
            st.tuples(st.just(TIMELINE), variables({**relation, **page}, ("relationId",))),
            st.tuples(st.just(NODE), variables({"id": an_id}, ("id",))),
            st.tuples(st.just(EMAIL), variables({"id": email_id}, ("id",))),
            st.tuples(st.just(STATS), variables({"filter": self.inputs({**relation, **times})})),
            st.tuples(st.just(REGISTER), variables({"input": register}, ("input",))),
            st.tuples(st.just(RECORD), variables({"input": record}, ("input",))),
            st.tuples(st.just(NESTED), variables({"first": page["first"], "inner": page["first"]})),
        )


def literals(gateway: Gateway) -> dict[str, st.SearchStrategy[Any]]:
    """Literals for hypothesis-graphql: ids as `ids` draws them, and valid timestamps."""
    return {
        "ID": ids(gateway).map(nodes.String),
        "DateTime": datetimes.map(nodes.String),
    }


def _literal_nesting(depth: int, opening: str) -> str:
    if opening == "[":
        return "{ emails(filter: {statuses: " + "[" * depth + "SENT" + "]" * depth + "}) { totalCount } }"
    return "{ emails(filter: " + "{search: " * depth + '"x"' + "}" * depth + ") { totalCount } }"


# Documents whose trouble is the document itself, not its variables.
documents = st.one_of(
    st.tuples(
        st.just(TWO_OPERATIONS),
        st.sampled_from([None, "First", "Second", "Third", "", 1, ["First"]]),
    ),
    st.tuples(st.just(QUERY_AND_MUTATION), st.sampled_from([None, "Stats", "Register"])),
    st.tuples(st.just(SUBSCRIPTION), st.sampled_from([None, "Live"])),
    st.tuples(
        st.builds(_literal_nesting, st.sampled_from([8, 200, 900]), st.sampled_from("[{")),
        st.none(),
    ),
    st.tuples(st.text(alphabet=string.printable + '\x00{}()[]:$@!"', max_size=60), st.none()),
    st.tuples(st.just('{ emails(filter: {search: "\\u0000"}) { totalCount } }'), st.none()),
    st.tuples(st.just('{ emails(filter: {search: "\x00"}) { totalCount } }'), st.none()),
)


def encode(payload: dict[str, Any]) -> bytes:
    """The JSON request body; `Deep` values go in as raw text."""
    raw: dict[str, str] = {}

    def default(value: object) -> str:
        if isinstance(value, Deep):
            marker = f"@deep{len(raw)}@"
            raw[marker] = value.json()
            return marker
        raise TypeError(f"cannot encode {value!r}")

    text = json.dumps(payload, default=default, allow_nan=False)
    for marker, nested in raw.items():
        text = text.replace(json.dumps(marker), nested)
    return text.encode()


def body_shapes(query: str, variables: dict[str, Any], name: Any = None) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly a well-formed request; sometimes variables or operationName of the wrong kind."""
    well_formed = {"query": query, "variables": variables, "operationName": name}
    return st.one_of(
        st.just(well_formed),
        st.just(well_formed),
        st.just(well_formed),
        st.builds(lambda v: {**well_formed, "variables": v}, st.one_of(any_json, deep)),
        st.builds(lambda n: {**well_formed, "operationName": n}, any_json),
    )


def post(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    note(f"request body: {body!r:.2000}")
    return http.post("/graphql", content=encode(body), headers={"Content-Type": "application/json"})


# --- the tests -----------------------------------------------------------------------


# Without the shrink phase: shrinking hypothesis-graphql's documents takes minutes
# per failure, and the failing document is printed whole (note) with the answer.
@settings(FUZZ, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.explain])
@given(data=st.data())
def test_generated_operations_get_expected_answers(gateway: Gateway, http: httpx.Client, data: st.DataObject) -> None:
    # given: a valid query or mutation built from the schema, ids drawn from real and garbage ones
    operation = data.draw(from_schema(SDL, custom_scalars=literals(gateway)), label="operation")
    # when
    response = post(http, {"query": operation})
    # then
    assert_expected_answer(response)


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_invalid_operations_get_expected_answers(gateway: Gateway, http: httpx.Client, data: st.DataObject) -> None:
    # given: an operation with one violation of the schema
    operation = data.draw(from_schema(SDL, mode=Mode.NEGATIVE, custom_scalars=literals(gateway)), label="operation")
    # when
    response = post(http, {"query": operation})
    # then
    assert_expected_answer(response)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_well_typed_hostile_variables_get_expected_answers(
    gateway: Gateway, http: httpx.Client, data: st.DataObject
) -> None:
    # given: a screen or mutation whose variables have their types, with nasty values
    query, variables = data.draw(Variables(gateway, wrong_types=False).operations(), label="operation")
    # when
    response = post(http, {"query": query, "variables": variables})
    # then
    assert_expected_answer(response)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_wrongly_typed_variables_and_odd_bodies_get_expected_answers(
    gateway: Gateway, http: httpx.Client, data: st.DataObject
) -> None:
    # given: a screen or mutation with variables of any type, in a body that may be odd too
    query, variables = data.draw(Variables(gateway, wrong_types=True).operations(), label="operation")
    body = data.draw(body_shapes(query, variables), label="body")
    # when
    response = post(http, body)
    # then
    assert_expected_answer(response)


def operation_count(query: str) -> int:
    try:
        document = graphql.parse(query)
    except graphql.GraphQLError:
        return 0
    return sum(isinstance(d, graphql.OperationDefinitionNode) for d in document.definitions)


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_hostile_documents_get_expected_answers(http: httpx.Client, data: st.DataObject) -> None:
    # given: a document whose trouble is in itself
    query, name = data.draw(documents, label="document")
    body = data.draw(body_shapes(query, {}, name), label="body")
    # when
    response = post(http, body)
    # then
    assert_expected_answer(response)
    if operation_count(query) > 1 and body["operationName"] is None:
        # the specification's GetOperation: several operations and no name is a request error
        answer = response.json() if response.headers.get("content-type") == "application/json" else {}
        assert response.status_code >= 400 or (answer.get("errors") and answer.get("data") is None), (
            f"ran an operation the request did not name; HTTP {response.status_code}: {response.text[:600]}"
        )
