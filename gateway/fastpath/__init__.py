"""The compiled fast path for the screens' hot queries.

Strawberry's executor is the reference: it answers every request it is given.
Once it has answered a query document successfully, that document is compiled
here into a plan: which columns and lookups the selection needs, and writers that
turn plain database rows straight into the response's JSON, with no per-field
resolver dispatch. Later requests with the same document run the plan instead:
a few set-based SQL statements and one orjson dump. Anything the plan cannot
serve exactly as the reference would (a field outside the supported set, a
directive, bad arguments, any error) falls back to the reference, which then
answers, errors included. Differential tests hold the two to the same bytes.
"""

from .plans import FastPath

__all__ = ["FastPath"]
