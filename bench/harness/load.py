"""The load: one headless Locust run against one server at one level of one round (single-record /predict at N
users, bulk /predict_batch, or predict by id; each of the first two explained, ?explain=true, where the server has
explained points), its stats from Locust's CSV files and bench/latency.py's exact percentiles, the server's CPU per
answered request, and what the server's /metrics says changed over it."""

from __future__ import annotations

import csv
import json
import resource
import time
from pathlib import Path

from harness import BENCH, BIN, ROOT
from harness.lifecycle import Running
from harness.processes import pause, spawn, stop
from harness.sampling import tree_cpu_s
from harness.scrape import batch_histogram, cache_lookups, lookup_and_model_times

ENTITIES_LOCUSTFILE = BENCH / "entities.py"


def run_locust(
    base: str, locustfile: Path, user_class: str, users: int, seconds: float, workdir: Path, env: dict, tag: str = ""
) -> dict:
    prefix = workdir / f"locust_{tag}_{user_class}_{users}"
    cmd = [
        str(BIN / "locust"),
        "-f",
        str(locustfile),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{max(1, round(seconds))}s",
        "--stop-timeout",
        "10",
        "--host",
        base,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        user_class,
    ]
    usage_before = _children_cpu()
    log = prefix.with_suffix(".log")
    exact = prefix.with_name(prefix.name + "_latency.json")  # bench/latency.py: unrounded percentiles
    proc = spawn(cmd, {**env, "BENCH_LATENCY_FILE": str(exact)}, ROOT, log)
    try:
        proc.wait(timeout=seconds + 90)
    finally:
        stop(proc)
    cpu = _children_cpu() - usage_before
    stats = _read_stats(prefix.with_name(prefix.name + "_stats.csv"), log)
    stats["error_kinds"] = _read_failures(prefix.with_name(prefix.name + "_failures.csv"))
    if exact.exists():  # successful requests only, those answered after Locust's stop too (bench/latency.py)
        measured = json.loads(exact.read_text())
        for key in ("p50", "p95", "p99"):  # Locust's above are rounded (to the ms under 100 ms) and count errors
            stats[f"{key}_exact_ms"] = measured[f"{key}_ms"]
        stats["ok_requests_exact"] = measured["requests"]
        stats["errors_exact"] = measured["errors"]
        stats["ok_rps_exact"] = measured["ok_rps"]
    stats["loadgen_cpu_share"] = round(cpu / max(seconds, 1e-9), 2)  # cores used by Locust itself
    # Successful requests/s: fast error answers (e.g. 503s) must not count as throughput.
    stats["ok_rps"] = round(stats["rps"] * (1 - stats["errors"] / stats["requests"]), 1) if stats["requests"] else 0.0
    return stats


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read_failures(path: Path) -> dict[str, int]:
    """The most frequent failure messages (status code or exception) and their counts."""
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: -int(r.get("Occurrences") or 0))
    return {r["Error"][:160]: int(r["Occurrences"]) for r in rows[:3]}


def _read_stats(path: Path, log: Path) -> dict:
    if not path.exists():
        raise RuntimeError(f"locust wrote no stats ({path}); its log:\n{log.read_text()[-2000:]}")
    with path.open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    row = rows["Aggregated"]

    def num(key: str) -> float | None:
        value = row.get(key, "")
        return None if value in ("", "N/A") else float(value)

    return {
        "requests": int(num("Request Count") or 0),
        "errors": int(num("Failure Count") or 0),
        "rps": round(num("Requests/s") or 0.0, 1),
        "p50_ms": num("50%"),
        "p95_ms": num("95%"),
        "p99_ms": num("99%"),
        "mean_ms": round(num("Average Response Time") or 0.0, 1),
    }


def measure(run: Running, level: str, args, workdir: Path, env: dict, round_no: int, explain: bool = False) -> dict:
    """One Locust run against one server: single-record /predict at `level` users, bulk, or predict by id;
    `explain`: its explained point at that level (the server's `explained_users`, ?explain=true)."""
    if run.server.pause_idle:
        pause(run.proc, False)
        time.sleep(1.0)  # resumed: let its processes catch up before the load
        try:
            return _measure(run, level, args, workdir, env, round_no, explain)
        finally:
            pause(run.proc, True)
    return _measure(run, level, args, workdir, env, round_no, explain)


def _measure(run: Running, level: str, args, workdir: Path, env: dict, round_no: int, explain: bool) -> dict:
    cpu_before = tree_cpu_s(run.proc.pid)
    stats = _locust_level(run, level, args, workdir, env, round_no, explain)
    # The server's own CPU (its whole process tree) per answered request over the round (answers after Locust's
    # stop included where bench/latency.py counted them: their CPU is in the round too).
    answered = stats.get("ok_requests_exact") or stats["requests"] - stats["errors"]
    stats["server_cpu_ms_per_request"] = (
        round(1000 * (tree_cpu_s(run.proc.pid) - cpu_before) / answered, 3) if answered else None
    )
    return stats


