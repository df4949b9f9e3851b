"""The request limits that need the variables: query cost, input text and list sizes, time.

Depth, aliases and tokens are checked on the document alone (validation rules,
cached with it). What depends on the variables is checked here, once the
document is valid and before anything runs:

- **Query cost**: the number of objects a request may return, as GitHub's node
  limit counts it. Every connection (a field with a `first` argument) costs its
  page size (`first` or `last`) times the page sizes of the connections it is nested in, so
  `emails(first: 100) { edges { node { invoice { emails(first: 100) ... } } } }`
  costs 100 + 100 × 100. Page sizes over the maximum count as the maximum (the
  page-size error is the clearer one); an omitted `first` counts its default.
- **Input text**: PostgreSQL cannot store U+0000 in text. A string input holding
  one is refused, naming the variable or argument and the path inside it.
- **List sizes**: a list input (statuses, ids, document references) is a set:
  identical entries in a variable are folded into one, and more than
  `max_list_size` distinct entries are refused. A list of 40,000 ids would
  otherwise reach the database driver, whose parameter limit it overflows.
  A positional list (`nodes(ids:)`, answered entry by entry in order) is not
  a set: it is counted entry by entry and never folded.
- **Time**: a query runs within `max_execution_seconds`; past it the request is
  cancelled and answers an error. Database work already sent runs to its end
  (see `gateway.db.RequestDb`), so nothing is left half-done. Mutations are not
  cut short: a cancelled commit could not say whether it happened.

All errors are `BAD_USER_INPUT` (or `EXECUTION_TIMEOUT`) with a message that says
the value and the limit; none reaches the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
    print_ast,
)
from strawberry.extensions import SchemaExtension

from gateway.repositories.pages import DEFAULT_PAGE_SIZE

from .core import graphql_schema_of

__all__ = ["POSITIONAL_ARGUMENTS", "Limits", "RequestLimits", "check_request", "query_cost"]

_NUL = "\x00"

# (field, argument) whose list answers entry by entry, in order: `nodes(ids:)`.
POSITIONAL_ARGUMENTS = frozenset({("nodes", "ids")})


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one gateway (from its settings)."""

    max_query_cost: int
    max_page_size: int
    max_list_size: int
    max_execution_seconds: float


def _error(message: str, code: str = "BAD_USER_INPUT") -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


# --- cost ---------------------------------------------------------------------


