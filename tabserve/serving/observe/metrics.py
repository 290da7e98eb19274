"""The service's own Prometheus metrics, served on /metrics beside BentoML's.

prometheus_client is imported on first use, not at import: BentoML sets up its multiprocess
directory in each worker after importing the service module, and metrics made earlier would
never reach /metrics.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Any

from tabserve.core.schema import label_text

PREFIX = "tabserve"
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))


@lru_cache(maxsize=1)
def _metrics() -> dict[str, Any]:
    import prometheus_client as prom

    return {
        "predictions": prom.Counter(
            f"{PREFIX}_predictions", "Predictions answered, per predicted label", ["model", "label"]
        ),
        "predicted_value": prom.Histogram(
            f"{PREFIX}_predicted_value",
            "Predicted values (regression)",
            ["model"],
            buckets=(-1000, -100, -10, -1, 0, 1, 10, 100, 1000, 10_000, 100_000, float("inf")),
        ),
        "cache": prom.Counter(f"{PREFIX}_prediction_cache", "Prediction cache lookups", ["result"]),
        "cache_errors": prom.Counter(
            f"{PREFIX}_cache_errors",
            "Prediction cache (Redis) calls that failed or timed out; the prediction went on uncached",
            ["operation"],
        ),
        "validation_errors": prom.Counter(
            f"{PREFIX}_validation_errors", "Requests refused as invalid (4xx)", ["endpoint", "status"]
        ),
        "out_of_range": prom.Counter(
            f"{PREFIX}_out_of_range_inputs",
            "Inputs outside what training saw: numbers outside the training range, values answered as 'other'",
            ["feature"],
        ),
        # BentoML's own bentoml_service_adaptive_batch_size counts the *calls* it merged; a call from the
        # entry worker already carries several records (tabserve/batching.py), so count records here.
        # Usage per consumer (tabserve/serving/edge/consumers.py), counted by the gate on protected routes.
        "requests": prom.Counter(
            f"{PREFIX}_requests",
            "Requests to protected routes, per consumer, route template and status",
            ["consumer", "route", "status"],
        ),
        "records": prom.Counter(f"{PREFIX}_records", "Records scored (answered 2xx), per consumer", ["consumer"]),
        "batch_records": prom.Histogram(
            f"{PREFIX}_pipeline_batch_records",
            "Records per pipeline call on the model service",
            ["api"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10_000, float("inf")),
        ),
        # Where a predict-by-id request spends its time: the feature lookup (per result: found, not_found,
        # error, timeout) beside the entry worker's calls to the model service (per model-service API).
        "feature_lookup": prom.Histogram(
            f"{PREFIX}_feature_lookup_seconds",
            "Feature table lookups by entity id, per result",
            ["result"],
            buckets=SECONDS,
        ),
        # Per entry worker (BentoML's worker index): with several workers, the kernel spreads connections among
        # them unevenly; this shows how unevenly.
        "worker_requests": prom.Counter(
            f"{PREFIX}_worker_requests", "Requests to protected routes, per entry worker", ["worker"]
        ),
        "model_call": prom.Histogram(
            f"{PREFIX}_model_call_seconds",
            "Calls from the entry worker to the model service, per API",
            ["api"],
            buckets=SECONDS,
        ),
    }


def observe_predictions(model: str, items: list[dict[str, Any]], out_of_range: list[dict[str, str]]) -> None:
    """Count answers per label (or observe predicted values), and inputs outside the training range."""
    metrics = _metrics()
    labels: Counter[str] = Counter()  # one increment per label and batch, not per answer (a shared-memory write each)
    for item in items:
        prediction = item["prediction"]
        if item.get("probabilities") is None and isinstance(prediction, float):  # regression
            metrics["predicted_value"].labels(model=model).observe(prediction)
        else:
            labels[label_text(prediction)] += 1
    for label, n in labels.items():
        metrics["predictions"].labels(model=model, label=label).inc(n)
    for feature, n in Counter(feature for flagged in out_of_range for feature in flagged).items():
        metrics["out_of_range"].labels(feature=feature).inc(n)


def observe_cache(hit: bool) -> None:
    _metrics()["cache"].labels(result="hit" if hit else "miss").inc()


def observe_cache_error(operation: str) -> None:
    _metrics()["cache_errors"].labels(operation=operation).inc()


@lru_cache(maxsize=1)
def _worker() -> str:
    import bentoml  # its public server context (bentoml._internal stays in tabserve/bentoml_fixes.py)

    return str(bentoml.server_context.worker_index or 0)


def observe_worker_request() -> None:
    _metrics()["worker_requests"].labels(worker=_worker()).inc()


def observe_refusal(path: str, status: int) -> None:
    # The route template, not the path: an entity id or a fuzzer's bytes must not become a series.
    _metrics()["validation_errors"].labels(endpoint=endpoint_label(path), status=str(status)).inc()


def observe_pipeline_call(api: str, records: int) -> None:
    _metrics()["batch_records"].labels(api=api).observe(records)


def observe_feature_lookup(result: str, seconds: float) -> None:
    _metrics()["feature_lookup"].labels(result=result).observe(seconds)


def observe_model_call(api: str, seconds: float) -> None:
    _metrics()["model_call"].labels(api=api).observe(seconds)


# Route templates for the `route` label: raw paths (/v1/features/<anything>) would make a series per path.
ROUTES = [
    (re.compile(pattern), template)
    for pattern, template in [
        (r"/predict", "/predict"),
        (r"/predict_batch", "/predict_batch"),
        (r"/predict_csv", "/predict_csv"),
        (r"/v1/model", "/v1/model"),
        (r"/v1/features", "/v1/features"),
        (r"/v1/features/[^/]+", "/v1/features/{name}"),
        (r"/v1/drift", "/v1/drift"),
        (r"/v1/models", "/v1/models"),
        (r"/v1/admin/promote", "/v1/admin/promote"),
        (r"/v1/models/[^/]+", "/v1/models/{version}"),
        (r"/v1/models/[^/]+/(predict|comparison)", "/v1/models/{version}/\\1"),
        (r"/v1/predict", "/v1/predict"),
        (r"/v1/form", "/v1/form"),
        (r"/v1/entities/[^/]+/predict", "/v1/entities/{id}/predict"),
        (r"/v2/?", "/v2"),
        (r"/v2/health/live", "/v2/health/live"),
        (r"/v2/health/ready", "/v2/health/ready"),
        (r"/v2/models/[^/]+", "/v2/models/{model}"),
        (r"/v2/models/[^/]+/(ready|infer)", "/v2/models/{model}/\\1"),
        (r"/v2/models/[^/]+/versions/[^/]+", "/v2/models/{model}/versions/{version}"),
        (r"/v2/models/[^/]+/versions/[^/]+/(ready|infer)", "/v2/models/{model}/versions/{version}/\\1"),
    ]
]


EXACT = {template for pattern, template in ROUTES if pattern.pattern == template}


# Routes without parameters that BentoML itself serves (probes, docs, metrics): kept as they are in the
# `endpoint` label of BentoML's request metrics; any other unknown path is "other".
PLAIN_PATHS = frozenset(
    {"/", "/docs.json", "/readyz", "/livez", "/healthz", "/metrics", "/predict_bulk"}
)  # the last: ModelService


def endpoint_label(path: str) -> str:
    """The `endpoint` label of BentoML's request metrics: a route template, never a raw path with ids."""
    label = route_label(path)
    return path if label == "other" and path in PLAIN_PATHS else label


