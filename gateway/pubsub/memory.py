"""The in-process backend (`memory://`): the default for one process, and for tests."""

from __future__ import annotations

from gateway.pubsub._base import BrokerBackend, BrokerUnavailable, OnGap, OnMessage

__all__ = ["MemoryBackend"]


class MemoryBackend(BrokerBackend):
    """Publish hands the message straight to the facade's fan-out, in the
    publisher's task: there is no transport to lose, so it never yields a Gap."""

    def __init__(self, url: str, *, on_message: OnMessage, on_gap: OnGap) -> None:
        super().__init__(url, on_message=on_message, on_gap=on_gap)
        self._channels: set[str] = set()
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False
        self._channels.clear()

    async def publish(self, channel: str, message: str) -> None:
        if not self._connected:
            raise BrokerUnavailable(f"memory broker is closed; cannot publish to {channel!r}")
        if channel in self._channels:
            self._on_message(channel, message)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    @property
    def healthy(self) -> bool:
        return self._connected

    async def ping(self) -> bool:
        return self._connected
