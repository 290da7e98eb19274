"""The in-process limit: rows/s of tabserve.core.pipeline.predict_records itself, no HTTP, at batch 1 and 1,000.

    BENTOML_HOME=... python bench/inprocess.py [--seconds 3] [--tag penguins:latest]

Prints one JSON object. Run it in a fresh process so thread settings (OMP_NUM_THREADS) apply.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(batch_sizes: list[int], seconds: float, tag: str) -> dict:
    import bentoml
    from records import load_records
    from threadpoolctl import threadpool_info

    from tabserve.core import pipeline, store
    from tabserve.core.card import ModelCard

    model = bentoml.models.get(tag)
    pipe = store.load_pipeline(model)
    schema = ModelCard.from_model(model).schema
    records = load_records()
    rng = random.Random(0)
    out: dict = {"threads": sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()}), "batches": {}}
    for size in batch_sizes:
        batch = [rng.choice(records) for _ in range(size)]
        pipeline.predict_records(pipe, schema, batch)  # warm
        calls, start = 0, time.perf_counter()
        while True:
            pipeline.predict_records(pipe, schema, batch)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and calls >= 3:
                break
        out["batches"][str(size)] = {
            "calls": calls,
            "ms_per_call": round(1000 * elapsed / calls, 3),
            "rows_per_s": round(size * calls / elapsed, 1),
        }
    out["threads"] = [list(t) for t in out["threads"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tag", default="penguins:latest")
    parser.add_argument("--sizes", default="1,1000")
    args = parser.parse_args()
    print(json.dumps(measure([int(s) for s in args.sizes.split(",")], args.seconds, args.tag)))


if __name__ == "__main__":
    main()
