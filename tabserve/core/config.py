"""Every setting the project reads from the environment, with its default and meaning.

This is the one place configuration lives; the README's "Configuration" table mirrors it.
Values are read when a module imports this one, so set them before `bentoml serve`.
"""

from __future__ import annotations

import os
from pathlib import Path


def _int(name: str, default: int, minimum: int = 0) -> int:
    """An integer setting; a bad value stops the process with one line naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SystemExit(f"error: {name}={value} must be at least {minimum}")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    """A decimal setting; a bad value stops the process with one line naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not a number") from None
    if not value >= minimum or value == float("inf"):
        raise SystemExit(f"error: {name}={raw} must be a finite number of at least {minimum:g}")
    return value


def packed_model_tag(here: Path = Path(__file__).resolve()) -> str | None:
    """The model a built Bento packs for ModelService, when this code runs from one; else None.

    `bentoml build` imports service.py, whose ModelService declares `model = BentoModel(MODEL_TAG)`,
    and records that model, resolved to its version, in bento.yaml. A built Bento is laid out as
    <bento>/bento.yaml beside <bento>/src/tabserve/core/config.py (also inside its container image), so
    a Bento serves the model it was built with even where no MODEL_TAG is set.
    """
    src = next((p for p in here.parents if p.name == "src" and (p.parent / "bento.yaml").is_file()), None)
    if src is None:
        return None  # a work tree, not a Bento
    manifest = src.parent / "bento.yaml"
    import yaml  # PyYAML comes with bentoml

    info = yaml.safe_load(manifest.read_text()) or {}
    for service in info.get("services") or []:  # the model service's first model, or the monolith's
        if service.get("models"):
            return str(service["models"][0]["tag"])
    return None


def packed_role(role: str, here: Path = Path(__file__).resolve()) -> str:
    """A role's model tags ("model", "challenger", "extra_models") as a built Bento records them: the entry
    service's labels (service.py), which bento.yaml keeps in its top-level `labels`; "" in a work tree."""
    src = next((p for p in here.parents if p.name == "src" and (p.parent / "bento.yaml").is_file()), None)
    if src is None:
        return ""
    import yaml

    info = yaml.safe_load((src.parent / "bento.yaml").read_text()) or {}
    return str((info.get("labels") or {}).get(role) or "")


# Which model version is served: "name:version", or "name" / "name:latest" for the newest.
# An explicit MODEL_TAG wins; else a built Bento serves the model it packs; else the default.
DEFAULT_MODEL_TAG = "penguins:latest"
MODEL_TAG: str = (
    os.environ.get("MODEL_TAG", "").strip() or packed_role("model") or packed_model_tag() or DEFAULT_MODEL_TAG
)

# Model versions held beside the champion (MODEL_TAG): a challenger, scored in the shadow of every champion
# prediction (off the answer's path) and compared on /metrics and GET /v1/models/{version}/comparison, and
# other versions (comma-separated) only answered on /v1/models/{version}/predict. In a built Bento, the
# versions it packs, in the roles it was built with. CANARY_PERCENT (0-100) of the unversioned predictions,
# chosen by a stable hash of the record, are answered by the challenger instead.
CHALLENGER_TAG: str = os.environ.get("CHALLENGER_TAG", "").strip() or packed_role("challenger")
EXTRA_MODEL_TAGS: list[str] = [
    t.strip()
    for t in (os.environ.get("EXTRA_MODEL_TAGS", "").strip() or packed_role("extra_models")).split(",")
    if t.strip()
]
CANARY_PERCENT: float = _float("CANARY_PERCENT", 0.0)
if CANARY_PERCENT > 100 or (CANARY_PERCENT and not CHALLENGER_TAG):
    raise SystemExit(f"error: CANARY_PERCENT={CANARY_PERCENT:g} needs CHALLENGER_TAG and must be between 0 and 100")

# MODEL_WATCH_S=N (0: off): every N seconds the server looks at the store, and when the tag MODEL_TAG names
# (name or name:latest) points at a version it has not seen, it loads, verifies, warms and swaps it in as the
# champion (tabserve/serving/rollout/versions.py); a version whose feature schema differs is refused and logged.
# ADMIN_KEY (separate from API_KEY) enables POST /v1/admin/promote; the route does not exist without it.
MODEL_WATCH_S: int = _int("MODEL_WATCH_S", 0)
ADMIN_KEY: str = os.environ.get("ADMIN_KEY", "").strip()

# Batching of single-record predictions: records arriving together leave an entry worker as one call
# (at most MAX_BATCH_SIZE records), and BentoML's adaptive batching merges the calls on the model service.
# A too-small MAX_LATENCY_MS makes BentoML refuse requests with 503 "process is overloaded".
# ADAPTIVE_BATCHING=0 sends each /predict straight to the model, one record per call (for comparison).
ADAPTIVE_BATCHING: bool = _int("ADAPTIVE_BATCHING", 1) > 0
MAX_BATCH_SIZE: int = _int("MAX_BATCH_SIZE", 64, minimum=2)
MAX_LATENCY_MS: int = _int("MAX_LATENCY_MS", 10_000, minimum=1)

