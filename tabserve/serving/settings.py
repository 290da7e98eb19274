"""What the server reads from the environment, declared in the registry of tabserve/core/config.py (which
generates the docs' configuration page). Only service.py and the serving package import this module: a bad
value here stops the server with one line, and never train.py, import_model.py or score.py."""

from __future__ import annotations

import os

from tabserve.core import config
from tabserve.core.config import CHALLENGER_TAG, decimal, external, integer, names, text

MODELS, LAYOUT, LIMITS, KEYS = "Models", "Layout and batching", "Limits", "Keys and CORS"
CACHE, ENTITIES, DRIFT, PAYLOAD = "Cache", "Features by entity id", "Drift", "Payload log"

# CANARY_PERCENT (0-100) of the unversioned predictions, chosen by a stable hash of the record, are answered by
# the challenger instead.
CANARY_PERCENT: float = decimal(
    "CANARY_PERCENT", 0.0, section=MODELS,
    meaning="share (0–100) of the unversioned single-record predictions answered by the challenger, by a stable"
    " hash of the record",
)  # fmt: skip
if CANARY_PERCENT > 100 or (CANARY_PERCENT and not CHALLENGER_TAG):
    raise SystemExit(f"error: CANARY_PERCENT={CANARY_PERCENT:g} needs CHALLENGER_TAG and must be between 0 and 100")

# Every N seconds the server looks at the store, and when the tag MODEL_TAG names (name or name:latest) points at a
# version it has not seen, it loads, verifies, warms and swaps it in as the champion (serving/rollout/versions.py);
# a version whose feature schema differs is refused and logged.
MODEL_WATCH_S: int = integer(
    "MODEL_WATCH_S", 0, shown="`0` (off)", section=MODELS,
    meaning="every N seconds, look for a new version of `MODEL_TAG` (`name` or `name:latest`) in the store and swap"
    " it in as champion without a restart",
)  # fmt: skip
ADMIN_KEY: str = text(
    "ADMIN_KEY", "", section=MODELS,
    meaning="enables `POST /v1/admin/promote` (`Authorization: Bearer <ADMIN_KEY>`); without it the route does not"
    " exist",
)  # fmt: skip

# Records arriving together leave an entry worker as one call of at most MAX_BATCH_SIZE records.
ADAPTIVE_BATCHING: bool = integer(
    "ADAPTIVE_BATCHING", 1, section=LAYOUT, meaning="`0` sends each `/predict` to the model alone (for comparison)"
) > 0  # fmt: skip
MAX_BATCH_SIZE: int = integer(
    "MAX_BATCH_SIZE", 64, minimum=2, section=LAYOUT,
    meaning="most records in one batched pipeline call, and in one call from an entry worker to the model service",
)  # fmt: skip
MAX_LATENCY_MS: int = integer(
    "MAX_LATENCY_MS", 10_000, minimum=1, section=LAYOUT,
    meaning="services layout: BentoML's adaptive batching refuses (503 \"overloaded\") a request it predicts will"
    " wait longer; too small a value causes 503s under load",
)  # fmt: skip

# `services` runs the entry service (validation, cache, shaping, /v1, /v2) in front of a model service (the
# pipelines, batched) in processes of their own; `monolith` runs the pipelines inside each entry worker, with the
# same in-process batching and no hop. The monolith measured ahead on this machine (docs: architecture).
MODEL_SERVICE_URL: str = text(
    "MODEL_SERVICE_URL", "", section=LAYOUT,
    meaning="services layout: the model service as a server of its own (`http://host:port`), instead of beside"
    " the entry",
).rstrip("/")  # fmt: skip
SERVICE_LAYOUT: str = text(
    "SERVICE_LAYOUT", "", shown="`monolith` (`services` when `MODEL_SERVICE_URL` is set)", section=LAYOUT,
    meaning="`monolith`: the model runs in each entry worker; `services`: an entry service in front of a model"
    " service",
) or ("services" if MODEL_SERVICE_URL else "monolith")  # fmt: skip
if SERVICE_LAYOUT not in ("services", "monolith"):
    raise SystemExit(f"error: SERVICE_LAYOUT={SERVICE_LAYOUT!r} must be 'services' or 'monolith'")
