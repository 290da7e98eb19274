"""Locust load test: single-record POST /predict and bulk POST /predict_batch (1,000 records).

Every body is new: a data row (data/penguins.csv, missing values as null) with its four measurements
jittered by up to 1 %, drawn per request from a generator seeded by BENCH_SEED and the user's number.
So the project's prediction cache never answers instead of the model (the runner reports the hit
rate), and every server gets the same sequence of bodies for the same seed. Users have no think time
(closed loop): N users = N requests in flight. bench/run.py drives it headless, e.g.

    locust -f bench/locustfile.py --headless -u 32 -r 32 -t 15s --host http://127.0.0.1:3100 SingleRecord
    locust -f bench/locustfile.py --headless -u 4 -r 4 -t 15s --host http://127.0.0.1:3100 BulkRecords
"""

from __future__ import annotations

import itertools
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
SEED = os.environ.get("BENCH_SEED", "0")
_user_numbers = itertools.count()


def _unique(record: dict, rng: random.Random) -> dict:
    """A data row with its measurements jittered by up to 1 %: realistic values, but (almost) never
    the same body twice. Only the 2 rows with no measurement at all repeat (0.6 % of draws)."""
    out = dict(record)
    for name in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        if out[name] is not None:
            out[name] = round(out[name] * (1 + rng.uniform(-0.01, 0.01)), 3)
    return out


class SingleRecord(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random(f"{SEED}-{next(_user_numbers)}")

    @task
    def predict(self) -> None:
        body = json.dumps(_unique(self.rng.choice(RECORDS), self.rng)).encode()
        self.client.post("/predict", data=body, headers=HEADERS, name="/predict")


# Bulk bodies are pre-encoded (8 of 1,000 records; bulk answers are not cached): building and encoding
# 1,000 records per request would cost the load generator, on the same 2 cores, more than the server.
_bulk_rng = random.Random(f"{SEED}-bulk")
BULK_BODIES = [json.dumps({"records": [_unique(_bulk_rng.choice(RECORDS), _bulk_rng) for _ in range(BULK_SIZE)]}).encode()
               for _ in range(8)]


class BulkRecords(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 120.0

    @task
    def predict_batch(self) -> None:
        body = BULK_BODIES[random.randrange(len(BULK_BODIES))]
        self.client.post("/predict_batch", data=body, headers=HEADERS, name="/predict_batch")
