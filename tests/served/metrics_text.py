"""Reading Prometheus text from /metrics in tests."""

import re

import requests

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(\{(?P<labels>[^}]*)\})? (?P<value>\S+)$', re.M)


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of samples called `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for match in SAMPLE.finditer(requests.get(f"{url}/metrics", timeout=10).text):
        if match["name"] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match["value"])
    return total


def model_batches(url: str) -> float:
    """How many pipeline calls the batched ModelService.predict has made."""
    return metric(url, "tabserve_pipeline_batch_records_count", api="predict")
