"""Locust load test: single-record POST /predict and bulk POST /predict_batch (1,000 records).

Records are sampled (seeded) from data/penguins.csv, measurements jittered so bodies are unique
(no prediction-cache hits), missing values sent as null. Users have no
think time (closed loop): N users = N requests in flight. bench/run.py drives it headless, e.g.

    locust -f bench/locustfile.py --headless -u 32 -r 32 -t 15s --host http://127.0.0.1:3100 SingleRecord
    locust -f bench/locustfile.py --headless -u 4 -r 4 -t 15s --host http://127.0.0.1:3100 BulkRecords
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, constant, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import load_records  # noqa: E402

BULK_SIZE = int(os.environ.get("BENCH_BULK_SIZE", "1000"))
HEADERS = {"Content-Type": "application/json"}


RECORDS = load_records()
_rng = random.Random(42)


def _unique(record: dict) -> dict:
    """A data row with its measurements jittered by up to 1 %: realistic values, but (almost) never
    the same body twice, so the project's prediction cache can't answer instead of the model."""
    out = dict(record)
    for name in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        if out[name] is not None:
            out[name] = round(out[name] * (1 + _rng.uniform(-0.01, 0.01)), 3)
    return out


# Pre-encoded bodies: the load generator shares the 2 cores with the server, so it does as little as it can.
# 30,000 single bodies cycle: more than the prediction cache holds (PREDICTION_CACHE_SIZE, 10,000).
SINGLE_BODIES = [json.dumps(_unique(_rng.choice(RECORDS))).encode() for _ in range(30_000)]
BULK_BODIES = [json.dumps({"records": [_unique(_rng.choice(RECORDS)) for _ in range(BULK_SIZE)]}).encode()
               for _ in range(8)]


class SingleRecord(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self._i = random.randrange(len(SINGLE_BODIES))

    @task
    def predict(self) -> None:
        self._i = (self._i + 1) % len(SINGLE_BODIES)
        self.client.post("/predict", data=SINGLE_BODIES[self._i], headers=HEADERS, name="/predict")


class BulkRecords(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 120.0

    @task
    def predict_batch(self) -> None:
        body = BULK_BODIES[random.randrange(len(BULK_BODIES))]
        self.client.post("/predict_batch", data=body, headers=HEADERS, name="/predict_batch")