def _locust_level(run: Running, level: str, args, workdir: Path, env: dict, round_no: int, explain: bool) -> dict:
    tag = f"{run.server.name}_r{round_no}"
    single_user, bulk_user = run.server.explained_users if explain else (run.server.single_user, run.server.bulk_user)
    said = " explained" if explain else ""
    short = explain and args.explain_seconds  # --smoke: its explained points for 1 s
    single_s, bulk_s = (args.explain_seconds, args.explain_seconds) if short else (args.duration, args.bulk_duration)
    if level == "bulk":
        # The same bodies explained or not (bulk answers are never cached).
        stats = run_locust(
            run.base,
            run.server.locustfile,
            bulk_user,
            args.bulk_users,
            bulk_s,
            workdir,
            {**env, "BENCH_BULK_SIZE": str(args.bulk_size)},
            tag,
        )
        stats["rows_per_s"] = round(stats["ok_rps"] * args.bulk_size, 1)
        if stats.get("ok_rps_exact") is not None:
            stats["rows_per_s_exact"] = round(stats["ok_rps_exact"] * args.bulk_size, 1)
        print(
            f"  {run.server.name}{said} bulk x{args.bulk_users} round {round_no}: {_fmt_stats(stats)} "
            f"rows/s={stats['rows_per_s']}",
            flush=True,
        )
        return stats
    before = batch_histogram(run.base) if run.server.batched else (0, 0)
    before_cache = cache_lookups(run.base) if run.server.project_metrics else (0, 0)
    if level == "byid":
        # Random entity ids with a random `year` in the query: each request is one lookup and one model call.
        before_split = lookup_and_model_times(run.base)
        stats = run_locust(
            run.base,
            ENTITIES_LOCUSTFILE,
            "ById",
            args.byid_users,
            args.duration,
            workdir,
            {**env, "BENCH_SEED": f"byid-{round_no}"},
            tag,
        )
        after_split = lookup_and_model_times(run.base)
        for name in ("lookup", "model"):
            stats[f"{name}_delta"] = [after_split[name][i] - before_split[name][i] for i in (0, 1)]
    else:
        # The same seed for every server in a round (the same bodies), a new one for every level and round
        # (bodies no server has seen, so the prediction cache cannot answer); the explained point's own ("1x-1"):
        # an explained answer is cached apart from the unexplained one, and gets new bodies too.
        stats = run_locust(
            run.base,
            run.server.locustfile,
            single_user,
            int(level),
            single_s,
            workdir,
            {**env, "BENCH_SEED": f"{level}{'x' if explain else ''}-{round_no}"},
            tag,
        )
    after_cache = cache_lookups(run.base) if run.server.project_metrics else (0, 0)
    hits, lookups = (a - b for a, b in zip(after_cache, before_cache, strict=False))
    stats["cache_hit_rate"] = round(hits / lookups, 4) if lookups else None
    after = batch_histogram(run.base) if run.server.batched else (0, 0)
    stats["batch_delta"] = [after[0] - before[0], after[1] - before[1]]
    stats["mean_batch_size"] = _mean_batch(before, after) if run.server.batched else None
    extra = ""
    if level == "byid":
        extra = " " + _fmt_split(stats["lookup_delta"], stats["model_delta"])
    print(
        f"  {run.server.name}{said} {'byid x' + str(args.byid_users) if level == 'byid' else 'users=' + level} "
        f"round {round_no}: {_fmt_stats(stats)}{extra}",
        flush=True,
    )
    return stats


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    count = after[1] - before[1]
    return round((after[0] - before[0]) / count, 2) if count > 0 else None


def _fmt_split(lookup: list[float], model: list[float]) -> str:
    def mean_ms(delta: list[float]) -> str:
        return f"{1000 * delta[0] / delta[1]:.2f} ms" if delta[1] else "-"

    return f"lookup {mean_ms(lookup)} ({lookup[1]:.0f}) vs model call {mean_ms(model)} ({model[1]:.0f})"


def _fmt_stats(stats: dict) -> str:
    return (
        f"{stats['ok_rps']} ok req/s p50={stats['p50_ms']} ({stats.get('p50_exact_ms')}) p95={stats['p95_ms']} "
        f"p99={stats['p99_ms']} ms "
        f"errors={stats['errors']} batch={stats.get('mean_batch_size')} loadgen={stats['loadgen_cpu_share']} cores"
    )
