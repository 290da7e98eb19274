"""The run graded against its targets (issue 12, "Monolith or services"), and the throughput cost of a setting
(drift counting, the payload log) from a variant that differs from the shipped server in that setting alone."""

from __future__ import annotations

import statistics

import peers

# Servers the targets compare the shipped project with (no targets of their own); the services layout and
# candidates get them.
VARIANTS = ("nobatch", "fastapi", "nodrift", "payloadlog", *peers.NAMES)
DRIFT_COST_TARGET = 0.05  # drift counting may cost at most 5 % of the shipped server's throughput at 32 users


def targets(results: dict) -> dict:
    """The targets of issue 12 ("Monolith or services"), for the shipped project and each candidate (named
    "<target>[<server>]"): at 32 users >= 4x the FastAPI baseline (median of the per-round ratios) with p99
    <= 100 ms, no errors and ahead of the peers that ran; at 1 user a p50 <= 1.1x the baseline's; bulk rows/s
    >= the baseline's and >= 70 % of the in-process rows/s at batch 1,000; cold start <= 5 s."""
    by = {s["name"]: s for s in results["servers"]}
    base = by.get("fastapi")
    peer_servers = [by[name] for name in peers.NAMES if name in by]
    inproc = results["inprocess"]["best_rows_per_s_at_1000"]
    out = {}
    for ship in results["servers"]:
        if ship["name"] in VARIANTS:
            continue
        tag = ship["name"]
        if base and "32" in ship["levels"] and "32" in base["levels"]:
            s, b = ship["levels"]["32"], base["levels"]["32"]
            # Round r of both ran back to back, so each round gives a ratio; the median is the figure.
            ratios = [x / y for x, y in zip(s["ok_rps_by_round"], b["ok_rps_by_round"], strict=False) if y]
            ratio = statistics.median(ratios) if ratios else None
            behind = [
                p["name"] for p in peer_servers if "32" in p["levels"] and p["levels"]["32"]["ok_rps"] >= s["ok_rps"]
            ]
            out[f"speedup_at_32[{tag}]"] = {
                "value": round(ratio, 2) if ratio else None,
                "by_round": [round(r, 2) for r in ratios],
                "p99_ms": s["p99_ms"],
                "errors": s["errors"],
                "behind": behind,
                "met": bool(ratio and ratio >= 4 and (s["p99_ms"] or 1e9) <= 100 and s["errors"] == 0 and not behind),
            }
        if base and "1" in ship["levels"] and "1" in base["levels"] and base["levels"]["1"]["p50_ms"]:
            p50 = (ship["levels"]["1"]["p50_ms"] or 1e9) / base["levels"]["1"]["p50_ms"]
            out[f"p50_at_1_vs_baseline[{tag}]"] = {"value": round(p50, 2), "met": p50 <= 1.1}
        if "bulk" in ship and base and "bulk" in base and base["bulk"]["rows_per_s"]:
            share = ship["bulk"]["rows_per_s"] / base["bulk"]["rows_per_s"]
            out[f"bulk_rows_vs_baseline[{tag}]"] = {"value": round(share, 2), "met": share >= 1}
        if "bulk" in ship and inproc:
            share = ship["bulk"]["rows_per_s"] / inproc
            out[f"bulk_share_of_inprocess[{tag}]"] = {"value": round(share, 2), "met": share >= 0.7}
        out[f"cold_start_s[{tag}]"] = {"value": ship["cold_start_s"], "met": ship["cold_start_s"] <= 5}
    cost = variant_cost(results, "nodrift")
    if cost:  # drift counting: 1 - shipped / nodrift, per round; the median
        out["drift_cost"] = {**cost, "met": cost["value"] is not None and cost["value"] <= DRIFT_COST_TARGET}
    return out