MONOLITH: bool = SERVICE_LAYOUT == "monolith"
if MODEL_SERVICE_URL and not MODEL_SERVICE_URL.startswith(("http://", "https://")):
    raise SystemExit(f"error: MODEL_SERVICE_URL={MODEL_SERVICE_URL!r} must start with http:// or https://")
if MODEL_SERVICE_URL and MONOLITH:
    raise SystemExit(
        "error: MODEL_SERVICE_URL needs SERVICE_LAYOUT=services: a monolith runs the model in its own workers"
    )

# The entry (HTTP) service is async, so one worker carries many requests; a monolith's workers also run the
# model, one per core by default.
API_WORKERS: int = integer(
    "API_WORKERS", (os.cpu_count() or 1) if MONOLITH else 1, minimum=1, shown="monolith: one per core; services: `1`",
    section=LAYOUT, meaning="processes of the entry service (async: one carries many requests)",
)  # fmt: skip
MODEL_WORKERS: int = integer(
    "MODEL_WORKERS", 1, minimum=1, section=LAYOUT,
    meaning="services layout: processes of the model service (each has its own batching queue)",
)  # fmt: skip
MODEL_THREADS: int = integer("MODEL_THREADS", 1, minimum=1, section=LAYOUT, meaning="threads per model worker")

REQUEST_TIMEOUT_S: int = integer(
    "REQUEST_TIMEOUT_S", 60, minimum=1, section=LIMITS, meaning="seconds before a request is answered 504"
)  # fmt: skip
# A dead model worker leaves its socket listening (BentoML's arbiter holds it), so calls would otherwise hang.
MODEL_TIMEOUT_S: int = integer(
    "MODEL_TIMEOUT_S", 15, minimum=1, section=LIMITS,
    meaning="seconds the entry service waits for the model service before answering 503 (a dead model worker"
    " would otherwise hang calls)",
)  # fmt: skip
MAX_CONCURRENCY: int = integer(
    "MAX_CONCURRENCY", 1000, minimum=1, section=LIMITS,
    meaning="prediction and `/v1` requests in flight per entry worker before 429",
)  # fmt: skip
MAX_BATCH_RECORDS: int = integer(
    "MAX_BATCH_RECORDS", 10_000, minimum=1, section=LIMITS, meaning="most records in one `/predict_batch`"
)  # fmt: skip
MAX_CSV_ROWS: int = integer(
    "MAX_CSV_ROWS", 100_000, minimum=1, section=LIMITS, meaning="most rows in one `/predict_csv`"
)
MAX_BODY_BYTES: int = integer(
    "MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024, section=LIMITS,
    meaning="largest request body, JSON or CSV (413 beyond, refused before parsing)",
)  # fmt: skip

# Health probes, /metrics and the API docs stay open whatever the keys.
API_KEY: str = text(
    "API_KEY", "", section=KEYS, strip=False,
    meaning="when set, prediction, `/v1` and `/v2/models` routes need `Authorization: Bearer <key>`; this key is the"
    " consumer `default`",
)  # fmt: skip
API_KEYS_FILE: str = text(
    "API_KEYS_FILE", "", section=KEYS,
    meaning="a YAML (or `.toml`) file of consumers: the SHA-256 of each one's key, optional `rps`, `burst`,"
    " `records_per_minute` (per entry worker) and `routes`; written by `python -m tabserve.serving.edge.keys`,"
    " re-read within a second of a change; a broken file at start stops the server with one line",
)  # fmt: skip
CORS_ORIGINS: list[str] = names(
    "CORS_ORIGINS", shown="unset (CORS off)", section=KEYS,
    meaning="comma-separated browser origins allowed to call the API, or `*`",
)  # fmt: skip

PREDICTION_CACHE_SIZE: int = integer(
    "PREDICTION_CACHE_SIZE", 10_000, section=CACHE,
    meaning="entries in each entry worker's in-memory prediction cache (LRU); `0` turns caching off, Redis"
    " included; with `REDIS_URL` any other value only switches the cache on",
)  # fmt: skip
# A Redis call slower than REDIS_TIMEOUT_MS counts as a failure: the prediction goes on uncached, the failure is
# counted on /metrics, and Redis is tried again after a pause (serving/inference/cache.py).
REDIS_URL: str = text(
    "REDIS_URL", "", shown="unset (in-process cache)", section=CACHE,
    meaning="the prediction cache in Redis, shared by every worker and replica (`redis://[:password@]host:6379/0`,"
    " `rediss://` for TLS); another scheme stops the server with one line",
)  # fmt: skip
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise SystemExit(
        f"error: REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix:// (e.g. redis://localhost:6379/0)"
    )
