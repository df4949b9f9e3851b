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
from gateway.pubsub.queue import BoundedQueue

__all__ = [
    "BoundedQueue",
    "Broker",
    "BrokerBackend",
    "BrokerError",
    "BrokerUnavailable",
    "Gap",
    "Message",
    "SubscriberOverflow",
    "Subscription",
]
