"""Per-origin rate limits, sans-IO: token buckets keyed by who sent what (a member's DID, or a
link and the origin a frame claims), bounded in number.

A member that floods is throttled to a steady rate with a burst allowance; everyone else is
unaffected. The mesh uses one per (link, origin) before it verifies a signature; the compute
core one per member for placement requests and announcements. At most ``max_origins`` buckets
are kept (the least recently used is forgotten, which can only be generous: a forgotten origin
starts with a full bucket).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: float, max_origins: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self.max_origins = max_origins
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, origin: Hashable, now: float) -> bool:
        """Take one token from ``origin``'s bucket; False (refused) when it is empty."""
        tokens, at = self._buckets.get(origin, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self._buckets[origin] = (tokens, now)
        self._buckets.move_to_end(origin)
        if len(self._buckets) > self.max_origins:
            self._buckets.popitem(last=False)
        return ok
