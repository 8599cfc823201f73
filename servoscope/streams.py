"""Events and samples through Redis Streams: publish off the request path, consume in a group.

The async path of the stack, in two halves that every service shares:

- :class:`StreamPublisher` (servo controller, motion planner): :meth:`~StreamPublisher.publish`
  only appends to a bounded in-process buffer and returns; a sender thread moves the
  buffer to Redis in batches. A request thread therefore never waits on Redis. When
  Redis is away the buffer holds what it can (``buffer_max``, a metric) and the oldest
  entries beyond it are dropped and counted; when Redis returns the buffer is flushed in
  order. Each stream is bounded (``MAXLEN``); the entries the trim removes before the
  consumer group acknowledged them are counted in Redis (``<stream>:trimmed-unconsumed``)
  by the same script that adds, so a loss to trimming is never silent.
- :class:`StreamConsumer` (telemetry logger): reads with a consumer group
  (``XREADGROUP``), hands each batch to a durable write, and acknowledges (``XACK``) only
  after it. Entries a dead consumer read but never acknowledged are claimed by a live
  one after ``claim_idle_s`` (``XAUTOCLAIM``). Delivery is at-least-once; the store makes
  it exactly-once by keying rows on the entry id.

Trace context travels in each entry (``traceparent``): a publish that is traced opens a
PRODUCER span (``create <stream>``, as OpenTelemetry's messaging conventions name a
message created for a batch send) and injects its context; the consumer's CONSUMER span
for a batch (``process <stream>``) links to every producer context in it.

    publisher = StreamPublisher("redis://127.0.0.1:6379/0", SAMPLES, StreamOptions())
    publisher.start()
    publisher.publish({"producer": "servo-controller@host:1:0", "seq": 0, ...}, traced=False)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind
from prometheus_client import Counter, Gauge

from servoscope.settings import Settings

log = logging.getLogger("servoscope.streams")
tracer = trace.get_tracer("servoscope.streams")

SAMPLES = "servoscope:samples"
DEVICE_EVENTS = "servoscope:device-events"
MOVE_EVENTS = "servoscope:move-events"
EVENT_STREAMS = (DEVICE_EVENTS, MOVE_EVENTS)
GROUP = "telemetry-logger"

PUBLISHED = Counter("stream_published_entries", "Entries added to a stream.", ["stream"])
PUBLISH_DROPPED = Counter(
    "stream_publish_dropped_entries",
    "Entries dropped from the local buffer because it was full (the broker was away).",
    ["stream"],
)
PUBLISH_FAILURES = Counter(
    "stream_publish_failures", "Batches the broker did not take (kept and retried).", ["stream"]
)
BUFFERED = Gauge("stream_publish_buffered_entries", "Entries waiting to be published.", ["stream"])
BUFFER_MAX = Gauge("stream_publish_buffer_max_entries", "The local buffer's bound.", ["stream"])
BROKER_UP = Gauge("stream_broker_up", "1 while the last exchange with the broker worked.")

# XADD every entry, then trim to MAXLEN and count the trimmed entries the group had not
# acknowledged yet: never delivered (after the group's last-delivered-id) or still pending.
# KEYS: stream, trimmed counter. ARGV: maxlen, group, then (data, traceparent) pairs.
_PUBLISH_SCRIPT = """
local stream, maxlen, group = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local ids = {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', stream, '*', 'data', ARGV[i], 'traceparent', ARGV[i + 1])
end
local excess = redis.call('XLEN', stream) - maxlen
if excess <= 0 then return ids end
local function parse(id)
  local ms, seq = string.match(id, '(%d+)-(%d+)')
  return tonumber(ms), tonumber(seq)
end
local function after(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams > bms or (ams == bms and aseq > bseq)
end
local delivered, pending_min = nil, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
  if info['name'] == group then
    delivered = info['last-delivered-id']
    if tonumber(info['pending']) > 0 then
      pending_min = redis.call('XPENDING', stream, group)[2]
    end
  end
end
local lost = 0
for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)) do
  local id = entry[1]
  if delivered == nil or after(id, delivered) then
    lost = lost + 1
  elseif pending_min ~= nil and not after(pending_min, id) then
    if #redis.call('XPENDING', stream, group, id, id, 1) > 0 then lost = lost + 1 end
  end
