"""A run's results written to --out: results.json (everything), results.md (the tables and the targets) and
results.png (throughput and p99 by concurrency); `machine_info` describes the machine for their header."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

import peers
import psutil

from harness import profile
from harness.grade import DRIFT_COST_TARGET, EXPLAIN_TARGETS


def machine_info() -> dict:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    import importlib.metadata as md

    versions = {}
    for name in ("bentoml", "scikit-learn", "pandas", "numpy", "pydantic", "fastapi", "uvicorn", "locust"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }


def now() -> str:
    """The time of day in results.json ("started", "finished"): UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_results(args, chosen: list[str], load_before: list[float], inprocess: dict, peer_info: dict) -> dict:
    """results.json as the servers start: the run's configuration, the machine, the in-process limit, the peers."""
    return {
        "smoke": args.smoke,
        "started": now(),
        "machine": machine_info(),
        "load_before": load_before,
        "config": {
            "levels": args.levels,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "bulk_users": args.bulk_users,
            "bulk_size": args.bulk_size,
            "bulk_duration_s": args.bulk_duration,
            "baseline": {"workers": args.baseline_workers, "mode": args.baseline_mode, "omp": args.baseline_omp},
            "server_env": " ".join(args.server_env),
            "focus_users": args.focus,
            "byid_users": args.byid_users,
            "explain_levels": args.explain_levels,
            "servers": chosen,
            "peers": {name: dataclasses.asdict(config) for name, config in args.peer_configs.items()},
        },
        "inprocess": inprocess,
        "peers": peer_info,
        "peers_ready_after_s": args.peers_ready_after_s,
        "servers": [],
    }


def write_results(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / "results.md")
    write_plot(results, out / "results.png")


