"""Provider webhooks: authenticity checks and parsers that turn a provider's
delivery events into `IncomingEvent`s (see `gateway.webhooks.providers`).

The HTTP routes live elsewhere and call these pure functions.
"""

__all__: list[str] = []
