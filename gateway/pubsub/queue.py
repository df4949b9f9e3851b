"""The bounded queue of one slow reader: the broker's subscriptions and the feed's listeners share it.

A reader that does not keep up is cut off instead of growing memory: when an item
arrives and `size` items already wait, the waiting items are dropped at once and
the reader's next read raises the queue's overflow error. Draining them first
would only make a reader that is already too slow spend longer before resuming
from its cursor, while keeping the memory the bound is there to cap.

A deque and one future at a time, rather than an asyncio.Queue: an idle reader
costs a few hundred bytes, and a put wakes at most one task.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, Self, TypeVar

__all__ = ["BoundedQueue"]

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """At most `size` items for one reader; `overflow()` is what it raises once cut off.

    Iteration ends (`StopAsyncIteration`) once the queue is closed and drained.
    """

    __slots__ = ("_closed", "_items", "_overflow", "_overflowed", "_size", "_waiter")

    def __init__(self, size: int, overflow: Callable[[], Exception]) -> None:
        if size < 1:
            raise ValueError(f"queue size must be at least 1, got {size}")
        self._items: deque[T] = deque()
        self._size = size
        self._overflow = overflow
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def overflowed(self) -> bool:
        return self._overflowed

    @property
    def pending(self) -> int:
        """Items queued and not yet read: how far behind the reader is."""
        return len(self._items)

    @property
    def newest(self) -> T | None:
        return self._items[-1] if self._items else None

    def put(self, item: T) -> bool:
        """Queue `item`; False when it is not kept (overflowed now or before, or closed)."""
        if self._overflowed or self._closed:
            return False
        if len(self._items) >= self._size:
            self._overflowed = True
            self._items.clear()  # the reader resumes from its cursor: free them now
            self._wake()
            return False
        self._items.append(item)
        self._wake()
        return True

    def close(self) -> None:
        self._closed = True
        self._wake()

    def get_nowait(self) -> T | None:
        """The next item, None when none waits; raises the overflow error once cut off."""
        if self._overflowed:
            raise self._overflow()
        return self._items.popleft() if self._items else None

    async def get(self) -> T:
        while True:
            if self._overflowed:
                raise self._overflow()
            if self._items:
                return self._items.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is not None:
                raise RuntimeError("this queue is already read by another task")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