class _Cost:
    """The unit cost of selection sets; a fragment's is computed once however often it is spread.

    Cost is linear in the multiplier (every term is a product of page sizes), so
    a selection set's cost under a parent page of n objects is n times its unit
    cost: memoizing the unit cost per fragment keeps the walk linear in the size
    of the document, even for fragments spread inside fragments.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        max_page_size: int,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.max_page_size = max_page_size
        self.memo: dict[str, int] = {}

    def unit(self, selection_set: SelectionSetNode | None, parent: Any) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.unit(selection.selection_set, target)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value)
        return total

    def _fragment(self, name: str) -> int:
        if name not in self.memo:
            fragment = self.fragments.get(name)
            self.memo[name] = 0  # validation refuses cycles; this only guards the walk
            if fragment is not None:
                target = self.schema.get_type(fragment.type_condition.name.value)
                self.memo[name] = self.unit(fragment.selection_set, target)
        return self.memo[name]

    def _field(self, node: FieldNode, parent: Any) -> int:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(node.name.value)
        if definition is None:  # __typename and introspection fields
            return 0
        child = get_named_type(definition.type)
        inner = self.unit(node.selection_set, child)
        if "first" not in definition.args:
            return inner
        size = self._page_size(node, definition.args["first"].default_value)
        return size + size * inner

    def _page_size(self, node: FieldNode, default: Any) -> int:
        # A page is `first` rows forwards or `last` rows backwards; given both (which
        # execution refuses), the larger counts. Neither: the default page size.
        if not isinstance(default, int) or isinstance(default, bool):
            default = DEFAULT_PAGE_SIZE
        sizes = [
            _literal(argument.value, self.variables, None)
            for argument in node.arguments or ()
            if argument.name.value in ("first", "last")
        ]
        given = [v if isinstance(v, int) and not isinstance(v, bool) else default for v in sizes if v is not None]
        return max(0, min(max(given, default=default), self.max_page_size))


def _literal(node: ValueNode, variables: Mapping[str, Any], default: Any) -> Any:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value, default)
    if isinstance(node, IntValueNode):
        return int(node.value)
    return default


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
    *,
    max_page_size: int,
) -> int:
    """How many objects `operation` may return with these variables (see the module doc)."""
    root = schema.get_root_type(operation.operation)
    walk = _Cost(schema, _fragments(document), variables or {}, max_page_size)
    return walk.unit(operation.selection_set, root)


# --- inputs -------------------------------------------------------------------


def _fold(values: list[Any]) -> list[Any]:
    """Identical scalar entries folded into one, first occurrences in order."""
    if not all(isinstance(v, str | int | float | bool) for v in values):
        return values
    return list(dict.fromkeys(values))


def _check_value(value: Any, where: str, path: str, max_list_size: int, *, positional: bool = False) -> Any:
    """The value with its lists folded; raises on a NUL character or an oversized list.

    A positional list (its answer is a list in the same order) is counted entry
    by entry and never folded: folding would shift the answers' positions.
    """
    if isinstance(value, str):
        if _NUL in value:
            raise _error(f"{where} at {path!r} contains a NUL character (U+0000), which cannot be stored")
        return value
    if isinstance(value, list) and positional:
        if len(value) > max_list_size:
            raise _error(f"{where} at {path!r} has {len(value)} entries; at most {max_list_size} are accepted")
        return [_check_value(item, where, f"{path}[{i}]", max_list_size) for i, item in enumerate(value)]
    if isinstance(value, list):
        folded = _fold(value)
        if len(folded) > max_list_size:
            raise _error(
                f"{where} at {path!r} has {len(folded)} distinct entries; at most {max_list_size} are accepted"
            )
        return [_check_value(item, where, f"{path}[{i}]", max_list_size) for i, item in enumerate(folded)]
    if isinstance(value, dict):
        return {key: _check_value(item, where, f"{path}.{key}", max_list_size) for key, item in value.items()}
    return value


def _check_literal(node: ValueNode, where: str, path: str, max_list_size: int, *, positional: bool = False) -> None:
    if isinstance(node, StringValueNode):
        if _NUL in node.value:
            raise _error(f"{where} at {path!r} contains a NUL character (U+0000), which cannot be stored")
    elif isinstance(node, ListValueNode) and positional and len(node.values) > max_list_size:
        raise _error(f"{where} at {path!r} has {len(node.values)} entries; at most {max_list_size} are accepted")
    elif isinstance(node, ListValueNode):
        distinct = {print_ast(v) for v in node.values} if len(node.values) > max_list_size else set()
        if len(distinct) > max_list_size:
            raise _error(
                f"{where} at {path!r} has {len(distinct)} distinct entries; at most {max_list_size} are accepted"
            )
        for i, item in enumerate(node.values):
            _check_literal(item, where, f"{path}[{i}]", max_list_size)
    elif isinstance(node, ObjectValueNode):
        for field in node.fields:
            _check_literal(field.value, where, f"{path}.{field.name.value}", max_list_size)


def _arguments(document: DocumentNode) -> Iterator[tuple[FieldNode, ArgumentNode]]:
    """Every (field, argument) pair in the document, fragments included."""
    stack: list[Any] = list(document.definitions)
    while stack:
        node = stack.pop()
        if isinstance(node, FieldNode):
            for argument in node.arguments or ():
                yield node, argument
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)


def check_request(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: dict[str, Any] | None,
    limits: Limits,
) -> None:
    """Refuse what this request may not do; fold duplicate list entries in `variables` in place.

    Raises a GraphQLError (`BAD_USER_INPUT`) naming the offending value and the limit.
    """
    positional = {
        argument.value.name.value
        for field, argument in _arguments(document)
        if (field.name.value, argument.name.value) in POSITIONAL_ARGUMENTS and isinstance(argument.value, VariableNode)
    }
    given = variables if variables is not None else {}
    for name in list(given):
        given[name] = _check_value(
            given[name], f'Variable "${name}"', name, limits.max_list_size, positional=name in positional
        )
    for field, argument in _arguments(document):
        _check_literal(
            argument.value,
            f'Argument "{argument.name.value}" of field "{field.name.value}"',
            argument.name.value,
            limits.max_list_size,
            positional=(field.name.value, argument.name.value) in POSITIONAL_ARGUMENTS,
        )
    cost = query_cost(schema, document, operation, variables, max_page_size=limits.max_page_size)
    if cost > limits.max_query_cost:
        raise _error(
            f"query cost {cost} exceeds the limit of {limits.max_query_cost}: the page sizes (`first`) of "
            "nested connections multiply; ask for smaller pages or fewer nested connections"
        )


class RequestLimits(SchemaExtension):
    """Applies `check_request` and the time budget to every operation Strawberry executes."""

    def __init__(self, *, limits: Limits) -> None:
        self.limits = limits

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        operation = get_operation_ast(document, context.operation_name) if document is not None else None
        if document is None or operation is None:
            # graphql-core reports a missing or ambiguous operation itself.
            yield
            return
        # Strawberry's schema has no public accessor for the graphql-core schema it wraps.
        check_request(graphql_schema_of(context.schema), document, operation, context.variables, self.limits)
        if operation.operation is not OperationType.QUERY:
            yield
            return
        try:
            async with asyncio.timeout(self.limits.max_execution_seconds):
                yield
        except TimeoutError:
            raise _error(
                f"the query ran longer than its budget of {self.limits.max_execution_seconds:g} s and was stopped",
                "EXECUTION_TIMEOUT",
            ) from None
