"""The telemetry logger's metric families."""

from prometheus_client import Counter, Gauge

SAMPLES_STORED = Counter("telemetry_samples_stored", "Samples durably stored.")
BATCHES_REJECTED = Counter("telemetry_batches_rejected", "Batches rejected as invalid.")
SAMPLES_PRUNED = Counter("telemetry_samples_pruned", "Samples removed by retention.")
LAST_PRUNE = Gauge("telemetry_last_prune_timestamp_seconds", "When retention last ran.")
