"""Per-namespace call rates: a token bucket for each namespace that calls, kept in memory.

Each replica keeps its own buckets, so N replicas behind a balancer let a namespace make up to N
times the rate; the limit is a guard against one tenant crowding out the others, not a quota.
"""

from cmo_server.ratelimit._buckets import NamespaceRates

__all__ = ["NamespaceRates"]
