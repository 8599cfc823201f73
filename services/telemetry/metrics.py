"""The telemetry logger's metric families."""

from prometheus_client import Counter, Gauge

from servoscope.streams import ConsumerMetrics

SAMPLES_STORED = Counter("telemetry_samples_stored", "Samples durably stored.")
BATCHES_REJECTED = Counter("telemetry_batches_rejected", "Batches rejected as invalid.")
SAMPLES_PRUNED = Counter("telemetry_samples_pruned", "Samples and events removed by retention.")
LAST_PRUNE = Gauge("telemetry_last_prune_timestamp_seconds", "When retention last ran.")

# The async path: what this consumer did, and the group's backlog in each stream.
STREAM = ConsumerMetrics(
    stored=Counter(
        "telemetry_stream_entries_handled",
        "Stream entries durably stored (or found stored already) and then acknowledged.",
        ["stream"],
    ),
    redelivered=Counter(
        "telemetry_stream_redeliveries",
        "Entries claimed from a consumer that read them and never acknowledged them.",
        ["stream"],
    ),
)
ENTRIES_REJECTED = Counter(
    "telemetry_stream_entries_rejected",
    "Stream entries that were not a valid sample or event (acknowledged, not stored).",
    ["stream"],
)
STREAM_LAG = Gauge(
    "telemetry_stream_lag_entries", "Entries not yet delivered to the consumer group.", ["stream"]
)
STREAM_PENDING = Gauge(
    "telemetry_stream_pending_entries",
    "Entries delivered to a consumer and not yet acknowledged.",
    ["stream"],
)
STREAM_OLDEST = Gauge(
    "telemetry_stream_oldest_pending_age_seconds",
    "Age of the oldest entry the group has not acknowledged (delivered or not); 0 when none.",
    ["stream"],
)
STREAM_TRIMMED = Gauge(
    "telemetry_stream_trimmed_unconsumed_entries",
    "Entries trimmed (MAXLEN) before the group acknowledged them: lost, and counted.",
    ["stream"],
)
FRESHNESS = Gauge(
    "telemetry_ingest_freshness_seconds", "Age of the newest stored sample (by its ts)."
)