end
redis.call('XTRIM', stream, 'MAXLEN', maxlen)
if lost > 0 then redis.call('INCRBY', KEYS[2], lost) end
return ids
"""

# Consumers are named per process (host:pid): each restart of a logger adds one to the
# group. Remove those that hold no pending entry and have not read for idle_ms, in one
# step, so none can read in between. KEYS: stream. ARGV: group, the caller's name, idle_ms.
_FORGET_SCRIPT = """
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for k = 1, #c, 2 do info[c[k]] = c[k + 1] end
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
"""
# A live consumer reads every block_s; one silent this many claim periods has departed.
DEPARTED_AFTER_CLAIMS = 3


def trimmed_key(stream: str) -> str:
    """The Redis counter of ``stream``'s entries trimmed before they were acknowledged."""
    return f"{stream}:trimmed-unconsumed"


@dataclass(frozen=True)
class StreamOptions:
    """``[streams]`` of servoscope.toml."""

    enabled: bool = True
    maxlen: int = 200_000  # entries per stream; about 55 min of 6 channels at 10 Hz
    buffer_max: int = 20_000  # per stream and process, while the broker is away
    flush_period_s: float = 0.2
    batch_max: int = 500
    timeout_s: float = 0.5  # every broker call; a dead broker costs the sender this much
    claim_idle_s: float = 10.0  # a pending entry idle this long is claimed by a live consumer
    block_s: float = 1.0  # how long a consumer's read waits for new entries
    delivery: str = "group"  # "group": consumer group + ack after write; "latest": tail, no group


def load_options(settings: Settings) -> StreamOptions:
    return settings.options("streams", StreamOptions)


def redis_url(settings: Settings) -> str:
    return f"redis://{settings.address('redis')}/0"


def connect(url: str, timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=0,
        decode_responses=True,
    )


