"""Reading /metrics in tests, with prometheus_client's own parser of the text format."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def parse(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def samples(url: str) -> list[Sample]:
    response = requests.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    return parse(response.text)


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of samples called `name` (as exposed: `..._total`, `..._count`) whose labels include
    `labels`, over all workers (0 when none)."""
    return sum(s.value for s in samples(url) if s.name == name and labels.items() <= s.labels.items())


def histogram(url: str, name: str, **labels: str) -> dict[float, float]:
    """{upper bound: cumulative count} of histogram `name` (inf for +Inf) over the samples whose labels
    include `labels`, summed over workers."""
    buckets: dict[float, float] = {}
    for sample in samples(url):
        if sample.name == f"{name}_bucket" and labels.items() <= sample.labels.items():
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0) + sample.value
    return buckets


def model_batches(url: str) -> float:
    """How many pipeline calls the batched ModelService.predict has made."""
    return metric(url, "tabserve_pipeline_batch_records_count", api="predict")