def write_markdown(results: dict, path: Path) -> None:
    m = results["machine"]
    lines = [
        f"# Benchmark results ({'smoke' if results['smoke'] else 'full'} run, {results['finished']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB; {m['os']}; Python {m['python']}. "
        f"Load average before / after: {results['load_before']} / {results['load_after']} "
        f"(the cores are shared with other work, so numbers are noisy).",
        f"Each level: {results['config']['rounds']} round(s) of {results['config']['duration_s']} s per server, "
        f"interleaved, of closed-loop Locust users (no think time) on the same machine; ok req/s is the mean of the "
        f"rounds, p50/p95/p99 the worst round's; "
        f"bulk: {results['config']['bulk_users']} users x {results['config']['bulk_size']} records for "
        f"{results['config']['bulk_duration_s']} s. Server tuning: `{results['config']['server_env'] or 'defaults'}`.",
        "",
        "| server | users | ok req/s | p50 ms | p95 ms | p99 ms | errors | mean batch | cache hits | Locust cores |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server in results["servers"]:
        for users, s in server["levels"].items():
            batch = "-" if s["mean_batch_size"] is None else f"{s['mean_batch_size']:.1f}"
            hits = "-" if s.get("cache_hit_rate") is None else f"{100 * s['cache_hit_rate']:.1f} %"
            lines.append(
                f"| {server['label']} | {users} | {s['ok_rps']:.0f} | {_ms(s['p50_ms'])} | {_ms(s['p95_ms'])} | "
                f"{_ms(s['p99_ms'])} | {s['errors']} | {batch} | {hits} | {s['loadgen_cpu_share']} |"
            )
    lines += [
        "",
        "| server | bulk ok req/s | rows/s | p50 ms | p99 ms | errors | cold start s | peak RSS MB | idle cores |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server in results["servers"]:
        b = server.get("bulk")
        idle = f"{server['idle_cores']:.2f}" + (
            " (paused between its rounds)" if server.get("paused_between_rounds") else ""
        )
        if b:
            lines.append(
                f"| {server['label']} | {b['ok_rps']:.1f} | {b['rows_per_s']:.0f} | {_ms(b['p50_ms'])} | "
                f"{_ms(b['p99_ms'])} | {b['errors']} | {server['cold_start_s']} | {server['peak_rss_mb']} | {idle} |"
            )
        else:
            lines.append(
                f"| {server['label']} | - | - | - | - | - | {server['cold_start_s']} | {server['peak_rss_mb']} | "
                f"{idle} |"
            )
    ip = results["inprocess"]
    lines += [
        "",
        "In-process pipeline (`tabserve.pipeline.predict_records`, no HTTP):",
        "",
        "| threads | batch | ms/call | rows/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for run in ip["runs"]:
        threads = ", ".join(f"{a}={n}" for a, n in run["threads"])
        for size, b in run["batches"].items():
            lines.append(
                f"| OMP_NUM_THREADS={run['omp']} ({threads}) | {size} | {b['ms_per_call']} | {b['rows_per_s']:.0f} |"
            )
    lines += (
        _peers_section(results)
        + _settings_section(results)
        + _byid_section(results)
        + explanations_section(results)
        + profile.section(results)
        + _scoring_section(results.get("scoring"))
    )
    lines += ["", "Targets:", ""] if results["targets"] else []  # none in --explain-only: no baseline to compare with
    for name, t in results["targets"].items():
        if name == "drift_cost":
            lines.append(
                f"- drift counting costs <= {100 * DRIFT_COST_TARGET:.0f} % of throughput at {t['users']} users: "
                f"{_pct(t['value'])} (1 - median of shipped / nodrift; "
                f"by round {', '.join(_pct(c) for c in t['by_round'])}) "
                f"-> {'met' if t['met'] else 'MISSED'}"
            )
            continue
        lines.append(
            f"- {name}: {t['value']} -> {'met' if t['met'] else 'MISSED'}"
            + (
                f" (by round {t['by_round']}; p99 {t['p99_ms']} ms, {t['errors']} errors"
                + (f"; behind {', '.join(t['behind'])}" if t.get("behind") else "")
                + ")"
                if "p99_ms" in t
                else ""
            )
        )
    path.write_text("\n".join(lines) + "\n")


def explanations_section(results: dict) -> list[str]:
    """The explained points (?explain=true) against the unexplained ones of the same server, round by round
    (grade.explanation_costs: results["explanations"]); the LightGBM scenario's results.md has it too."""
    costs = results.get("explanations") or {}
    by = {s["name"]: s for s in results["servers"]}
    bulk_users = results["config"]["bulk_users"]
    lines = []
    for name, rows in costs.items():
        server = by[name]
        lines += [
            "",
            f"Explanations, {server['label']}: each point with `?explain=true` (`POST /predict`, "
            "`POST /predict_batch`) right after the same point without, in every round; with / without: the median of "
            "the per-round ratios (rounds in brackets; the target's figure in bold). Rates and p50 from every "
            "successful request's exact time and end (bench/latency.py: Locust's p50 is rounded to the ms, and its "
            "CSV leaves out the answers that come after it stops); server CPU per answered request over its whole "
            "process tree.",
            "",
            "| point | ok req/s (rows/s): without / with | p50 ms: without / with | p99 ms: without / with "
            "| server CPU ms per request: without / with | ok req/s with / without | p50 with / without | target |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for level, row in rows.items():
            with_ = server["explained"][level]
            without = server["bulk"] if level == "bulk" else server["levels"][level]
            bulk = level == "bulk"
            point = f"bulk x{bulk_users}" if bulk else f"{level} user{'' if level == '1' else 's'}"
            graded = EXPLAIN_TARGETS[row["kind"]][0] if row.get("kind") else None
            target = "-"
            if graded:
                _figure, bound, at_most = EXPLAIN_TARGETS[row["kind"]]
                target = f"{graded} {'<=' if at_most else '>='} {bound:g}x: {'met' if row['met'] else 'MISSED'}"
                target += f" ({row['errors']} errors)" if row["errors"] else ""
            throughput = _ratio_cell(row["ok_rps"], graded in ("ok req/s", "rows/s"))
            latency = _ratio_cell(row["p50"], graded == "p50 at 1 user")
            lines.append(
                f"| {point} | {_rate(without, bulk)} / {_rate(with_, bulk)} | {_ms1(_p50(without))} / "
                f"{_ms1(_p50(with_))} | {_ms(without['p99_ms'])} / {_ms(with_['p99_ms'])} | "
                f"{_cpu(without.get('server_cpu_ms_per_request'))} / {_cpu(with_.get('server_cpu_ms_per_request'))} | "
                f"{throughput} | {latency} | {target} |"
            )
    return lines


def _ratio_cell(ratio: dict, bold: bool) -> str:
    if ratio["value"] is None:
        return "-"
    text = f"{ratio['value']:.2f} ({', '.join(f'{r:.2f}' for r in ratio['by_round'])})"
    return f"**{text}**" if bold else text


def _rate(level: dict, bulk: bool) -> str:
    """bench/latency.py's rate (every answer counted), else Locust's."""
    if bulk:
        return f"{level.get('rows_per_s_exact') or level['rows_per_s']:,.0f} rows/s"
    return f"{level['ok_rps_exact'] if level.get('ok_rps_exact') is not None else level['ok_rps']:,.0f}"


def _p50(level: dict) -> float | None:
    """bench/latency.py's exact p50 (the worst round's), else Locust's."""
    return level["p50_exact_ms"] if level.get("p50_exact_ms") is not None else level["p50_ms"]


def _ms1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _settings_section(results: dict) -> list[str]:
    """Drift counting's and the payload log's cost: each variant against the shipped server, round by round."""
    by = {s["name"]: s for s in results["servers"]}
    drift, log = results["targets"].get("drift_cost"), results.get("payload_log")
    if not drift and not log:
        return []
    users = (drift or log)["users"]
    ship = by["shipped"]["levels"][str(users)]
    lines = [
        "",
        f"Settings' cost at {users} users (each variant is the shipped project with one setting changed; it "
        "runs beside the shipped server in every round; per round, throughput with the setting / without it, and "
        "the cost = 1 - the median):",
        "",
        "| server | ok req/s (rounds) | p99 ms | errors | with / without, by round | cost |",
        "| --- | --- | ---: | ---: | --- | ---: |",
        f"| {by['shipped']['label']} | {_rounds(ship)} | {_ms(ship['p99_ms'])} | {ship['errors']} | | |",
    ]
    for name, cost in (("nodrift", drift), ("payloadlog", log)):
        if cost and name in by:
            s = by[name]["levels"][str(users)]
            lines.append(
                f"| {by[name]['label']} | {_rounds(s)} | {_ms(s['p99_ms'])} | {s['errors']} | "
                f"{', '.join(f'{r:.3f}' for r in cost['ratio_by_round'])} | {_pct(cost['value'])} |"
            )
    if log and "lines" in log:
        lines += [
            "",
            f"Payload log: {log['lines']:,} lines for {log['answered']:,} answered requests "
            f"(warm-up included): {log['lines_per_answer']} lines per answer (a few more per user and round: the "
            "requests in flight when Locust stops are answered and logged, but not in Locust's count).",
        ]
    return lines


def _peers_section(results: dict) -> list[str]:
    """The project against the peers, level by level: ok req/s (p99), and shipped / peer by round (median)."""
    by = {s["name"]: s for s in results["servers"]}
    shown = [name for name in ("shipped", "services", *peers.NAMES, "fastapi") if name in by]
    present = [name for name in peers.NAMES if name in by]
    lines = []
    for name, info in results.get("peers", {}).items():
        if "error" in info:
            lines.append(
                f"- {name} left out of this run: {' '.join(info['error'].split())[:400]} (results.json has more)"
            )
    if not present or "shipped" not in by:
        return ["", "Peers:", "", *lines] if lines else []
    out = [
        "",
        "The project against the peers (bench/peers/; ok req/s, p99 ms in brackets; shipped / peer: the median "
        "of the per-round ratios, the rounds in brackets):",
        "",
        "| users | "
        + " | ".join(by[n]["label"] for n in shown)
        + " | "
        + " | ".join(f"shipped / {n}" for n in present)
        + " |",
        "| --- | " + " | ".join("---:" for _ in shown) + " | " + " | ".join("---" for _ in present) + " |",
    ]
    levels = list(by["shipped"]["levels"]) + (["bulk"] if "bulk" in by["shipped"] else [])
    for level in levels:
        cells, ratios = [], []
        for name in shown:
            s = by[name]["bulk"] if level == "bulk" else by[name]["levels"].get(level)
            if not s:
                cells.append("-")
                continue
            value = f"{s['rows_per_s']:,.0f} rows/s" if level == "bulk" else f"{s['ok_rps']:.0f}"
            cells.append(f"{value} ({_ms(s['p99_ms'])})")
        ship = by["shipped"]["bulk"] if level == "bulk" else by["shipped"]["levels"][level]
        for name in present:
            s = by[name]["bulk"] if level == "bulk" else by[name]["levels"].get(level)
            by_round = (
                [a / b for a, b in zip(ship["ok_rps_by_round"], s["ok_rps_by_round"], strict=False) if b] if s else []
            )
            ratios.append(
                f"**{statistics.median(by_round):.2f}** ({', '.join(f'{r:.2f}' for r in by_round)})"
                if by_round
                else "-"
            )
        out.append(
            f"| {'bulk x' + str(results['config']['bulk_users']) if level == 'bulk' else level} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(ratios)
            + " |"
        )
    if lines:
        out += ["", *lines]
    return out


def _rounds(level: dict) -> str:
    return f"{level['ok_rps']:.0f} ({', '.join(f'{r:.0f}' for r in level['ok_rps_by_round'])})"


def _byid_section(results: dict) -> list[str]:
    ship = next((s for s in results["servers"] if s.get("byid")), None)
    if not ship:
        return []
    b = ship["byid"]
    batch = "-" if b.get("mean_batch_size") is None else f"{b['mean_batch_size']:.1f}"
    return [
        "",
        f"Predict by id (`GET /v1/entities/{{id}}/predict`, bench/entities.py `ById`, "
        f"{results['config']['byid_users']} users, {ship['label']}, features in SQLite; the lookup and the model "
        "call are each request's two waits, their mean times from /metrics over the level):",
        "",
        "| ok req/s (rounds) | p50 ms | p99 ms | errors | cache hits | mean lookup ms | mean model call ms | "
        "records per model call | the larger |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {_rounds(b)} | {_ms(b['p50_ms'])} | {_ms(b['p99_ms'])} | {b['errors']} | "
        f"{'-' if b.get('cache_hit_rate') is None else _pct(b['cache_hit_rate'])} | {b.get('lookup_ms')} | "
        f"{b.get('model_call_ms')} | {batch} | {b.get('bottleneck', '-')} |",
    ]


def _scoring_section(scoring: dict | None) -> list[str]:
    """bench/scoring.py's rows/s, after the load test (scoring.md has its whole table)."""
    if not scoring:
        return []
    if "error" in scoring:
        return ["", f"Batch scoring: bench/scoring.py failed: {scoring['error']}"]
    limit = scoring["inprocess"]["checks+pipeline"]["rows_per_s"]
    lines = [
        "",
        f"Batch scoring (bench/scoring.py after the servers stopped, {scoring['rows']:,} rows; "
        f"[scoring.md](scoring.md)): the in-process limit is {limit:,.0f} rows/s with the row checks "
        f"({scoring['inprocess']['pipeline']['rows_per_s']:,.0f} for the pipeline alone).",
        "",
        "| score.py engine | input | rows/s | of the in-process limit | rows/s once Spark has started | wall s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in scoring["runs"]:
        after = f"{run['rows_per_s_after_start']:,.0f}" if "rows_per_s_after_start" in run else ""
        lines.append(
            f"| {run['engine']} | {run['input']} | {run['rows_per_s']:,.0f} | {_pct(run['rows_per_s'] / limit)} | "
            f"{after} | {run['wall_s']} |"
        )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in results["servers"]:
        users = [int(u) for u in server["levels"]]
        style = {"linestyle": "--", "marker": "s"} if server["name"] in peers.NAMES else {"marker": "o"}  # peers dashed
        left.plot(users, [s["ok_rps"] for s in server["levels"].values()], label=server["label"], **style)
        right.plot(users, [s["p99_ms"] or 0 for s in server["levels"].values()], label=server["label"], **style)
    left.set(title="Throughput, single-record requests", xlabel="concurrent users", ylabel="successful requests/s")
    right.set(title="p99 latency (dotted: 250 ms target)", xlabel="concurrent users", ylabel="ms", yscale="log")
    right.axhline(250, color="grey", linestyle=":", linewidth=1)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(
        f"{results['machine']['cores']} cores, load avg {results['load_before']} ({results['finished']})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
