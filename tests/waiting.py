"""Waiting for something to happen, with a deadline: never for a fixed time.

Where the test can await the event itself (an asyncio.Event, a queue, a server's
answer) it does. These helpers are for state that lives elsewhere (another
process, a server, the database), which can only be asked: they ask until the
answer is yes and return at once, and fail naming what never happened. The
deadline is generous, as the suite runs on loaded 2-core machines; it is never a
performance claim.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

PATIENCE = 60.0  # seconds
EVERY = 0.01  # seconds between two questions


async def eventually(
    check: Callable[[], T | Awaitable[T]], *, what: str, within: float = PATIENCE, every: float = EVERY
) -> T:
    """Ask `check()` (plain or async) until it answers something truthy; return that answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        await asyncio.sleep(every)


def eventually_blocking(check: Callable[[], T], *, what: str, within: float = PATIENCE, every: float = EVERY) -> T:
    """`eventually` for code without an event loop (a fixture, a thread)."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        time.sleep(every)
