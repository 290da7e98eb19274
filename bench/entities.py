"""Locust load test: predict by entity id, GET /v1/entities/{id}/predict (features from the feature table).

The server needs the table first, e.g. (SQLite beside the server, or PostgreSQL with FEATURE_DB_URL):

    python -m tabserve.serving.api.feature_table load data/penguins.csv --id-column penguin_id --number-rows --db sqlite:///features.db
    FEATURE_DB_URL=sqlite:///features.db bentoml serve --port 3100
    locust -f bench/entities.py --headless -u 32 -r 32 -t 15s --host http://127.0.0.1:3100 ById

Every request asks for a random entity (1..BENCH_ENTITIES, default 344: the rows of data/penguins.csv)
with `year` given as a query parameter drawn from a wide range, so the cache (keyed by the record) almost
never answers and each request pays one lookup and one model call. `ByIdCached` asks for the ids alone:
after the first round the cache answers and the request pays the lookup only. Neither has think time.

How the time splits shows on /metrics: tabserve_feature_lookup_seconds{result} (the database) beside
tabserve_model_call_seconds{api="predict"} (the model service); the benchmark reads both (bench/harness/scrape.py,
with `lookup_vs_model`) before and after a level, like it reads tabserve_pipeline_batch_records: its "byid"
level is `ById` at 32 users against the shipped server.

The Locust users are defined only when Locust loads this file (locust is imported by then): importing
locust patches the process with gevent, which the benchmark's runner, importing `lookup_vs_model` from here (in
bench/harness/scrape.py), must not.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import sys

ENTITIES = int(os.environ.get("BENCH_ENTITIES", "344"))
SEED = os.environ.get("BENCH_SEED", "0")
_user_numbers = itertools.count()


def lookup_vs_model(metrics_text: str) -> dict[str, tuple[float, float]]:
    """{"lookup": (seconds, count), "model": (seconds, count)} summed from a /metrics text: the feature
    lookups that found their row, and the entry worker's calls to the batched model API. The difference
    of two readings over a level, sum/count, is each one's mean time per call in that level."""
    totals = {"lookup": [0.0, 0.0], "model": [0.0, 0.0]}
    patterns = {
        "lookup": re.compile(
            r'tabserve_feature_lookup_seconds_(sum|count)\{[^}]*result="found"[^}]*\}\s+([0-9.eE+-]+)'
        ),
        "model": re.compile(r'tabserve_model_call_seconds_(sum|count)\{[^}]*api="predict"[^}]*\}\s+([0-9.eE+-]+)'),
    }
    for line in metrics_text.splitlines():
        for name, pattern in patterns.items():
            match = pattern.match(line)
            if match:
                totals[name][0 if match.group(1) == "sum" else 1] += float(match.group(2))
    return {name: (seconds, count) for name, (seconds, count) in totals.items()}


if "locust" in sys.modules:  # loaded by Locust; bench/harness/scrape.py imports only lookup_vs_model
    from locust import FastHttpUser, constant, task

    class ById(FastHttpUser):
        wait_time = constant(0)

        def on_start(self) -> None:
            self.rng = random.Random(f"{SEED}-byid-{next(_user_numbers)}")

        @task
        def predict_by_id(self) -> None:
            entity = self.rng.randint(1, ENTITIES)
            year = self.rng.randint(1900, 2100) + round(
                self.rng.random(), 3
            )  # a new record (almost) every time: no cache hit
            self.client.get(f"/v1/entities/{entity}/predict?year={year}", name="/v1/entities/{id}/predict")

    class ByIdCached(FastHttpUser):
        wait_time = constant(0)

        def on_start(self) -> None:
            self.rng = random.Random(f"{SEED}-byid-cached-{next(_user_numbers)}")

        @task
        def predict_by_id(self) -> None:
            self.client.get(
                f"/v1/entities/{self.rng.randint(1, ENTITIES)}/predict", name="/v1/entities/{id}/predict (cached)"
            )
