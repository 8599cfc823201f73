"""A request's shared-state work before the call, in one Redis round trip.

With state shared in Redis (several workers or replicas), a request takes a token from
its rate-limit bucket and reads the breaker of every instance its upstream may be sent
to. One Lua script does both (registered once; redis-py sends it by ``EVALSHA`` and
loads it again on ``NOSCRIPT``), so they cost one round trip; the breaker stage then
admits the call on those views, and the outcome is counted on them in one more round
trip that also carries the retry budget's count (:meth:`Breaker.record_outcome`).

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

# KEYS[1]: the bucket ('' when the route is not rate limited), KEYS[2..]: breaker hashes.
# ARGV: capacity, tokens per second. Returns {allowed, tokens, wait_s, then the breaker
# fields of each breaker key in BREAKER_FIELDS order ('' for an absent field)}.
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
for i = 2, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'state', 'fail', 'success', 'opened_at')
  for j = 1, 4 do out[#out + 1] = fields[j] or '' end
end
return out
"""


@dataclass
class Trip:
    """What the script answered: the rate limit's decision (None: not limited) and a
    view of each breaker's hash, by its Redis key."""

    decision: Decision | None = None
    views: dict[str, BreakerView] = field(default_factory=dict)


class SharedTrip:
    """The rate limiter, and the one round trip that reads a request's shared state."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.local = TokenBuckets()
        self.script = shared.client.register_script(SCRIPT) if shared.client else None

    def take(
        self, options: RateLimitOptions, route: str, key: str, breakers: Sequence[str]
    ) -> Trip:
        """Take one request from ``key``'s allowance on ``route`` (when it is limited) and
        read the ``breakers`` (their Redis keys), in one round trip while Redis is up."""
        script = self.script
        if script is None or (not options.enabled and not breakers):
            return Trip(self._local(options, route, key))
        return self.shared.choose(
            lambda r: self._shared(script, options, route, key, breakers),
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
    ) -> Trip:
        bucket = f"gw:rate:{route}:{key}" if options.enabled else ""
        rate = options.requests / options.per_s
        answer = script(keys=[bucket, *breakers], args=[options.requests, rate])
        trip = Trip()
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
