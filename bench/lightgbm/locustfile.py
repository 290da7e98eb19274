"""Locust users of the LightGBM scenario (bench/run.py --scenario lightgbm drives them headless, as
bench/locustfile.py's).

    BENCH_LGBM_DIR=<dir of generate.py make> locust -f bench/lightgbm/locustfile.py --headless -u 32 -r 32 -t 15s \
        --host http://127.0.0.1:3100 LightGBMSingle

Bodies: the held-out rows of the scenario's data set (records.json), each numeric value jittered by up to 1 %,
drawn from a generator seeded by BENCH_SEED; every server gets the same bodies in the same order for the same
seed. The pool is built once per Locust process, before the timed run starts (Locust's init event; 4,096 single
bodies, 8 bulk bodies of BENCH_BULK_SIZE records), so that encoding 50 fields per request does not cost the load
generator, which shares the 2 cores with the servers; each user walks the pool from its own starting point. The
project runs with its prediction cache off (PREDICTION_CACHE_SIZE=0), so a body seen twice costs it the same as a
new one.

- `LightGBMSingle` / `LightGBMBulk`: the project's `POST /predict` (the record) and `POST /predict_batch`
  (`{"records": [...]}`); the FastAPI baseline takes the same bodies on the same routes;
- `MLServerLightGBMSingle` / `MLServerLightGBMBulk`: the same records to MLServer's LightGBM runtime as V2
  inference requests: one FP64 tensor `[rows, 50]` in the booster's feature order, a category as its code
  (its position among the booster's categories): the stock runtime decodes the request with
  `NumpyRequestCodec` and calls `booster.predict` on it, so numbers are what it takes.
- `LightGBMExplainedSingle` / `LightGBMExplainedBulk`: the project's routes with `?explain=true` (the same pools; the
  runner gives the single-record users a seed of their own): each answer explained with the booster's own
  `pred_contrib` (bench/README.md, "Explanations").
Every request asks for an uncompressed answer (as bench/locustfile.py does). bench/latency.py keeps exact latency
percentiles beside Locust's rounded ones.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, constant, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ after the rest of the path (bench/latency.py): never ahead of the real `lightgbm` package.
sys.path.append(str(Path(__file__).resolve().parent.parent))
import latency  # noqa: E402, F401 - exact percentiles when BENCH_LATENCY_FILE is set (bench/latency.py)
from bodies import jitter, load, v2_request  # noqa: E402 - bench/lightgbm/bodies.py

DIR = Path(os.environ.get("BENCH_LGBM_DIR", "."))
SEED = os.environ.get("BENCH_SEED", "0")
BULK_SIZE = int(os.environ.get("BENCH_BULK_SIZE", "1000"))
V2_MODEL = os.environ.get("BENCH_LGBM_V2_MODEL", "lightgbm")
V2_PATH = f"/v2/models/{V2_MODEL}/infer"
HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
POOL = 4096


class _Bodies:
    """The pools, built once per Locust process for the users it runs (see _build_pools)."""

    def __init__(self) -> None:
        self._single: dict[str, list[bytes]] = {}
        self._bulk: dict[str, list[bytes]] = {}

    def single(self, v2: bool) -> list[bytes]:
        key = "v2" if v2 else "record"
        if key not in self._single:
            records, schema = load(DIR)
            rng = random.Random(f"{SEED}-single")
            drawn = [jitter(rng.choice(records), rng) for _ in range(POOL)]
            self._single[key] = [json.dumps(v2_request([r], schema) if v2 else r).encode() for r in drawn]
        return self._single[key]

    def bulk(self, v2: bool) -> list[bytes]:
        key = "v2" if v2 else "record"
        if key not in self._bulk:
            records, schema = load(DIR)
            rng = random.Random(f"{SEED}-bulk")
            drawn = [[jitter(rng.choice(records), rng) for _ in range(BULK_SIZE)] for _ in range(8)]
            self._bulk[key] = [json.dumps(v2_request(b, schema) if v2 else {"records": b}).encode() for b in drawn]
        return self._bulk[key]


BODIES = _Bodies()
_user_numbers = itertools.count()


@events.init.add_listener
def _build_pools(environment, **_kwargs) -> None:
    """The chosen users' bodies, before the clock of `-t` starts."""
    for user in environment.user_classes or []:
        if issubclass(user, LightGBMSingle):
            BODIES.single(user.v2)
        elif issubclass(user, LightGBMBulk):
            BODIES.bulk(user.v2)


class LightGBMSingle(FastHttpUser):
    wait_time = constant(0)
    path = "/predict"
    v2 = False

    def on_start(self) -> None:
        bodies = BODIES.single(self.v2)
        start = (next(_user_numbers) * 131) % len(bodies)
        self.bodies = itertools.cycle(bodies[start:] + bodies[:start])

    @task
    def predict(self) -> None:
        self.client.post(self.path, data=next(self.bodies), headers=HEADERS, name=self.path)


class MLServerLightGBMSingle(LightGBMSingle):
    path = V2_PATH
    v2 = True


class LightGBMExplainedSingle(LightGBMSingle):
    path = "/predict?explain=true"


class LightGBMBulk(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 120.0
    path = "/predict_batch"
    v2 = False

    @task
    def predict_batch(self) -> None:
        bodies = BODIES.bulk(self.v2)
        self.client.post(self.path, data=bodies[random.randrange(len(bodies))], headers=HEADERS, name=self.path)


class MLServerLightGBMBulk(LightGBMBulk):
    path = V2_PATH
    v2 = True


class LightGBMExplainedBulk(LightGBMBulk):
    path = "/predict_batch?explain=true"
