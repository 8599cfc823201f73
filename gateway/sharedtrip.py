"""A request's shared-state work, in one Redis round trip on the healthy path.

With state shared in Redis (several workers or replicas), a request takes a token from
its rate-limit bucket, counts itself in its upstream's retry budget and reads the
breaker of every instance its upstream may be sent to. One Lua script does all three
(registered once; redis-py sends it by ``EVALSHA`` and loads it again on ``NOSCRIPT``).
The breaker stage then admits the call on those views, and a success on a view that
showed no failure has nothing to write (:meth:`Breaker.record_outcome`): that is the
request's only round trip. Failures, and the success that ends a run of them, write
as they go.

The bucket is the same token bucket as :class:`gateway.ratelimit.TokenBuckets`, in a
hash ``gw:rate:<route>:<key>`` (``tokens``, ``at``), on Redis's clock (``TIME``) so that
replicas whose clocks differ still drain one bucket at one rate. When Redis is away the
local bucket answers and the breakers read their local state (no views).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from gateway.policy import RateLimitOptions
from gateway.ratelimit import Decision, TokenBuckets, decision
from servoscope.resilience.breaker import BREAKER_FIELDS, BreakerView
from servoscope.resilience.sharedstate import SharedState

# A retry budget's request counter for this second, and its time to live in seconds
# (:meth:`servoscope.resilience.budget.RetryBudget.request_key`).
BudgetCount = tuple[str, int]

# KEYS[1]: the bucket ('' when the route is not rate limited), KEYS[2]: the retry
# budget's request count of this second ('' when not counted here), KEYS[3..]: breaker
# hashes. ARGV: capacity, tokens per second, the budget key's time to live (s). Returns
# {allowed, tokens, wait_s, then the breaker fields of each breaker key in BREAKER_FIELDS
# order ('' for an absent field)}. A request the rate limit refuses is not counted.
SCRIPT = """
local out = {1, '0', '0'}
local capacity = tonumber(ARGV[1])
if KEYS[1] ~= '' then
  local rate = tonumber(ARGV[2])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or capacity
  local at = tonumber(bucket[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  if tokens >= 1 then
    tokens = tokens - 1
  else
    out[1] = 0
  end
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
             'at', string.format('%.6f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
  local wait = 0
  if tokens < 1 then wait = (1 - tokens) / rate end
  out[2] = string.format('%.6f', tokens)
  out[3] = string.format('%.6f', wait)
end
if KEYS[2] ~= '' and out[1] == 1 then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
end
for i = 3, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'state', 'fail', 'success', 'opened_at')
  for j = 1, 4 do out[#out + 1] = fields[j] or '' end
end
return out
"""


@dataclass
class Trip:
    """What the script answered: the rate limit's decision (None: not limited), whether
    it counted the request in the retry budget, and a view of each breaker's hash, by
    its Redis key."""

    decision: Decision | None = None
    counted: bool = False
    views: dict[str, BreakerView] = field(default_factory=dict)


class SharedTrip:
    """The rate limiter, and the one round trip of a request's shared state."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.local = TokenBuckets()
        self.script = shared.client.register_script(SCRIPT) if shared.client else None

    def take(
        self,
        options: RateLimitOptions,
        route: str,
        key: str,
        breakers: Sequence[str],
        budget: BudgetCount | None = None,
    ) -> Trip:
        """Take one request from ``key``'s allowance on ``route`` (when it is limited),
        count it in ``budget`` (when allowed) and read the ``breakers`` (their Redis
        keys), in one round trip while Redis is up. With Redis away the local bucket
        answers and the trip says it did not count the request (``counted``)."""
        script = self.script
        if script is None or (not options.enabled and not breakers and budget is None):
            return Trip(self._local(options, route, key))
        return self.shared.choose(
            lambda r: self._shared(script, options, route, key, breakers, budget),
            lambda: Trip(self._local(options, route, key)),
        )

    def _local(self, options: RateLimitOptions, route: str, key: str) -> Decision | None:
        if not options.enabled:
            return None
        allowed, remaining, wait = self.local.take(options, route, key)
        return decision(options, allowed, remaining, wait)

    def _shared(
        self,
        script: redis.commands.core.Script,
        options: RateLimitOptions,
        route: str,
        key: str,
        breakers: Sequence[str],
        budget: BudgetCount | None,
    ) -> Trip:
        bucket = f"gw:rate:{route}:{key}" if options.enabled else ""
        rate = options.requests / options.per_s
        count, ttl = budget if budget is not None else ("", 0)
        answer = script(keys=[bucket, count, *breakers], args=[options.requests, rate, ttl])
        trip = Trip(counted=budget is not None and int(answer[0]) == 1)
        if options.enabled:
            allowed, tokens, wait = int(answer[0]), float(answer[1]), float(answer[2])
            trip.decision = decision(options, bool(allowed), int(tokens), wait)
        n = len(BREAKER_FIELDS)
        for index, name in enumerate(breakers):
            raw = answer[3 + index * n : 3 + (index + 1) * n]
            trip.views[name] = {
                f: (v.decode() or None) for f, v in zip(BREAKER_FIELDS, raw, strict=True)
            }
        return trip