def producer_name(service: str) -> str:
    """Who published an entry: one name per process life (a restart is a new producer)."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}:{int(time.time() * 1000)}"


@dataclass(frozen=True)
class Entry:
    """One stream entry as a consumer sees it."""

    stream: str
    id: str
    data: dict[str, Any]
    traceparent: str

    @property
    def published_at(self) -> float:
        """The broker's clock when the entry was added (the id's milliseconds)."""
        return int(self.id.split("-", 1)[0]) / 1000


def entry_age_s(entry_id: str, now: float | None = None) -> float:
    return max(0.0, (now or time.time()) - int(entry_id.split("-", 1)[0]) / 1000)


class StreamPublisher:
    """A bounded local buffer in front of one stream, flushed by one sender thread."""

    def __init__(self, url: str, stream: str, options: StreamOptions) -> None:
        self.stream = stream
        self.options = options
        self.client = connect(url, options.timeout_s)
        self._script = self.client.register_script(_PUBLISH_SCRIPT)
        self._buffer: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        BUFFER_MAX.labels(stream).set(options.buffer_max)
        BUFFERED.labels(stream).set(0)
        for family in (PUBLISHED, PUBLISH_DROPPED, PUBLISH_FAILURES):
            family.labels(stream)  # every series exists from the start, at 0

    def start(self) -> None:
        if not self.options.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._send_loop, name=f"publish-{self.stream}", daemon=True
        )
        self._thread.start()

    def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Stop the sender after one last flush attempt (bounded by ``flush_timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=flush_timeout_s)

    def publish(
        self,
        data: dict[str, Any],
        *,
        traced: bool = True,
        parent: otel_context.Context | None = None,
        traceparent: str = "",
    ) -> str:
        """Queue one entry; never blocks on the broker. Returns the entry's traceparent.

        ``traced``: open a PRODUCER span (child of ``parent``, else of the current
        context) and carry its context in the entry. Untraced, the entry carries
        ``traceparent`` as given (an earlier producer span's, or none).
        """
        if not self.options.enabled:
            return traceparent
        if traced:
            carrier: dict[str, str] = {}
            with tracer.start_as_current_span(
                f"create {self.stream}",
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "redis",
                    "messaging.destination.name": self.stream,
                    "messaging.operation.type": "create",
                },
            ):
                propagate.inject(carrier)
            traceparent = carrier.get("traceparent", "")
        self._append((json.dumps(data, separators=(",", ":")), traceparent))
        return traceparent

    def _append(self, entry: tuple[str, str]) -> None:
        with self._lock:
            self._buffer.append(entry)
            overflow = len(self._buffer) - self.options.buffer_max
            for _ in range(max(0, overflow)):
                self._buffer.popleft()
            BUFFERED.labels(self.stream).set(len(self._buffer))
        if overflow > 0:
            PUBLISH_DROPPED.labels(self.stream).inc(overflow)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush_once(self) -> bool:
        """Publish one batch from the buffer; True when the broker took it (or none waited)."""
        with self._lock:
            batch = [self._buffer[i] for i in range(min(len(self._buffer), self.options.batch_max))]
        if not batch:
            return True
        args: list[str | int] = [self.options.maxlen, GROUP]
        for data, traceparent in batch:
            args += [data, traceparent]
        try:
            self._script(keys=[self.stream, trimmed_key(self.stream)], args=args)
        except redis.RedisError as exc:
            PUBLISH_FAILURES.labels(self.stream).inc()
            BROKER_UP.set(0)
            log.warning("%d entries for %s kept: %s", len(batch), self.stream, exc)
            return False
        BROKER_UP.set(1)
        with self._lock:
            # Only this thread removes from the left, and the buffer only drops its oldest
            # entries, so the batch is what is left of its left end.
            sent = set(batch)
            while self._buffer and self._buffer[0] in sent:
                self._buffer.popleft()
            BUFFERED.labels(self.stream).set(len(self._buffer))
        PUBLISHED.labels(self.stream).inc(len(batch))
        return True

    def _send_loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            while self.flush_once() and self.pending():
                pass  # drain a backlog in whole batches while the broker takes them
            if stopping:
                return
            self._wake.wait(self.options.flush_period_s)


Handler = Callable[[str, Sequence[Entry]], None]


def _entries(stream: str, raw: Sequence[tuple[str, dict[str, str] | None]]) -> list[Entry]:
    entries = []
    for entry_id, fields in raw:
        if fields is None:
            continue  # trimmed while pending: counted by the publishing script
        entries.append(
            Entry(stream, entry_id, json.loads(fields["data"]), fields.get("traceparent", ""))
        )
    return entries


@dataclass(frozen=True)
class ConsumerMetrics:
    """The families a consumer reports into (the telemetry logger's, by stream)."""

    stored: Counter  # entries handled and acknowledged
    redelivered: Counter  # entries claimed from a consumer that did not acknowledge them


class StreamConsumer:
    """Reads ``streams`` as one consumer of :data:`GROUP`; ``handler`` must be durable
    when it returns, because the entries are acknowledged right after it."""

    def __init__(
        self,
        url: str,
        streams: Sequence[str],
        options: StreamOptions,
        handler: Handler,
        metrics: ConsumerMetrics,
        name: str | None = None,
    ) -> None:
        self.streams = list(streams)
        self.options = options
        self.handler = handler
        self.metrics = metrics
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        # A blocking read waits block_s on the socket: its timeout must exceed that.
        self.client = connect(url, options.timeout_s + options.block_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_claim = 0.0
        self._forget = self.client.register_script(_FORGET_SCRIPT)
        self._tail: dict[str, str] = {}  # "latest" mode: the last id read per stream
        for stream in self.streams:
            metrics.stored.labels(stream)
            metrics.redelivered.labels(stream)

    def start(self) -> None:
        if self.options.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="stream-consumer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.options.block_s + self.options.timeout_s + 1)

    def ensure_group(self) -> None:
        """Create the group at the start of each stream (entries published before any
        consumer existed are read too); an existing group is left as it is."""
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _loop(self) -> None:
        backoff = 0.1
        ready = False
        while not self._stop.is_set():
            try:
                if self.options.delivery == "latest":
                    self.read_latest_once()
                else:
                    if not ready:
                        self.ensure_group()
                        ready = True
                    self.consume_once()
                BROKER_UP.set(1)
                backoff = 0.1
            except redis.RedisError as exc:
                BROKER_UP.set(0)
                log.warning("stream consumer: %s; retrying in %.1fs", exc, backoff)
                ready = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                # A handler failure (the store is away): nothing is acknowledged, so the
                # entries stay pending and are claimed again after claim_idle_s.
                log.exception("stream consumer: handling a batch failed")
                self._stop.wait(1.0)

    def consume_once(self) -> int:
        """Claim stale pending entries, then read new ones; handle and acknowledge each
        batch. Returns the number of entries handled."""
        handled = 0
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.options.claim_idle_s / 2
            for stream in self.streams:
                handled += self._claim(stream)
                self.forget_departed(stream)
        replies = self.client.xreadgroup(
            GROUP,
            self.name,
            dict.fromkeys(self.streams, ">"),
            count=self.options.batch_max,
            block=int(self.options.block_s * 1000),
        )
        for stream, raw in replies or []:
            handled += self._handle(stream, _entries(stream, raw))
        return handled

    def _claim(self, stream: str) -> int:
        handled, start = 0, "0-0"
        idle_ms = int(self.options.claim_idle_s * 1000)
        for _ in range(1000):  # bounded: each round claims up to batch_max entries
            reply = self.client.xautoclaim(
                stream, GROUP, self.name, idle_ms, start, count=self.options.batch_max
            )
            start, raw = reply[0], reply[1]
            entries = _entries(stream, raw)
            if entries:
                self.metrics.redelivered.labels(stream).inc(len(entries))
                handled += self._handle(stream, entries)
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                log.warning("%d pending entries of %s were trimmed", len(deleted), stream)
            if start == "0-0":
                break
        return handled

    def forget_departed(self, stream: str) -> list[str]:
        """Remove the group's consumers that departed with nothing pending (their entries
        were all acknowledged or claimed); returns their names."""
        idle_ms = int(self.options.claim_idle_s * DEPARTED_AFTER_CLAIMS * 1000)
        removed = self._forget(keys=[stream], args=[GROUP, self.name, idle_ms])
        for name in removed:
            log.info("stream consumer %s left the group of %s", name, stream)
        return removed

    def _handle(self, stream: str, entries: list[Entry]) -> int:
        if not entries:
            return 0
        contexts = {e.traceparent for e in entries if e.traceparent}
        links = []
        for traceparent in sorted(contexts)[:128]:
            span_context = trace.get_current_span(
                propagate.extract({"traceparent": traceparent})
            ).get_span_context()
            if span_context.is_valid:
                links.append(Link(span_context))
        with tracer.start_as_current_span(
            f"process {stream}",
            context=otel_context.Context(),  # a batch has many producers: links, not a parent
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": stream,
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": GROUP,
                "messaging.batch.message_count": len(entries),
            },
        ):
            if self.options.delivery == "group":
                self.handler(stream, entries)  # durable when it returns...
                self.client.xack(stream, GROUP, *[e.id for e in entries])  # ...then acknowledged
            else:
                self.handler(stream, entries)
        self.metrics.stored.labels(stream).inc(len(entries))
        return len(entries)

    def read_latest_once(self) -> int:
        """The control for chaos runs: no group, read from the tail (``$``) like a live
        feed; entries added while no consumer runs are never read."""
        for stream in self.streams:
            if stream not in self._tail:  # start at the tail as it is now
                newest = self.client.xrevrange(stream, count=1)
                self._tail[stream] = newest[0][0] if newest else "0-0"
        replies = self.client.xread(
            self._tail, count=self.options.batch_max, block=int(self.options.block_s * 1000)
        )
        handled = 0
        for stream, raw in replies or []:
            entries = _entries(stream, raw)
            if entries:
                self._tail[stream] = entries[-1].id
            handled += self._handle(stream, entries)
        return handled


@dataclass(frozen=True)
class StreamBacklog:
    """What a group has not acknowledged yet in one stream."""

    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acknowledged
    oldest_age_s: float  # age of the oldest entry not yet acknowledged (0 when none)
    trimmed_unconsumed: int  # entries trimmed before the group acknowledged them
    length: int


def backlog(client: redis.Redis, stream: str) -> StreamBacklog:
    """The group's backlog in ``stream`` (for the logger's gauges and the tests)."""
    trimmed = int(client.get(trimmed_key(stream)) or 0)
    length = client.xlen(stream)
    groups = {g["name"]: g for g in client.xinfo_groups(stream)} if length or trimmed else {}
    group = groups.get(GROUP)
    if group is None:  # nobody consumes: everything there waits
        first = client.xrange(stream, count=1)
        age = entry_age_s(first[0][0]) if first else 0.0
        return StreamBacklog(length, 0, age, trimmed, length)
    lag = group.get("lag")
    delivered = group["last-delivered-id"]
    oldest: list[str] = []
    if group["pending"]:
        summary = client.xpending(stream, GROUP)  # acknowledged meanwhile: min is None
        if summary["min"] is not None:
            oldest.append(summary["min"])
    undelivered = client.xrange(stream, min=f"({delivered}", count=1)
    if undelivered:
        oldest.append(undelivered[0][0])
    if lag is None:  # Redis cannot tell after an unusual trim: count what is there
        lag = len(client.xrange(stream, min=f"({delivered}", count=1_000_000))
    now = time.time()
    age = max((entry_age_s(i, now) for i in oldest), default=0.0)
    return StreamBacklog(int(lag), int(group["pending"]), age, trimmed, length)