CACHE_TTL_S: int = integer("CACHE_TTL_S", 3600, minimum=1, section=CACHE, meaning="seconds a Redis cache entry lives")
REDIS_TIMEOUT_MS: int = integer(
    "REDIS_TIMEOUT_MS", 100, minimum=1, section=CACHE,
    meaning="limit of each Redis call, connecting included; a slower or failed call: the prediction goes on"
    " uncached, `tabserve_cache_errors_total` counts it, and Redis is skipped for 1 s before one call tries again",
)  # fmt: skip

# `python -m tabserve.serving.api.feature_table load data.csv --id-column ID` fills the table.
# Unset and no features.db beside the service: the route answers 501 saying how to load a table, not 503.
FEATURE_DB_CONFIGURED: bool = bool(config.raw("FEATURE_DB_URL"))
FEATURE_DB_URL: str = text(
    "FEATURE_DB_URL", "sqlite:///features.db", section=ENTITIES,
    meaning="SQLAlchemy URL of the feature table's database for `GET /v1/entities/{id}/predict`"
    " (`postgresql+psycopg://user@host/db` for PostgreSQL); unset and no `features.db` loaded, the route answers"
    " 501 saying how to load one",
)  # fmt: skip
FEATURE_TABLE: str = text("FEATURE_TABLE", "features", section=ENTITIES, meaning="the feature table")
FEATURE_ID_COLUMN: str = text(
    "FEATURE_ID_COLUMN", "", shown="unset (the table's primary key)", section=ENTITIES,
    meaning="the id column, if not the primary key",
)  # fmt: skip
FEATURE_DB_TIMEOUT_MS: int = integer(
    "FEATURE_DB_TIMEOUT_MS", 1000, minimum=1, section=ENTITIES,
    meaning="a lookup's deadline (the first, which also reads the table's structure: up to 5 s); slower → `503`",
)  # fmt: skip
FEATURE_DB_POOL_SIZE: int = integer(
    "FEATURE_DB_POOL_SIZE", 5, minimum=1, section=ENTITIES,
    meaning="pooled connections (and lookup threads) per entry worker",
)  # fmt: skip

# Every prediction counts its inputs and prediction into the bins of the reference profile train.py keeps in the
# model card; the counters add up across workers and replicas (serving/observe/drift.py). A sample of n records
# from the training distribution itself reads a PSI of about 10/n from noise alone, hence DRIFT_MIN_RECORDS.
DRIFT_COUNTING: bool = integer(
    "DRIFT_COUNTING", 1, section=DRIFT,
    meaning="`0` counts no drift (for measuring its cost); `/v1/drift` then answers status `off`",
) > 0  # fmt: skip
DRIFT_WINDOW_S: int = integer(
    "DRIFT_WINDOW_S", 0, section=DRIFT,
    meaning="seconds of traffic `/v1/drift` and the PSI gauges compare with the training data; `0`: since the"
    " server started (`3600` suits production)",
)  # fmt: skip
DRIFT_REFRESH_S: float = decimal(
    "DRIFT_REFRESH_S", 5.0, minimum=0.1, section=DRIFT,
    meaning="how often each entry worker samples the drift counters and refreshes the PSI gauges",
)  # fmt: skip
DRIFT_MIN_RECORDS: int = integer(
    "DRIFT_MIN_RECORDS", 500, minimum=1, section=DRIFT,
    meaning="fewer records in the window: status `too few` and NaN gauges (n records drawn from the training data"
    " itself read a PSI of about 10/n)",
)  # fmt: skip
DRIFT_WARN_PSI: float = decimal("DRIFT_WARN_PSI", 0.1, section=DRIFT, meaning="PSI from which a feature is `warn`")
DRIFT_ALERT_PSI: float = decimal(
    "DRIFT_ALERT_PSI", 0.25, section=DRIFT, meaning="PSI from which a feature is `alert` (not below the warn value)"
)  # fmt: skip
if DRIFT_WARN_PSI > DRIFT_ALERT_PSI:
    raise SystemExit(f"error: DRIFT_WARN_PSI={DRIFT_WARN_PSI:g} must not exceed DRIFT_ALERT_PSI={DRIFT_ALERT_PSI:g}")

