"""Exact latency percentiles, rate and counts of a Locust run, beside Locust's own.

Locust's CSV rounds each response time before it counts it (to the millisecond under 100 ms, to 10 ms under 1 s),
so a lone client's p50 of 3 or 4 ms moves by a third with one step: too coarse for a ratio of two latencies (the
explained points' target, bench/README.md "Explanations"). And its CSV is written once a second, the last time
before Locust stops: the requests still in flight then (Locust lets them finish, --stop-timeout) are left out,
which is nothing at a few ms per request and everything when one request takes longer than the run (an explained
1,000-record request to the LightGBM model: seconds), and a 1 s run (--smoke's explained points) can find it
empty. When BENCH_LATENCY_FILE is set (bench/harness/load.py sets it for every run), this listener keeps every
successful request's response time and end, counts the failed ones, and as Locust quits writes to that file
{"requests" (successful), "errors", "p50_ms", "p95_ms", "p99_ms" (nearest rank), "span_s" (first start to last
end), "ok_rps" (requests / span_s)}. Imported by bench/locustfile.py and bench/lightgbm/locustfile.py; two lists
of floats per Locust process (~10,000 entries per round).
"""

from __future__ import annotations

import json
import math
import os
import time

from locust import events

PATH = os.environ.get("BENCH_LATENCY_FILE")
_times: list[float] = []  # ms, as Locust measured them
_ends: list[float] = []  # time.time() as each answer was logged
_errors = [0]  # failed requests (an error status or no answer)


def summary(times: list[float], ends: list[float], errors: int = 0) -> dict:
    """Nearest-rank percentiles of response times in ms, and successful requests per second from the first
    request's start to the last one's end (None where there were none)."""
    ordered = sorted(times)

    def rank(q: float) -> float | None:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3) if ordered else None

    span = max(ends) - min(end - ms / 1000 for end, ms in zip(ends, times, strict=True)) if ends else 0.0
    return {
        "requests": len(ordered),
        "errors": errors,
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "span_s": round(span, 3),
        "ok_rps": round(len(ordered) / span, 3) if span > 0 else None,
    }


if PATH:

    @events.request.add_listener
    def _keep(response_time: float, exception: BaseException | None = None, **_kwargs) -> None:
        if exception is None:
            _times.append(response_time)
            _ends.append(time.time())
        else:
            _errors[0] += 1

    @events.quitting.add_listener
    def _write(**_kwargs) -> None:
        with open(PATH, "w") as handle:
            json.dump(summary(_times, _ends, _errors[0]), handle)
