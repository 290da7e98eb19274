"""Locust load test: single-record POST /predict and bulk POST /predict_batch (1,000 records).

Every body is new: a data row (data/penguins.csv, missing values as null) with its four measurements
jittered by up to 1 %, drawn per request from a generator seeded by BENCH_SEED and the user's number.
So the project's prediction cache never answers instead of the model (the runner reports the hit
rate), and every server gets the same sequence of bodies for the same seed. Users have no think time
(closed loop): N users = N requests in flight. bench/run.py drives it headless, e.g.

    locust -f bench/locustfile.py --headless -u 32 -r 32 -t 15s --host http://127.0.0.1:3100 SingleRecord
    locust -f bench/locustfile.py --headless -u 4 -r 4 -t 15s --host http://127.0.0.1:3100 BulkRecords

The peers (bench/peers/) get the same records, each in its own request format: MLServerSingle and
MLServerBulk send them as V2 inference requests (records.v2_request: one row, or the same 1,000 rows as
a bulk body), LitServeSingle sends the very body of SingleRecord to LitServe's /predict and LitServeBulk
the very body of BulkRecords ({"records": [...]}) to the same /predict. Every request asks for an
uncompressed answer (Accept-Encoding: identity): Locust would ask for gzip, which MLServer and LitServe
honour for answers over 500/1,000 bytes and BentoML does not, so the peers would compress on the loopback.

ExplainedRecord and ExplainedBulk are SingleRecord and BulkRecords asking for explanations
(`POST /predict?explain=true`, `POST /predict_batch?explain=true`): the project's explained points, measured
against the same server as the unexplained ones (bench/README.md, "Explanations"). bench/latency.py keeps
exact latency percentiles beside Locust's rounded ones.
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
import latency  # noqa: E402, F401 - exact percentiles when BENCH_LATENCY_FILE is set (bench/latency.py)
from records import V2_PATH, load_records, v2_request  # noqa: E402

BULK_SIZE = int(os.environ.get("BENCH_BULK_SIZE", "1000"))
HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}


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
    path = "/predict"

    def on_start(self) -> None:
        self.rng = random.Random(f"{SEED}-{next(_user_numbers)}")

    @staticmethod
    def encode(record: dict) -> bytes:
        return json.dumps(record).encode()

    @task
    def predict(self) -> None:
        body = self.encode(_unique(self.rng.choice(RECORDS), self.rng))
        self.client.post(self.path, data=body, headers=HEADERS, name=self.path)


class MLServerSingle(SingleRecord):
    """The same record as SingleRecord (the same draw), as a one-row V2 request to MLServer."""

    path = V2_PATH

    @staticmethod
    def encode(record: dict) -> bytes:
        return json.dumps(v2_request([record])).encode()


class LitServeSingle(SingleRecord):
    """The same body as SingleRecord, to LitServe's /predict (it answers the project's /predict shape)."""


class ExplainedRecord(SingleRecord):
    """SingleRecord's bodies with each answer explained (the runner gives it a seed of its own, so new bodies)."""

    path = "/predict?explain=true"


# Bulk bodies are pre-encoded (8 of 1,000 records; bulk answers are not cached): building and encoding
# 1,000 records per request would cost the load generator, on the same 2 cores, more than the server.
_bulk_rng = random.Random(f"{SEED}-bulk")
BULK_RECORDS = [[_unique(_bulk_rng.choice(RECORDS), _bulk_rng) for _ in range(BULK_SIZE)] for _ in range(8)]
BULK_BODIES = [json.dumps({"records": records}).encode() for records in BULK_RECORDS]


class BulkRecords(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 120.0
    path = "/predict_batch"

    def bodies(self) -> list[bytes]:
        return BULK_BODIES

    @task
    def predict_batch(self) -> None:
        bodies = self.bodies()
        self.client.post(self.path, data=bodies[random.randrange(len(bodies))], headers=HEADERS, name=self.path)


_v2_bulk_bodies: list[bytes] = []


class MLServerBulk(BulkRecords):
    """The same 8 bodies of 1,000 records, each as one V2 request of 1,000 rows."""

    path = V2_PATH

    def bodies(self) -> list[bytes]:
        if not _v2_bulk_bodies:  # built once per Locust process, only when this user runs
            _v2_bulk_bodies.extend(json.dumps(v2_request(records)).encode() for records in BULK_RECORDS)
        return _v2_bulk_bodies


class LitServeBulk(BulkRecords):
    """The same bodies as BulkRecords ({"records": [...]}) to LitServe's /predict: its decode_request takes
    a record or a list of them, and a batch of requests is one pipeline call over all their rows."""

    path = "/predict"


class ExplainedBulk(BulkRecords):
    """The same 8 bodies of 1,000 records as BulkRecords, every record explained."""

    path = "/predict_batch?explain=true"
