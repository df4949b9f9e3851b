"""What the loaders borrow from aiodataloader's internals, checked loudly.

`gateway/loaders/_base.py` overrides `DataLoader.do_resolve_reject` to append
`Loader(key, future)` to the private `DataLoader._queue`, so that a request's
`RequestDb` (gateway/db.py), not the next loop tick, decides when a batch goes
out; `RequestDb` then calls `aiodataloader.dispatch_queue(loader)`, which takes
and empties that same `_queue`. aiodataloader has no public hook for this, and
pyproject pins `aiodataloader>=0.4,<0.5`. Each test below names the installed
version when it fails: a release that changes these internals breaks batching
silently (keys queued nowhere, futures never resolved) rather than with an error.
"""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

import aiodataloader
from aiodataloader import DataLoader, Loader, dispatch_queue
from factories import make_tenant, register

from gateway.db import RequestDb
from gateway.loaders import Loaders

VERSION = version("aiodataloader")
BROKEN = f"aiodataloader {VERSION} changed an internal gateway/loaders/_base.py relies on"


async def _echo(keys: list[int]) -> list[int]:
    return [k * 10 for k in keys]


def test_the_installed_version_is_the_pinned_one() -> None:
    major, minor = (int(part) for part in VERSION.split(".")[:2])
    assert (major, minor) == (0, 4), f"aiodataloader {VERSION} is outside the pin >=0.4,<0.5: re-read these tests"


async def test_a_data_loader_keeps_its_pending_keys_in_a_private_list() -> None:
    loader = DataLoader(_echo)
    assert isinstance(getattr(loader, "_queue", None), list), f"{BROKEN}: DataLoader()._queue is no list"
    assert Loader._fields == ("key", "future"), f"{BROKEN}: Loader is {Loader._fields}, not (key, future)"
    parameters = list(inspect.signature(DataLoader.do_resolve_reject).parameters)
    assert parameters == ["self", "key", "future"], f"{BROKEN}: do_resolve_reject{tuple(parameters)}"
    assert "dispatch_queue" in aiodataloader.__dict__, f"{BROKEN}: dispatch_queue is gone"


async def test_dispatch_queue_takes_the_queue_and_resolves_its_futures() -> None:
    # given: a key queued by hand, as TenantLoader.do_resolve_reject queues it
    loader = DataLoader(_echo)
    future = asyncio.get_running_loop().create_future()
    loader._queue.append(Loader(key=4, future=future))
    # when
    dispatch_queue(loader)
    # then
    assert loader._queue == [], f"{BROKEN}: dispatch_queue left _queue as it was"
    assert await asyncio.wait_for(future, 5) == 40, f"{BROKEN}: dispatch_queue did not resolve the queued future"


async def test_a_tenant_loader_queues_on_the_request_and_dispatches_once_it_settles(session_factory) -> None:  # type: ignore[no-untyped-def]
    # given: a request's loaders and an e-mail
    tenant = await make_tenant(session_factory)
    email = await register(session_factory, tenant)
    db = RequestDb(session_factory)
    loader = Loaders.create(db=db, tenant_id=tenant.id).email_by_id
    try:
        # when: two keys are asked for
        pending = asyncio.gather(loader.load(email.id), loader.load(email.id + 1))  # type: ignore[operator]
        queued = [entry.key for entry in loader._queue]
        found, missing = await asyncio.wait_for(pending, 30)
    finally:
        await db.close()
    # then: both waited in _queue, and one dispatch answered both and emptied it
    assert queued == [email.id, email.id + 1], f"{BROKEN}: load() did not reach _queue ({queued})"  # type: ignore[operator]
    assert loader._queue == [], f"{BROKEN}: _queue not emptied by the dispatch"
    assert (found.id, missing) == (email.id, None)
