"""One row per server and level from its rounds: throughput and counts summed or averaged, latency the worst
round's (and each round's p50), the server's CPU per request averaged, the /metrics deltas (records per batched
call, lookup vs model time) pooled over the rounds."""

from __future__ import annotations

import statistics


def combine(rounds: list[dict], batched: bool) -> dict:
    """One row from several rounds: throughput and counts summed or averaged, latency the worst round's."""
    out = {
        "rounds": len(rounds),
        "ok_rps_by_round": [r["ok_rps"] for r in rounds],
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "ok_rps": round(statistics.mean(r["ok_rps"] for r in rounds), 1),
        "rps": round(statistics.mean(r["rps"] for r in rounds), 1),
        "mean_ms": round(statistics.mean(r["mean_ms"] for r in rounds), 1),
        "loadgen_cpu_share": round(statistics.mean(r["loadgen_cpu_share"] for r in rounds), 2),
        "error_kinds": {},
    }
    for r in rounds:
        for kind, count in r["error_kinds"].items():
            out["error_kinds"][kind] = out["error_kinds"].get(kind, 0) + count
    for key in ("p50_ms", "p95_ms", "p99_ms", "p50_exact_ms", "p95_exact_ms", "p99_exact_ms"):
        values = [r[key] for r in rounds if r.get(key) is not None]
        out[key] = max(values) if values else None
    # Per round too, for ratios of two servers' (or two points') latencies in the same minute (bench/latency.py's
    # exact p50 where there is one, else Locust's rounded one).
    out["p50_ms_by_round"] = [r.get("p50_exact_ms", r["p50_ms"]) for r in rounds]
    # bench/latency.py's rate (successful requests from the first start to the last end, those Locust's CSV left
    # out as it stopped included): what the explained points are compared on.
    out["ok_rps_exact_by_round"] = [r.get("ok_rps_exact") for r in rounds]
    out["ok_requests_exact"] = sum(r.get("ok_requests_exact") or 0 for r in rounds)
    out["errors_exact"] = sum(r.get("errors_exact") or 0 for r in rounds)
    exact = [r["ok_rps_exact"] for r in rounds if r.get("ok_rps_exact") is not None]
    out["ok_rps_exact"] = round(statistics.mean(exact), 3) if exact else None
    if exact and "rows_per_s" in rounds[0]:
        out["rows_per_s_exact"] = round(statistics.mean(r.get("rows_per_s_exact") or 0 for r in rounds), 1)
    cpu = [r["server_cpu_ms_per_request"] for r in rounds if r.get("server_cpu_ms_per_request") is not None]
    out["server_cpu_ms_per_request"] = round(statistics.mean(cpu), 3) if cpu else None
    rates = [r["cache_hit_rate"] for r in rounds if r.get("cache_hit_rate") is not None]
    out["cache_hit_rate"] = max(rates) if rates else None
    if "rows_per_s" in rounds[0]:
        out["rows_per_s"] = round(statistics.mean(r["rows_per_s"] for r in rounds), 1)
    if "batch_delta" in rounds[0]:  # single-record levels (bulk has no batching to report)
        total, count = (sum(r["batch_delta"][i] for r in rounds) for i in (0, 1))
        out["mean_batch_size"] = round(total / count, 2) if batched and count > 0 else None
    if "lookup_delta" in rounds[0]:  # predict by id: mean time of a feature lookup and of a model call
        for name, key in (("lookup", "lookup_ms"), ("model", "model_call_ms")):
            seconds, count = (sum(r[f"{name}_delta"][i] for r in rounds) for i in (0, 1))
            out[key] = round(1000 * seconds / count, 3) if count > 0 else None
            out[f"{name}_count"] = int(count)
        if out["lookup_ms"] is not None and out["model_call_ms"] is not None:
            out["bottleneck"] = "feature lookup" if out["lookup_ms"] > out["model_call_ms"] else "model call"
    return out