@lru_cache(maxsize=4096)
def route_label(path: str) -> str:
    """The route template a path matches, or "other"."""
    if path in EXACT:
        return path
    if not path.startswith(("/v1/features/", "/v1/entities/", "/v1/models/", "/v2")):
        return "other"
    for pattern, template in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return (
                template.replace("\\1", match.group(1)) if match.groups() else template
            )  # (not match.expand: it parses the template each time)
    return "other"


def observe_request(consumer: str, path: str, status: int) -> None:
    _metrics()["requests"].labels(consumer=consumer, route=route_label(path), status=str(status)).inc()


def observe_records(consumer: str, records: int) -> None:
    if records:
        _metrics()["records"].labels(consumer=consumer).inc(records)


# Drift against the training reference (tabserve/serving/observe/drift.py, tabserve/core/profile.py). The counters
# add up across workers, processes and replicas: increase(tabserve_feature_values_total[1h]) per bin is the
# live distribution of the last hour. The gauges are set by every entry worker from the totals of all of them
# ("mostrecent": the latest write wins), refreshed every DRIFT_REFRESH_S; NaN while the window holds fewer
# than DRIFT_MIN_RECORDS records.
FEATURE_VALUES = f"{PREFIX}_feature_values"
PREDICTED_VALUES = f"{PREFIX}_predicted_values"
DRIFT_SINCE = f"{PREFIX}_drift_counting_since_seconds"


