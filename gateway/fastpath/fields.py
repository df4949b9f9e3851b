"""Collecting a selection set into response keys, as GraphQL's CollectFields does."""

from __future__ import annotations

from dataclasses import dataclass, field

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
    ValueNode,
)

__all__ = ["Collected", "Unsupported", "collect"]


class Unsupported(Exception):
    """The fast path cannot serve this document; the reference executor will.

    The message is the reason (a bounded label: a field name or a fixed phrase);
    `operation` names the operation it was found in, once known.
    """

    operation: str | None = None


@dataclass
class Collected:
    """One response key: the field's name, arguments and merged sub-selections."""

    key: str
    name: str
    arguments: dict[str, ValueNode]
    selections: list[SelectionSetNode] = field(default_factory=list)


def collect(
    selection_sets: list[SelectionSetNode],
    fragments: dict[str, FragmentDefinitionNode],
    type_names: frozenset[str],
) -> list[Collected]:
    """Fields of the given selection sets for an object whose type (and interfaces) are `type_names`."""
    found: dict[str, Collected] = {}

    def visit(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if selection.directives:
                raise Unsupported("directives")
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                arguments = {a.name.value: a.value for a in selection.arguments or ()}
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = Collected(key, selection.name.value, arguments)
                elif entry.name != selection.name.value or set(entry.arguments) != set(arguments):
                    raise Unsupported("fields merged with different arguments")
                if selection.selection_set is not None:
                    entry.selections.append(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or condition.name.value in type_names:
                    visit(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is None:
                    raise Unsupported("unknown fragment")
                if fragment.type_condition.name.value in type_names:
                    visit(fragment.selection_set)

    for selection_set in selection_sets:
        visit(selection_set)
    return list(found.values())