# Written through BentoML's monitoring API (bentoml.monitor) into PAYLOAD_LOG_DIR/<model name>/data/data.<worker>.log,
# off the answer's path; `python -m tabserve.serving.observe.drift_report` reads it. A write that fails never fails
# a prediction: counted on /metrics (tabserve_payload_log_errors_total) and logged once.
PAYLOAD_LOG: bool = integer(
    "PAYLOAD_LOG", 0, section=PAYLOAD,
    meaning="`1` writes every predicted record (inputs as validated, prediction, probabilities, warnings, model tag,"
    " route, request id, latency) as one JSON line, off the answer's path",
) > 0  # fmt: skip
PAYLOAD_LOG_SAMPLE: float = decimal(
    "PAYLOAD_LOG_SAMPLE", 1.0, section=PAYLOAD, meaning="keep each record with this probability (0–1)"
)  # fmt: skip
if PAYLOAD_LOG_SAMPLE > 1:
    raise SystemExit(f"error: PAYLOAD_LOG_SAMPLE={PAYLOAD_LOG_SAMPLE:g} must be between 0 and 1")
PAYLOAD_LOG_DIR: str = text(
    "PAYLOAD_LOG_DIR", "payload_log", section=PAYLOAD,
    meaning="where the log is written; a relative path is relative to the directory the service runs in",
)  # fmt: skip
PAYLOAD_LOG_REDACT: list[str] = names(
    "PAYLOAD_LOG_REDACT", section=PAYLOAD,
    meaning="features (comma-separated) written as a keyed hash (HMAC-SHA256 with `PAYLOAD_LOG_SALT`, first 16 hex"
    " digits); a name that is not a feature stops the server at start with one line",
)  # fmt: skip
PAYLOAD_LOG_SALT: str = text(
    "PAYLOAD_LOG_SALT", "", section=PAYLOAD, strip=False,
    meaning="the secret of `PAYLOAD_LOG_REDACT` (required with it; the same on every worker and replica)",
)  # fmt: skip

external(
    "OMP_NUM_THREADS", "`1` (set by `service.py` unless given)",
    "OpenMP threads per process: scikit-learn's default (one per core) spin-waits on shared cores and made small"
    " predictions 5–20× slower (bench/README.md)",
)  # fmt: skip
external("BENTOML_HOME", "`~/bentoml`", "BentoML's own: where the model store and Bentos live")


def serving_settings() -> dict[str, object]:
    """The settings /v1/model reports under "serving"."""
    return {
        "adaptive_batching": ADAPTIVE_BATCHING,
        "max_batch_size": MAX_BATCH_SIZE,
        "max_latency_ms": MAX_LATENCY_MS,
        "layout": SERVICE_LAYOUT,
        "model_service_url": MODEL_SERVICE_URL or None,
        "api_workers": API_WORKERS,
        "model_workers": MODEL_WORKERS,
        "model_threads": MODEL_THREADS,
        "prediction_cache_size": PREDICTION_CACHE_SIZE,
        "prediction_cache": "off" if PREDICTION_CACHE_SIZE == 0 else "redis" if REDIS_URL else "memory",
        "api_key_required": bool(API_KEY or API_KEYS_FILE),
    }


def settings_markdown() -> str:
    """Every setting as Markdown tables, one per section: the docs' configuration page (docs/hooks.py)."""
    import tabserve.bentoml_fixes  # noqa: F401  (declares its own settings)

    parts = []
    for section in config.SECTIONS:
        rows = [s for s in config.SETTINGS if s.section == section]
        if rows:
            parts += [f"### {section}", "", "| variable | default | meaning |", "|---|---|---|"]
            parts += [f"| `{s.name}` | {s.default} | {config.escaped(s.meaning)} |" for s in rows] + [""]
    return "\n".join(parts)
