"""The service's own Prometheus metrics, served on /metrics beside BentoML's.

prometheus_client is imported on first use, not at import: BentoML sets up its multiprocess
directory in each worker after importing the service module, and metrics made earlier would
never reach /metrics.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tabserve.core.schema import label_text

PREFIX = "tabserve"


@lru_cache(maxsize=1)
def _metrics() -> dict[str, Any]:
    import prometheus_client as prom

    return {
        "predictions": prom.Counter(f"{PREFIX}_predictions", "Predictions answered, per predicted label", ["model", "label"]),
        "predicted_value": prom.Histogram(
            f"{PREFIX}_predicted_value", "Predicted values (regression)", ["model"],
            buckets=(-1000, -100, -10, -1, 0, 1, 10, 100, 1000, 10_000, 100_000, float("inf")),
        ),
        "cache": prom.Counter(f"{PREFIX}_prediction_cache", "Prediction cache lookups", ["result"]),
        "validation_errors": prom.Counter(f"{PREFIX}_validation_errors", "Requests refused as invalid (4xx)", ["endpoint", "status"]),
        "out_of_range": prom.Counter(f"{PREFIX}_out_of_range_inputs", "Numeric inputs outside the training range", ["feature"]),
        # BentoML's own bentoml_service_adaptive_batch_size counts the *calls* it merged; a call from the
        # entry worker already carries several records (tabserve/batching.py), so count records here.
        "batch_records": prom.Histogram(
            f"{PREFIX}_pipeline_batch_records", "Records per pipeline call on the model service", ["api"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10_000, float("inf")),
        ),
    }


def observe_predictions(model: str, items: list[dict[str, Any]], out_of_range: list[dict[str, str]]) -> None:
    """Count answers per label (or observe predicted values), and inputs outside the training range."""
    metrics = _metrics()
    for item, flagged in zip(items, out_of_range):
        prediction = item["prediction"]
        if item.get("probabilities") is None and isinstance(prediction, float):  # regression
            metrics["predicted_value"].labels(model=model).observe(prediction)
        else:
            metrics["predictions"].labels(model=model, label=label_text(prediction)).inc()
        for feature in flagged:
            metrics["out_of_range"].labels(feature=feature).inc()


def observe_cache(hit: bool) -> None:
    _metrics()["cache"].labels(result="hit" if hit else "miss").inc()


def observe_refusal(endpoint: str, status: int) -> None:
    _metrics()["validation_errors"].labels(endpoint=endpoint, status=str(status)).inc()


def observe_pipeline_call(api: str, records: int) -> None:
    _metrics()["batch_records"].labels(api=api).observe(records)
