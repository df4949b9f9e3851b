"""The broker through which committed status changes reach every process's subscribers.

`Broker("memory://")` for one process (and tests), `Broker("redis://...")` for
several replicas; see `_base.Broker` for the API and `Subscription` for the
overflow rule, `Gap` for what an outage looks like to a subscriber.
"""

from gateway.pubsub._base import (
    Broker,
    BrokerBackend,
    BrokerError,
    BrokerUnavailable,
    Gap,
    Message,
    SubscriberOverflow,
    Subscription,
)

__all__ = [
    "CHANNEL_EMAIL_STATUS_CHANGED",
    "Broker",
    "BrokerBackend",
    "BrokerError",
    "BrokerUnavailable",
    "Gap",
    "Message",
    "SubscriberOverflow",
    "Subscription",
]

# Where ingestion publishes each committed status change. Redis pub/sub
# channels ignore the database number, so deployments sharing one Redis must
# not share this name's namespace (use one Redis, or prefix, per deployment).
CHANNEL_EMAIL_STATUS_CHANGED = "gateway:email-status-changed"
