"""What the project's /metrics says, read before and after each Locust run: prediction cache hits, records per
batched pipeline call, and (predict by id) the feature lookup's and the model call's times."""

from __future__ import annotations

import re

from entities import lookup_vs_model  # without locust (it would patch this process with gevent)

from harness.net import http


def metrics_text(base: str) -> str:
    status, body = http("GET", base + "/metrics")
    return body.decode() if status == 200 else ""


def cache_lookups(base: str) -> tuple[float, float]:
    """(hits, hits + misses) of the project's prediction cache; (0, 0) where there is none (FastAPI)."""
    status, body = http("GET", base + "/metrics")
    counts = {"hit": 0.0, "miss": 0.0}
    if status == 200:
        for line in body.decode().splitlines():
            match = re.match(r'tabserve_prediction_cache_total\{result="(hit|miss)"\}\s+([0-9.eE+-]+)', line)
            if match:
                counts[match.group(1)] += float(match.group(2))
    return counts["hit"], counts["hit"] + counts["miss"]


def batch_histogram(base: str) -> tuple[float, float]:
    """(sum, count) of records per batched pipeline call (tabserve_pipeline_batch_records), over all workers."""
    status, body = http("GET", base + "/metrics")
    total = count = 0.0
    if status != 200:
        return total, count
    for line in body.decode().splitlines():
        match = re.match(
            r'tabserve_pipeline_batch_records_(sum|count)\{[^}]*api="predict"[^}]*\}\s+([0-9.eE+-]+)', line
        )
        if match:
            if match.group(1) == "sum":
                total += float(match.group(2))
            else:
                count += float(match.group(2))
    return total, count


def lookup_and_model_times(base: str) -> dict[str, tuple[float, float]]:
    """{"lookup": (seconds, count), "model": (seconds, count)} so far (bench/entities.py's lookup_vs_model)."""
    return lookup_vs_model(metrics_text(base))