def variant_cost(results: dict, name: str) -> dict | None:
    """The throughput cost of a setting, from the shipped server and a variant that differs in that setting
    alone, at the level the variant ran (32 users): per round (run back to back), 1 - with / without; the
    median of the rounds is the figure. "nodrift" is the setting off (shipped has it), "payloadlog" on."""
    by = {s["name"]: s for s in results["servers"]}
    ship, other = by.get("shipped"), by.get(name)
    if not ship or not other or not other["levels"]:
        return None
    level = next(iter(other["levels"]))
    if level not in ship["levels"]:
        return None
    s, o = ship["levels"][level]["ok_rps_by_round"], other["levels"][level]["ok_rps_by_round"]
    with_, without = (s, o) if name == "nodrift" else (o, s)
    ratios = [w / wo for w, wo in zip(with_, without, strict=False) if wo]  # throughput with the setting / without
    ratio = statistics.median(ratios) if ratios else None
    return {
        "users": int(level),
        "value": round(1 - ratio, 3) if ratio is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "by_round": [round(1 - r, 3) for r in ratios],
        "ratio_by_round": [round(r, 3) for r in ratios],
    }


def payload_log_cost(results: dict) -> dict | None:
    """The payload log's throughput cost (variant_cost of "payloadlog") with its lines per answered request."""
    log_cost = variant_cost(results, "payloadlog")
    if not log_cost:
        return None
    logged = next(s for s in results["servers"] if s["name"] == "payloadlog").get("payload_log", {})
    return {**log_cost, **logged}


# The explained points against the unexplained ones of the same server, in the same rounds (bench/README.md,
# "Explanations"): a lone client's p50 at most 2x, throughput at 32 users at least half, bulk rows/s at least a
# quarter. (figure, the ratio's bound, whether the ratio must be at most the bound)
EXPLAIN_TARGETS = {
    "latency": ("p50 at 1 user", 2.0, True),
    "throughput": ("ok req/s", 0.5, False),
    "bulk": ("rows/s", 0.25, False),
}


def explanation_costs(results: dict) -> dict:
    """Per server with explained points: per level, explained / unexplained, round by round (each pair ran back to
    back) and the median: ok req/s (rows/s in bulk; both bench/latency.py's: every answer counted, also those after
    Locust's stop), p50 (bench/latency.py's exact one) and server CPU per request;
    graded on the level's figure: p50 at 1 user, ok req/s at the focus level (32), rows/s in bulk."""
    focus = str(results["config"]["focus_users"])
    out = {}
    for server in results["servers"]:
        explained = server.get("explained")
        if not explained:
            continue
        rows = {}
        for level, with_ in explained.items():
            without = server.get("bulk") if level == "bulk" else server["levels"].get(level)
            if not without:
                continue
            kind = {focus: "throughput", "1": "latency", "bulk": "bulk"}.get(level)  # 1 user: latency, even as focus
            cpu = "server_cpu_ms_per_request"
            row = {
                "kind": kind,
                "ok_rps": _round_ratios(_rates(with_), _rates(without)),
                "p50": _round_ratios(with_["p50_ms_by_round"], without["p50_ms_by_round"]),
                "cpu_per_request": _ratio(with_.get(cpu), without.get(cpu)),
                "errors": max(with_["errors"], with_.get("errors_exact", 0)),  # those after Locust's stop too
            }
            if kind:
                figure, bound, at_most = EXPLAIN_TARGETS[kind]
                value = row["p50" if kind == "latency" else "ok_rps"]["value"]
                met = value is not None and row["errors"] == 0 and (value <= bound if at_most else value >= bound)
                row |= {"figure": figure, "bound": bound, "at_most": at_most, "value": value, "met": met}
            rows[level] = row
        out[server["name"]] = rows
    return out


def _rates(level: dict) -> list:
    """ok req/s by round: bench/latency.py's (answers after Locust's stop counted), else Locust's."""
    exact = level.get("ok_rps_exact_by_round") or []
    return exact if exact and None not in exact else level["ok_rps_by_round"]


def _round_ratios(with_: list, without: list) -> dict:
    by_round = [a / b for a, b in zip(with_, without, strict=False) if a is not None and b]
    return {
        "value": round(statistics.median(by_round), 3) if by_round else None,
        "by_round": [round(r, 3) for r in by_round],
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None