# The layout (README, "Monolith or services"): `services` runs the entry service (validation, cache, shaping,
# /v1, /v2) in front of a model service (the pipelines, batched) in processes of their own; `monolith` runs
# the pipelines inside each entry worker, with the same in-process batching and no hop between services.
# The default, monolith, measured ahead on this machine (README, "Monolith or services"); setting
# MODEL_SERVICE_URL (`services` only: the model service as a server of its own, `bentoml serve
# service:ModelService` on another port, host or pod, e.g. "http://model-service:3000") implies `services`.
MODEL_SERVICE_URL: str = os.environ.get("MODEL_SERVICE_URL", "").strip().rstrip("/")
SERVICE_LAYOUT: str = os.environ.get("SERVICE_LAYOUT", "").strip() or ("services" if MODEL_SERVICE_URL else "monolith")
if SERVICE_LAYOUT not in ("services", "monolith"):
    raise SystemExit(f"error: SERVICE_LAYOUT={SERVICE_LAYOUT!r} must be 'services' or 'monolith'")
MONOLITH: bool = SERVICE_LAYOUT == "monolith"
if MODEL_SERVICE_URL and not MODEL_SERVICE_URL.startswith(("http://", "https://")):
    raise SystemExit(f"error: MODEL_SERVICE_URL={MODEL_SERVICE_URL!r} must start with http:// or https://")
if MODEL_SERVICE_URL and MONOLITH:
    raise SystemExit(
        "error: MODEL_SERVICE_URL needs SERVICE_LAYOUT=services: a monolith runs the model in its own workers"
    )

# Processes and threads. The entry (HTTP) service is async, so one worker carries many requests; a monolith's
# workers also run the model, one per core by default.
API_WORKERS: int = _int("API_WORKERS", (os.cpu_count() or 1) if MONOLITH else 1, minimum=1)
MODEL_WORKERS: int = _int("MODEL_WORKERS", 1, minimum=1)
MODEL_THREADS: int = _int("MODEL_THREADS", 1, minimum=1)

# Seconds a request may take before it is answered 504, and requests in flight per entry worker
# before new ones are answered 429.
REQUEST_TIMEOUT_S: int = _int("REQUEST_TIMEOUT_S", 60, minimum=1)
# Seconds the entry service waits for the model service before answering 503: a dead model
# worker leaves its socket listening (BentoML's arbiter holds it), so calls would otherwise hang.
MODEL_TIMEOUT_S: int = _int("MODEL_TIMEOUT_S", 15, minimum=1)
MAX_CONCURRENCY: int = _int("MAX_CONCURRENCY", 1000, minimum=1)

