"""The compiled fast path for the screens' hot queries.

Strawberry's executor is the reference: it answers every request it is given.
A query document is compiled here, from the document and the schema, the first
time it is seen: which columns and lookups the selection needs (the
repositories' statements), and writers that turn plain database rows straight
into the response's JSON, with no per-field resolver dispatch (the field rules
of `gateway.rules`). Requests with the document run the plan instead: a few
set-based SQL statements and one orjson dump. A document it cannot serve is
logged once and counted by reason (`gateway_fast_path_unsupported`). Anything the plan cannot
serve exactly as the reference would (a field outside the supported set, a
directive, bad arguments, any error) falls back to the reference, which then
answers, errors included. Differential tests hold the two to the same bytes.
"""

from .plans import FastPath

__all__ = ["FastPath"]
