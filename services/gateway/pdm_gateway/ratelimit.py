"""Per-key token buckets: `rate` requests per second on average, bursts up to `rate x burst_s`.

In-process on purpose: with N gateway replicas a key gets up to N x its rate (documented
in the README). A shared limiter (Redis) would add a network round trip to every request and
a new dependency; the limit protects the platform from a runaway client, not for billing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, burst_s: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.burst_s = burst_s
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, rate: float) -> float:
        """Take one token for `key`; 0.0 when allowed, else the seconds until one is free."""
        now = self.clock()
        capacity = max(1.0, rate * self.burst_s)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()  # many distinct keys: forget (grants a fresh burst)
            bucket = self._buckets[key] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` is whole seconds (RFC 9110); never 0, which would invite a hot loop."""
    return str(max(1, math.ceil(wait_s)))
