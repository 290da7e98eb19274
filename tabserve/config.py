"""Every setting the project reads from the environment, with its default and meaning.

This is the one place configuration lives; the README's "Configuration" table mirrors it.
Values are read when a module imports this one, so set them before `bentoml serve`.
"""

from __future__ import annotations

import os


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


# Which model version is served: "name:version", or "name" / "name:latest" for the newest.
MODEL_TAG: str = os.environ.get("MODEL_TAG", "").strip() or "penguins:latest"

# Adaptive batching of single-record predictions on the model service.
# A too-small MAX_LATENCY_MS makes BentoML refuse requests with 503 "process is overloaded".
# ADAPTIVE_BATCHING=0 sends each /predict straight to the model, one record per call (for comparison).
ADAPTIVE_BATCHING: bool = _int("ADAPTIVE_BATCHING", 1) > 0
MAX_BATCH_SIZE: int = _int("MAX_BATCH_SIZE", 64, minimum=2)
MAX_LATENCY_MS: int = _int("MAX_LATENCY_MS", 10_000, minimum=1)

# Processes and threads. The entry (HTTP) service is async, so one worker carries many requests.
API_WORKERS: int = _int("API_WORKERS", 1, minimum=1)
MODEL_WORKERS: int = _int("MODEL_WORKERS", 1, minimum=1)
MODEL_THREADS: int = _int("MODEL_THREADS", 1, minimum=1)

# Seconds a request may take before BentoML answers 504, and requests in flight per worker
# before it answers 429.
REQUEST_TIMEOUT_S: int = _int("REQUEST_TIMEOUT_S", 60, minimum=1)
MAX_CONCURRENCY: int = _int("MAX_CONCURRENCY", 1000, minimum=1)

# Size limits of the bulk endpoints.
MAX_BATCH_RECORDS: int = _int("MAX_BATCH_RECORDS", 10_000, minimum=1)
MAX_CSV_ROWS: int = _int("MAX_CSV_ROWS", 100_000, minimum=1)
MAX_UPLOAD_BYTES: int = _int("MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1024)