@lru_cache(maxsize=1)
def drift_metrics() -> dict[str, Any]:
    import prometheus_client as prom

    return {
        "feature_values": prom.Counter(
            FEATURE_VALUES,
            "Served input values per feature and bin of the training reference",
            ["model", "feature", "bin"],
        ),
        "predicted_values": prom.Counter(
            PREDICTED_VALUES, "Served predictions per bin of the reference's prediction distribution", ["model", "bin"]
        ),
        "feature_psi": prom.Gauge(
            f"{PREFIX}_feature_drift_psi",
            "PSI of the drift window against the training reference, per feature",
            ["model", "feature"],
            multiprocess_mode="mostrecent",
        ),
        "prediction_psi": prom.Gauge(
            f"{PREFIX}_prediction_drift_psi",
            "PSI of the window's predictions against those on the held-out split",
            ["model"],
            multiprocess_mode="mostrecent",
        ),
        "window_records": prom.Gauge(
            f"{PREFIX}_drift_window_records", "Records in the drift window", ["model"], multiprocess_mode="mostrecent"
        ),
        # The earliest entry worker's start: when the counters began (DRIFT_WINDOW_S=0 windows start here).
        "since": prom.Gauge(
            DRIFT_SINCE, "Unix time the drift counters started counting", ["model"], multiprocess_mode="min"
        ),
    }


# The payload log (tabserve/serving/observe/payload_log.py): records predicted and answered but not written, per reason:
# "write" (a full disk, a directory that cannot be created or written) or "backlog" (more requests waiting for the
# writer thread than it keeps).
@lru_cache(maxsize=1)
def payload_log_metrics() -> dict[str, Any]:
    import prometheus_client as prom

    return {
        "errors": prom.Counter(
            f"{PREFIX}_payload_log_errors", "Predicted records the payload log could not write, per reason", ["reason"]
        )
    }


def observe_payload_log_error(reason: str, records: int) -> None:
    payload_log_metrics()["errors"].labels(reason=reason).inc(records)


# Model versions (serving/rollout/versions.py, serving/rollout/shadow.py): swaps of champion by the store
# watcher, per result ("swapped"; "refused": incompatible, or failed to load or predict), and the challenger's
# shadow predictions compared with the champion's, per result ("agree", "disagree", "failed": the challenger
# raised or timed out, "skipped": the shadow backlog was full), with the largest probability difference per
# record (classification) and the sum of absolute differences (regression: its mean is sum / count).
SHADOW_PREDICTIONS = f"{PREFIX}_shadow_predictions"
CHAMPION_WORKERS = f"{PREFIX}_champion_workers"
SHADOW_DIFFERENCE = f"{PREFIX}_shadow_probability_difference"
SHADOW_ABS_DIFFERENCE = f"{PREFIX}_shadow_absolute_difference"


@lru_cache(maxsize=1)
def version_metrics() -> dict[str, Any]:
    import prometheus_client as prom

    pair = ["champion", "challenger"]
    return {
        "swaps": prom.Counter(
            f"{PREFIX}_model_swaps", "New model versions found by the store watcher, per result", ["result"]
        ),
        # Summed over the live workers: how many answer with each version now (a swap reaches every worker
        # within a second; a dashboard or a test waits for the old champion's count to reach 0).
        "champion": prom.Gauge(
            CHAMPION_WORKERS, "Entry workers whose champion is this version", ["model"], multiprocess_mode="livesum"
        ),
        "shadow": prom.Counter(
            SHADOW_PREDICTIONS, "Challenger predictions compared with the champion's, per result", [*pair, "result"]
        ),
        "difference": prom.Histogram(
            SHADOW_DIFFERENCE,
            "Largest difference of a class probability between champion and challenger, per record",
            pair,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
        ),
        "absolute": prom.Counter(
            SHADOW_ABS_DIFFERENCE, "Sum of |champion - challenger| over compared regression predictions", pair
        ),
    }


def observe_swap(result: str) -> None:
    version_metrics()["swaps"].labels(result=result).inc()


def observe_champion(old: str | None, new: str) -> None:
    """This worker answers with `new` now (and no longer with `old`)."""
    gauge = version_metrics()["champion"]
    if old is not None:
        gauge.labels(model=old).set(0)
    gauge.labels(model=new).set(1)


def every_worker(*kinds: str) -> Any:
    """The metric families of every process of this server, for the kinds given ("counter", "histogram",
    "gauge_min", ...): from BentoML's multiprocess directory under `bentoml serve`, else this process's registry."""
    import glob
    import os

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and os.path.isdir(path):
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [f for kind in kinds for f in glob.glob(os.path.join(path, f"{kind}_*.db"))]
        return MultiProcessCollector.merge(files, accumulate=True)
    import prometheus_client

    return prometheus_client.REGISTRY.collect()
