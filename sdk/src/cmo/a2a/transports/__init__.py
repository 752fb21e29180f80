"""Transports: one interface (`Transport`), one contract, several implementations.

`MemoryTransport` is here for tests; Redis Streams and NATS JetStream come with the extras
`cmo-sdk[redis]` and `cmo-sdk[nats]`.
"""

from cmo.a2a.transports._protocol import Counters, DeadLetterRecord, Delivery, Subscription, Transport
from cmo.a2a.transports.memory import MemoryTransport

__all__ = ["Counters", "DeadLetterRecord", "Delivery", "MemoryTransport", "Subscription", "Transport"]