# Size limits of the bulk endpoints.
MAX_BATCH_RECORDS: int = _int("MAX_BATCH_RECORDS", 10_000, minimum=1)
MAX_CSV_ROWS: int = _int("MAX_CSV_ROWS", 100_000, minimum=1)
# Largest request body (JSON or CSV upload), refused with 413 before it is parsed.
MAX_BODY_BYTES: int = _int("MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)

# When set, every prediction and /v1 route needs "Authorization: Bearer <API_KEY>";
# health probes, /metrics and the API docs stay open.
API_KEY: str = os.environ.get("API_KEY", "")
# A key per consumer (team): a YAML (or .toml) file mapping each consumer to the SHA-256 of its key,
# with optional limits (rps, burst, records_per_minute) and allowed route prefixes; written by
# `python -m tabserve.serving.edge.keys add TEAM`, re-read when it changes (tabserve/serving/edge/consumers.py). With
# API_KEY set too, that key is one more consumer, "default". Quotas are per entry worker.
API_KEYS_FILE: str = os.environ.get("API_KEYS_FILE", "").strip()

# Browser origins allowed to call the API (comma-separated, "*" for any); empty: CORS off.
CORS_ORIGINS: list[str] = [o.strip() for o in os.environ.get("CORS_ORIGINS", "").split(",") if o.strip()]

# Predictions kept in an in-process LRU cache, keyed by model tag and validated record; 0 disables it.
PREDICTION_CACHE_SIZE: int = _int("PREDICTION_CACHE_SIZE", 10_000)


# The prediction cache shared by every worker and replica: a Redis URL ("redis://host:6379/0"); empty
# keeps the in-process LRU above. Keys carry the model tag; entries expire after CACHE_TTL_S. A Redis
# call slower than REDIS_TIMEOUT_MS counts as a failure: the prediction goes on uncached, the failure is
# counted on /metrics, and Redis is tried again after a pause (tabserve/serving/inference/cache.py).
REDIS_URL: str = os.environ.get("REDIS_URL", "").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise SystemExit(
        f"error: REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix:// (e.g. redis://localhost:6379/0)"
    )
CACHE_TTL_S: int = _int("CACHE_TTL_S", 3600, minimum=1)
REDIS_TIMEOUT_MS: int = _int("REDIS_TIMEOUT_MS", 100, minimum=1)

# Features looked up by entity id (GET /v1/entities/{id}/predict): the database as a SQLAlchemy URL
# (SQLite needs no server; "postgresql+psycopg://user@host/db" for PostgreSQL), the table, and its id
# column (empty: the table's primary key). `python -m tabserve.serving.api.feature_table load data.csv --id-column ID`
# fills the table. A lookup slower than FEATURE_DB_TIMEOUT_MS answers 503; connections are pooled.
FEATURE_DB_URL: str = os.environ.get("FEATURE_DB_URL", "").strip() or "sqlite:///features.db"
FEATURE_TABLE: str = os.environ.get("FEATURE_TABLE", "").strip() or "features"
FEATURE_ID_COLUMN: str = os.environ.get("FEATURE_ID_COLUMN", "").strip()
FEATURE_DB_TIMEOUT_MS: int = _int("FEATURE_DB_TIMEOUT_MS", 1000, minimum=1)
FEATURE_DB_POOL_SIZE: int = _int("FEATURE_DB_POOL_SIZE", 5, minimum=1)


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


# Drift against the training data (GET /v1/drift, tabserve_feature_drift_psi on /metrics; tabserve/serving/observe/drift.py).
# Every prediction counts its inputs and prediction into the bins of the reference profile train.py keeps in
# the model card; the counters add up across workers and replicas. The live window is the last DRIFT_WINDOW_S
# seconds (0: since the server started), sampled every DRIFT_REFRESH_S seconds, which also refreshes the PSI
# gauges. Per feature and overall: "ok" below DRIFT_WARN_PSI, "warn" from it, "alert" from DRIFT_ALERT_PSI, and
# "too few" while the window holds fewer than DRIFT_MIN_RECORDS records (a sample of n records from the
# training distribution itself reads a PSI of about 10/n from noise alone).
# DRIFT_COUNTING=0 counts nothing (the benchmark measures its cost; /v1/drift then answers status "off").
DRIFT_COUNTING: bool = _int("DRIFT_COUNTING", 1) > 0
DRIFT_WINDOW_S: int = _int("DRIFT_WINDOW_S", 0)
DRIFT_REFRESH_S: float = _float("DRIFT_REFRESH_S", 5.0, minimum=0.1)
DRIFT_MIN_RECORDS: int = _int("DRIFT_MIN_RECORDS", 500, minimum=1)
DRIFT_WARN_PSI: float = _float("DRIFT_WARN_PSI", 0.1)
DRIFT_ALERT_PSI: float = _float("DRIFT_ALERT_PSI", 0.25)
if DRIFT_WARN_PSI > DRIFT_ALERT_PSI:
    raise SystemExit(f"error: DRIFT_WARN_PSI={DRIFT_WARN_PSI:g} must not exceed DRIFT_ALERT_PSI={DRIFT_ALERT_PSI:g}")

# The payload log (tabserve/serving/observe/payload_log.py): PAYLOAD_LOG=1 writes every predicted record (the inputs as
# validated, the prediction and probabilities, warnings, model tag, route, request id, latency) as one JSON line
# through BentoML's monitoring API (bentoml.monitor) into PAYLOAD_LOG_DIR/<model name>/data/data.<worker>.log, off
# the answer's path; `python -m tabserve.serving.observe.drift_report` reads it. A relative PAYLOAD_LOG_DIR is relative to the
# directory the service runs in (the project folder under `make serve`). PAYLOAD_LOG_SAMPLE keeps each record with
# that probability (0-1). PAYLOAD_LOG_REDACT (comma-separated feature names) writes those features' values as a
# keyed hash, HMAC-SHA256 with the secret PAYLOAD_LOG_SALT (required with it; the same on every worker and replica),
# first 16 hex digits; a name that is not a feature stops the server at start with one line. A write that fails
# never fails a prediction: counted on /metrics (tabserve_payload_log_errors_total) and logged once.
PAYLOAD_LOG: bool = _int("PAYLOAD_LOG", 0) > 0
PAYLOAD_LOG_SAMPLE: float = _float("PAYLOAD_LOG_SAMPLE", 1.0)
if PAYLOAD_LOG_SAMPLE > 1:
    raise SystemExit(f"error: PAYLOAD_LOG_SAMPLE={PAYLOAD_LOG_SAMPLE:g} must be between 0 and 1")
PAYLOAD_LOG_DIR: str = os.environ.get("PAYLOAD_LOG_DIR", "").strip() or "payload_log"
PAYLOAD_LOG_REDACT: list[str] = [f.strip() for f in os.environ.get("PAYLOAD_LOG_REDACT", "").split(",") if f.strip()]
PAYLOAD_LOG_SALT: str = os.environ.get("PAYLOAD_LOG_SALT", "")
