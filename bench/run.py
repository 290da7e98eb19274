"""The benchmark runner: one run, the project's servers, a FastAPI baseline and the peers (MLServer, LitServe),
the same model and the same cores.

    python bench/run.py                      # full run -> bench/results/ (about 30 minutes)
    python bench/run.py --smoke --out /tmp/x # a few seconds per level, for CI (no timing checks)
    python bench/run.py --scenario lightgbm  # an imported LightGBM booster vs MLServer's LightGBM runtime vs FastAPI
                                             # (bench/lightgbm/scenario.py) -> bench/results/lightgbm/

It trains the model into a fresh temporary BENTOML_HOME and measures the pipeline in-process. Then it
starts each server in turn on a free port (timing its cold start to /readyz 200) and leaves it running,
idle, while the next starts. The load comes after, interleaved: for each concurrency level, ROUNDS
rounds in which every server gets the same Locust load one after the other (the order reversed every
other round), so a change in the machine's background load hits all servers alike instead of whichever
ran in that minute; bulk /predict_batch the same way. Two variants of the shipped project take part
in the 32-user level only (drift counting off; the payload log on), so their cost is a per-round ratio
against the shipped server in the same minute; the shipped server also gets a predict-by-id level
(bench/entities.py, features in a SQLite table). The peers (bench/peers/: Seldon MLServer and LitServe,
each in its own virtualenv under the work directory, installed while the model trains) serve the same
pipeline file at every level. It reads the records per pipeline call, the cache hits and the feature
lookup and model call times from /metrics and samples the RSS of each server's whole process tree.
After the servers are stopped, bench/scoring.py measures batch scoring (score.py). Every process it
starts is in its own process group and is killed on exit, on failure and on Ctrl-C.
Writes results.json, results.md and results.png (and scoring.json, scoring.md) to --out.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import peers  # noqa: E402 - bench/peers/: installs and configures MLServer and LitServe
from entities import lookup_vs_model  # noqa: E402 - without locust (it would patch this process with gevent)
from records import V2_PATH, load_records, v2_request  # noqa: E402

BENCH = BENCH_DIR
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
LOCUSTFILE = BENCH / "locustfile.py"
ENTITIES_LOCUSTFILE = BENCH / "entities.py"
READY_TIMEOUT_S = 90

_children: list[subprocess.Popen] = []


# ---------------------------------------------------------------- processes


def _kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)  # a group paused while idle (Server.pause_idle) must run to exit
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def _kill_all() -> None:
    while _children:
        _kill_group(_children.pop(), grace=5.0)


def _on_signal(signum, frame):  # noqa: ARG001
    _kill_all()
    sys.exit(128 + signum)


def spawn(cmd: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    _kill_group(proc)
    if proc in _children:
        _children.remove(proc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


class RssSampler(threading.Thread):
    """Peak summed RSS of a process and all its descendants, sampled every 100 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for proc in procs:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self.halt.wait(0.1)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its living descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return total
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def pause(run: Running, paused: bool) -> None:
    """Stop (SIGSTOP) or resume (SIGCONT) a server's whole process group."""
    try:
        os.killpg(run.proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    label: str
    cmd: list[str]
    env: dict = field(default_factory=dict)
    batched: bool = False  # read tabserve_pipeline_batch_records from /metrics
    cwd: Path | None = None  # project dir to serve from (default: --project)
    levels: tuple[str, ...] | None = (
        None  # the only levels it takes part in ("32"); None: every /predict level and bulk
    )
    byid: bool = False  # also the predict-by-id level ("byid": bench/entities.py's ById, features from SQLite)
    # The peers (bench/peers/) differ in these: no project /metrics, their own routes and Locust users.
    project_metrics: bool = True  # the project's /metrics (cache hits; records per call where `batched`)
    ready_path: str = "/readyz"
    single_user: str = "SingleRecord"  # bench/locustfile.py's user class of the single-record levels
    bulk_user: str = "BulkRecords"  # ... and of the bulk level
    v2: bool = False  # warm-up requests in the V2 inference protocol (MLServer) instead of the record itself
    peer: str | None = None  # a peer's name: its own virtualenv and environment (bench/peers/)
    pause_idle: bool = False  # SIGSTOP its process group while other servers are measured (LitServe: see README)
    setup: object = None  # callable(port) -> (cmd, env), run just before start (writes MLServer's config files)
    locustfile: Path = LOCUSTFILE  # where single_user and bulk_user are (the LightGBM scenario has its own)
    warmup: tuple[str, bytes] | None = None  # (path, body) of the warm-up requests; None: a penguin record (V2 if `v2`)

    def takes(self, level: str) -> bool:
        if level == "byid":
            return self.byid
        return self.levels is None or level in self.levels


# Where each server runs within a round (reversed every other round): the pairs whose ratio is reported
# run back to back: nodrift and payloadlog beside shipped, shipped beside fastapi, candidates after it.
RUN_ORDER = {
    "payloadlog": 0,
    "nodrift": 1,
    "shipped": 2,
    "fastapi": 3,
    "services": 4,
    "mlserver": 6,
    "litserve": 7,
    "nobatch": 9,
}


def servers(args, port: int) -> list[Server]:
    serve = [str(BIN / "bentoml"), "serve", "service:PredictionService", "--host", "127.0.0.1", "--port", str(port)]
    tuned = dict(kv.split("=", 1) for kv in args.server_env)
    focus = (str(args.focus),)
    out = {
        # FEATURE_DB_URL: the feature table of the predict-by-id level (read only by that route).
        "shipped": Server(
            "shipped",
            "project (adaptive batching)",
            serve,
            {**tuned, "FEATURE_DB_URL": args.feature_db},
            batched=True,
            byid=args.byid_users > 0,
        ),
        "nobatch": Server("nobatch", "project, ADAPTIVE_BATCHING=0", serve, {**tuned, "ADAPTIVE_BATCHING": "0"}),
        # Drift counting's and the payload log's cost: the shipped project with one setting changed, at 32 users only.
        "nodrift": Server(
            "nodrift", "project, DRIFT_COUNTING=0", serve, {**tuned, "DRIFT_COUNTING": "0"}, batched=True, levels=focus
        ),
        "payloadlog": Server(
            "payloadlog",
            "project, PAYLOAD_LOG=1",
            serve,
            {**tuned, "PAYLOAD_LOG": "1", "PAYLOAD_LOG_DIR": str(args.workdir / "payload_log")},
            batched=True,
            levels=focus,
        ),
        "fastapi": Server(
            "fastapi",
            f"FastAPI baseline ({args.baseline_workers} workers)",
            # Not `uvicorn --workers N`: its listener loses TCP_NODELAY (+40 ms per answer); see uvicorn_nodelay.py.
            [
                str(BIN / "python"),
                str(BENCH / "uvicorn_nodelay.py"),
                "bench.baseline_fastapi:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.baseline_workers),
            ],
            {"BASELINE_MODE": args.baseline_mode, "OMP_NUM_THREADS": str(args.baseline_omp)},
        ),
        # The shipped project (the monolith layout, the default) in its other layout, SERVICE_LAYOUT=services, at every level.
        "services": Server(
            "services", "project, SERVICE_LAYOUT=services", serve, {**tuned, "SERVICE_LAYOUT": "services"}, batched=True
        ),
        **peer_servers(args),
    }
    chosen = [out[name] for name in args.servers.split(",") if name]
    extra: dict[str, dict[str, str]] = {}
    for spec in args.candidate_env:  # NAME:KEY=VALUE: the environment of one candidate only
        name, setting = spec.split(":", 1)
        key, value = setting.split("=", 1)
        extra.setdefault(name, {})[key] = value
    for spec in args.candidate:  # NAME=DIR: a modified copy of the project, served like "shipped"
        name, path = spec.split("=", 1)
        chosen.append(
            Server(
                name,
                f"candidate {name}",
                serve,
                {**tuned, **extra.get(name, {})},
                batched=True,
                cwd=Path(path).resolve(),
            )
        )
    return chosen


def peer_servers(args) -> dict[str, Server]:
    """MLServer and LitServe (bench/peers/), each from its virtualenv, serving the same pipeline file."""
    ml, lit = args.peer_configs["mlserver"], args.peer_configs["litserve"]

    def mlserver(port: int):
        repo = args.workdir / "mlserver_repo"
        return peers.mlserver_command(
            args.peer_venvs / "mlserver", repo, args.pipeline_file, port, free_port(), free_port(), ml
        )

    def litserve(port: int):
        return peers.litserve_command(args.peer_venvs / "litserve", args.pipeline_file, port, lit)

    return {
        "mlserver": Server(
            "mlserver",
            f"MLServer ({ml.label})",
            [],
            project_metrics=False,
            ready_path="/v2/health/ready",
            single_user="MLServerSingle",
            bulk_user="MLServerBulk",
            v2=True,
            peer="mlserver",
            setup=mlserver,
        ),
        "litserve": Server(
            "litserve",
            f"LitServe ({lit.label})",
            [],
            project_metrics=False,
            ready_path="/health",
            single_user="LitServeSingle",
            bulk_user="LitServeBulk",
            peer="litserve",
            pause_idle=True,
            setup=litserve,
        ),
    }


def cache_lookups(base: str) -> tuple[float, float]:
    """(hits, hits + misses) of the project's prediction cache; (0, 0) where there is none (FastAPI)."""
    status, body = http("GET", base + "/metrics")
    counts = {"hit": 0.0, "miss": 0.0}
    if status == 200:
        for line in body.decode().splitlines():
            match = re.match(r'tabserve_prediction_cache_total\{result="(hit|miss)"\}\s+([0-9.eE+-]+)', line)
            if match:
                counts[match.group(1)] += float(match.group(2))
    return counts["hit"], counts["hit"] + counts["miss"]


def batch_histogram(base: str) -> tuple[float, float]:
    """(sum, count) of records per batched pipeline call (tabserve_pipeline_batch_records), over all workers."""
    status, body = http("GET", base + "/metrics")
    total = count = 0.0
    if status != 200:
        return total, count
    for line in body.decode().splitlines():
        match = re.match(
            r'tabserve_pipeline_batch_records_(sum|count)\{[^}]*api="predict"[^}]*\}\s+([0-9.eE+-]+)', line
        )
        if match:
            if match.group(1) == "sum":
                total += float(match.group(2))
            else:
                count += float(match.group(2))
    return total, count


def metrics_text(base: str) -> str:
    status, body = http("GET", base + "/metrics")
    return body.decode() if status == 200 else ""


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
    proc = spawn(cmd, env, ROOT, log)
    try:
        proc.wait(timeout=seconds + 90)
    finally:
        stop(proc)
    cpu = _children_cpu() - usage_before
    stats = _read_stats(prefix.with_name(prefix.name + "_stats.csv"), log)
    stats["error_kinds"] = _read_failures(prefix.with_name(prefix.name + "_failures.csv"))
    stats["loadgen_cpu_share"] = round(cpu / max(seconds, 1e-9), 2)  # cores used by Locust itself
    # Successful requests/s: fast error answers (e.g. 503s) must not count as throughput.
    stats["ok_rps"] = round(stats["rps"] * (1 - stats["errors"] / stats["requests"]), 1) if stats["requests"] else 0.0
    return stats


def _children_cpu() -> float:
    import resource

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


@dataclass
class Running:
    """A started server and what was measured on it so far."""

    server: Server
    proc: subprocess.Popen
    sampler: RssSampler
    base: str
    result: dict
    rounds: dict = field(default_factory=dict)  # level ("1", "32", "bulk") -> [stats of each round]


def start_server(server: Server, args, env: dict, workdir: Path, port: int) -> Running:
    """Start it, time the cold start to its readiness route's 200 (/readyz; a peer's own), warm it up and
    measure what it costs idle; it stays up until `finish` (a `pause_idle` server paused between its rounds)."""
    base = f"http://127.0.0.1:{port}"
    log = workdir / f"server_{server.name}.log"
    cmd = server.cmd
    if server.peer:  # its own virtualenv, its own environment and directory; nothing of the project's
        cmd, extra_env = server.setup(port)
        cwd = workdir / f"peer_{server.name}"
        cwd.mkdir(exist_ok=True)
        server_env = {**peers.base_env(workdir / "tmp"), **extra_env, **server.env}
    else:
        cwd = server.cwd or args.project
        # Its own BENTOML_HOME (the trained models linked in): BentoML clears the Prometheus directory under
        # BENTOML_HOME when a server starts, which would wipe the metrics of the servers already running.
        home = workdir / f"home_{server.name}"
        home.mkdir()
        (home / "models").symlink_to(Path(env["BENTOML_HOME"]) / "models")
        server_env = {**env, **server.env, "PYTHONPATH": str(cwd), "BENTOML_HOME": str(home)}
    start = time.perf_counter()
    proc = spawn(cmd, server_env, cwd, log)
    sampler = RssSampler(proc.pid)
    sampler.start()
    result: dict = {"name": server.name, "label": server.label, "env": server.env, "levels": {}}
    if server.peer:
        result["cmd"] = cmd
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {proc.returncode}; log:\n{log.read_text()[-3000:]}")
            if http("GET", base + server.ready_path, timeout=1.0)[0] == 200:
                break
            if time.perf_counter() - start > READY_TIMEOUT_S:
                raise RuntimeError(f"{server.name} not ready after {READY_TIMEOUT_S}s; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
    except BaseException:
        sampler.halt.set()
        stop(proc)
        raise
    result["cold_start_s"] = round(time.perf_counter() - start, 2)
    print(f"  {server.name}: ready in {result['cold_start_s']} s on port {port}", flush=True)
    # Warm-up: first requests pay for lazy imports and connection setup.
    if server.warmup:
        path, body = server.warmup
    else:
        record = _sample_record()
        path, body = (V2_PATH, v2_request([record])) if server.v2 else ("/predict", record)
        body = json.dumps(body).encode()
    result["warmup_ok"] = sum(http("POST", base + path, body, timeout=30)[0] == 200 for _ in range(20))
    # What it costs while it waits (its rounds are interleaved with the others'): CPU of its process tree.
    time.sleep(0.5)
    cpu, clock = tree_cpu_s(proc.pid), time.perf_counter()
    time.sleep(args.idle_seconds)
    result["idle_cores"] = round((tree_cpu_s(proc.pid) - cpu) / (time.perf_counter() - clock), 3)
    run = Running(server, proc, sampler, base, result)
    if server.pause_idle:
        pause(run, True)
        result["paused_between_rounds"] = True
    return run


def measure(run: Running, level: str, args, workdir: Path, env: dict, round_no: int) -> dict:
    """One Locust run against one server: single-record /predict at `level` users, bulk, or predict by id."""
    if run.server.pause_idle:
        pause(run, False)
        time.sleep(1.0)  # resumed: let its processes catch up before the load
        try:
            return _measure(run, level, args, workdir, env, round_no)
        finally:
            pause(run, True)
    return _measure(run, level, args, workdir, env, round_no)


def _measure(run: Running, level: str, args, workdir: Path, env: dict, round_no: int) -> dict:
    tag = f"{run.server.name}_r{round_no}"
    if level == "bulk":
        stats = run_locust(
            run.base,
            run.server.locustfile,
            run.server.bulk_user,
            args.bulk_users,
            args.bulk_duration,
            workdir,
            {**env, "BENCH_BULK_SIZE": str(args.bulk_size)},
            tag,
        )
        stats["rows_per_s"] = round(stats["ok_rps"] * args.bulk_size, 1)
        print(
            f"  {run.server.name} bulk x{args.bulk_users} round {round_no}: {_fmt_stats(stats)} "
            f"rows/s={stats['rows_per_s']}",
            flush=True,
        )
        return stats
    before = batch_histogram(run.base) if run.server.batched else (0, 0)
    before_cache = cache_lookups(run.base) if run.server.project_metrics else (0, 0)
    if level == "byid":
        # Random entity ids with a random `year` in the query: each request is one lookup and one model call.
        before_split = lookup_vs_model(metrics_text(run.base))
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
        after_split = lookup_vs_model(metrics_text(run.base))
        for name in ("lookup", "model"):
            stats[f"{name}_delta"] = [after_split[name][i] - before_split[name][i] for i in (0, 1)]
    else:
        # The same seed for every server in a round (the same bodies), a new one for every level and round
        # (bodies no server has seen, so the prediction cache cannot answer).
        stats = run_locust(
            run.base,
            run.server.locustfile,
            run.server.single_user,
            int(level),
            args.duration,
            workdir,
            {**env, "BENCH_SEED": f"{level}-{round_no}"},
            tag,
        )
    after_cache = cache_lookups(run.base) if run.server.project_metrics else (0, 0)
    hits, lookups = (a - b for a, b in zip(after_cache, before_cache))
    stats["cache_hit_rate"] = round(hits / lookups, 4) if lookups else None
    after = batch_histogram(run.base) if run.server.batched else (0, 0)
    stats["batch_delta"] = [after[0] - before[0], after[1] - before[1]]
    stats["mean_batch_size"] = _mean_batch(before, after) if run.server.batched else None
    extra = ""
    if level == "byid":
        extra = " " + _fmt_split(stats["lookup_delta"], stats["model_delta"])
    print(
        f"  {run.server.name} {'byid x' + str(args.byid_users) if level == 'byid' else 'users=' + level} "
        f"round {round_no}: {_fmt_stats(stats)}{extra}",
        flush=True,
    )
    return stats


def _fmt_split(lookup: list[float], model: list[float]) -> str:
    def mean_ms(delta: list[float]) -> str:
        return f"{1000 * delta[0] / delta[1]:.2f} ms" if delta[1] else "-"

    return f"lookup {mean_ms(lookup)} ({lookup[1]:.0f}) vs model call {mean_ms(model)} ({model[1]:.0f})"


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
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        values = [r[key] for r in rounds if r[key] is not None]
        out[key] = max(values) if values else None
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


def finish(run: Running) -> dict:
    """Stop it; its result with the combined rounds and the peak RSS over the whole run."""
    run.sampler.halt.set()
    run.sampler.join()
    stop(run.proc)
    result = run.result
    result["peak_rss_mb"] = round(run.sampler.peak / 2**20, 1)
    for level, rounds in run.rounds.items():
        if level in ("bulk", "byid"):
            result[level] = combine(rounds, run.server.batched and level == "byid")
        else:
            result["levels"][level] = combine(rounds, run.server.batched)
    log_dir = run.server.env.get("PAYLOAD_LOG_DIR")
    if log_dir and run.server.env.get("PAYLOAD_LOG") == "1":
        # Read after the server stopped (its writer drained): lines written vs requests answered.
        lines = sum(_count_lines(f) for f in Path(log_dir).glob("*/data/*") if f.is_file())
        answered = result["warmup_ok"] + sum(s["requests"] - s["errors"] for s in result["levels"].values())
        result["payload_log"] = {
            "lines": lines,
            "answered": answered,
            "lines_per_answer": round(lines / answered, 4) if answered else None,
        }
    return result


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _sample_record() -> dict:
    return next(r for r in load_records() if None not in r.values())


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    count = after[1] - before[1]
    return round((after[0] - before[0]) / count, 2) if count > 0 else None


def _fmt_stats(stats: dict) -> str:
    return (
        f"{stats['ok_rps']} ok req/s p50={stats['p50_ms']} p95={stats['p95_ms']} p99={stats['p99_ms']} ms "
        f"errors={stats['errors']} batch={stats.get('mean_batch_size')} loadgen={stats['loadgen_cpu_share']} cores"
    )


# ---------------------------------------------------------------- reporting


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
            ratios = [x / y for x, y in zip(s["ok_rps_by_round"], b["ok_rps_by_round"]) if y]
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


# Servers the targets compare the shipped project with (no targets of their own); the services layout and candidates get them.
VARIANTS = ("nobatch", "fastapi", "nodrift", "payloadlog", *peers.NAMES)
DRIFT_COST_TARGET = 0.05  # drift counting may cost at most 5 % of the shipped server's throughput at 32 users


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
    ratios = [w / wo for w, wo in zip(with_, without) if wo]  # throughput with the setting / without it
    ratio = statistics.median(ratios) if ratios else None
    return {
        "users": int(level),
        "value": round(1 - ratio, 3) if ratio is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "by_round": [round(1 - r, 3) for r in ratios],
        "ratio_by_round": [round(r, 3) for r in ratios],
    }


def write_markdown(results: dict, path: Path) -> None:
    m = results["machine"]
    lines = [
        f"# Benchmark results ({'smoke' if results['smoke'] else 'full'} run, {results['finished']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB; {m['os']}; Python {m['python']}. "
        f"Load average before / after: {results['load_before']} / {results['load_after']} "
        f"(the cores are shared with other work, so numbers are noisy).",
        f"Each level: {results['config']['rounds']} round(s) of {results['config']['duration_s']} s per server, interleaved, "
        f"of closed-loop Locust users (no think time) on the same machine; ok req/s is the mean of the rounds, "
        f"p50/p95/p99 the worst round's; "
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
                f"| {server['label']} | - | - | - | - | - | {server['cold_start_s']} | {server['peak_rss_mb']} | {idle} |"
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
        + _scoring_section(results.get("scoring"))
    )
    lines += ["", "Targets:", ""]
    for name, t in results["targets"].items():
        if name == "drift_cost":
            lines.append(
                f"- drift counting costs <= {100 * DRIFT_COST_TARGET:.0f} % of throughput at {t['users']} users: "
                f"{_pct(t['value'])} (1 - median of shipped / nodrift; by round {', '.join(_pct(c) for c in t['by_round'])}) "
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
            by_round = [a / b for a, b in zip(ship["ok_rps_by_round"], s["ok_rps_by_round"]) if b] if s else []
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


# ---------------------------------------------------------------- main


def write_results(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / "results.md")
    write_plot(results, out / "results.png")


def run_scoring(args) -> dict:
    """bench/scoring.py into --out (scoring.json, scoring.md); its rows/s for results.json. In --smoke: 2,000 rows,
    the local engine only (no Spark). It trains into its own BENTOML_HOME."""
    cmd = [sys.executable, str(BENCH / "scoring.py"), "--out", str(args.out)]
    if args.smoke:
        cmd += ["--rows", "2000", "--engines", "local"]
    env = {k: v for k, v in os.environ.items() if k not in ("BENTOML_HOME", "MODEL_TAG")}
    print(f"batch scoring: {' '.join(cmd[1:])}", flush=True)
    path = args.out / "scoring.json"
    path.unlink(missing_ok=True)  # never report an earlier run's
    # Its own process group, killed with the rest on exit or Ctrl-C (Spark's JVM included); output to ours.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    _children.append(proc)
    try:
        returncode = proc.wait(timeout=3600)
    finally:
        stop(proc)
    if returncode != 0 or not path.exists():
        return {"error": f"bench/scoring.py exited with {returncode}"}
    scoring = json.loads(path.read_text())
    return {
        key: scoring[key]
        for key in ("started", "rows", "load_before", "load_after", "inprocess", "spark_start", "runs")
    }


def start_peer_installs(names: list[str], args) -> dict:
    """Start creating each peer's virtualenv (in the background, in parallel); see bench/peers/__init__.py."""
    installs = {}
    for name in names:
        log = args.workdir / f"install_{name}.log"
        clock = time.perf_counter()
        proc = peers.start_install(name, args.peer_venvs / name, log)
        if proc is not None:
            _children.append(proc)
            print(f"installing {name} into {args.peer_venvs / name} (log: {log})", flush=True)
        installs[name] = (proc, log, clock)
    return installs


def finish_peer_installs(installs: dict, args, started: float) -> dict:
    """Wait for the installs; per peer: versions and install seconds, or the error (the run goes on without it)."""
    info = {}
    for name, (proc, log, clock) in installs.items():
        venv = args.peer_venvs / name
        requirements = peers.requirement_files(name)[0]
        entry: dict = {
            "venv": str(venv),
            "requirements": str(requirements.relative_to(ROOT) if requirements.is_relative_to(ROOT) else requirements),
        }
        try:
            if proc is None:
                entry["install_s"] = 0.0
                entry["reused"] = True
            else:
                try:
                    returncode = proc.wait(timeout=max(60.0, PEER_INSTALL_TIMEOUT_S - (time.perf_counter() - clock)))
                finally:
                    stop(proc)
                if returncode != 0:
                    raise RuntimeError(f"pip exited with {returncode}: {_tail(log)}")
            entry["versions"] = peers.finish_install(name, venv)
            if proc is not None:
                entry["install_s"] = round(time.perf_counter() - clock, 1)  # venv + pip + the import check
            print(
                f"  {name}: {entry['versions']} ({'reused' if proc is None else str(entry['install_s']) + ' s'})",
                flush=True,
            )
        except Exception as exc:  # noqa: BLE001 - any failure leaves this peer out, not the run
            entry["error"] = f"not installed: {exc}"[:4000]
            print(f"  WARNING: {name} left out, {str(exc)[:600]}", flush=True)
        info[name] = entry
    # From the run's start to the peers installed (they install while the model trains and the features load).
    args.peers_ready_after_s = round(time.perf_counter() - started, 1) if installs else None
    if installs:
        print(f"peers ready {args.peers_ready_after_s} s after the start", flush=True)
    return info


PEER_INSTALL_TIMEOUT_S = 900


def _tail(log: Path, lines: int = 12) -> str:
    """The last lines of an install log, without pip's notes about this machine's local indexes."""
    kept = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if line.strip() and "is ignored: it is neither a file nor a directory" not in line
    ]
    return " | ".join(kept[-lines:])


def pipeline_file(env: dict) -> Path:
    """The fitted pipeline the servers load: pipeline.joblib in the trained version's directory (tabserve/core/store.py)."""
    code = "import bentoml; print(bentoml.models.get('penguins:latest').path_of('pipeline.joblib'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    return Path(out.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI mode: 16 users and bulk, 3 s each, per server")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="penguins",
        help="penguins: the trained penguins pipeline against every server (default); lightgbm: an "
        "imported LightGBM booster (50 features, 300 trees) served by the project against MLServer's "
        "LightGBM runtime and a FastAPI baseline (bench/lightgbm/; default --out bench/results/lightgbm, "
        "--levels 1,32)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default bench/results (lightgbm: bench/results/lightgbm)"
    )
    parser.add_argument(
        "--servers",
        default=None,
        help="nodrift and payloadlog (the shipped project with DRIFT_COUNTING=0 / PAYLOAD_LOG=1) run at "
        "32 users only (the largest level when 32 is not among --levels); --scenario lightgbm: "
        f"{','.join(LIGHTGBM_SERVERS)}",
    )
    parser.add_argument("--levels", default=None, help="concurrent users, e.g. 1,8,32,64")
    parser.add_argument("--duration", type=float, default=None, help="seconds per level")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of every level over all servers, interleaved (default 2; 1 with --smoke)",
    )
    parser.add_argument(
        "--byid-users",
        type=int,
        default=None,
        help="users of the predict-by-id level on the shipped server (default: 32, as nodrift; 0: none)",
    )
    parser.add_argument(
        "--no-scoring", action="store_true", help="skip bench/scoring.py (batch scoring; run after the servers stopped)"
    )
    parser.add_argument("--bulk-users", type=int, default=4)
    parser.add_argument("--bulk-size", type=int, default=1000)
    parser.add_argument("--bulk-duration", type=float, default=None)
    parser.add_argument("--baseline-workers", type=int, default=2)
    parser.add_argument("--baseline-mode", default="inline", choices=("inline", "threadpool"))
    parser.add_argument("--baseline-omp", type=int, default=1, help="OMP_NUM_THREADS of the FastAPI workers")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the two project servers (tuning experiments)",
    )
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also serve a modified copy of the project (tuning experiments)",
    )
    parser.add_argument(
        "--candidate-env",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="environment of one candidate only, e.g. h11:PYTHONPATH=/tmp/h11only (a setting or package switched off)",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="leave out mlserver and litserve (no virtualenvs to install)"
    )
    parser.add_argument(
        "--peer-venvs",
        type=Path,
        default=None,
        help="keep the peers' virtualenvs in DIR/<peer> and reuse them while their pins are unchanged "
        "(default: fresh ones in the run's temporary work directory)",
    )
    parser.add_argument(
        "--mlserver-workers", type=int, default=peers.DEFAULTS["mlserver"].workers, help="MLServer parallel_workers"
    )
    parser.add_argument(
        "--litserve-workers",
        type=int,
        default=peers.DEFAULTS["litserve"].workers,
        help="LitServe workers_per_device (inference processes)",
    )
    parser.add_argument(
        "--litserve-api-servers",
        type=int,
        default=peers.DEFAULTS["litserve"].api_servers,
        help="LitServe num_api_servers (HTTP processes)",
    )
    parser.add_argument(
        "--peer-max-batch-size",
        type=int,
        default=peers.PeerConfig.max_batch_size,
        help="MLServer max_batch_size and LitServe max_batch_size",
    )
    parser.add_argument(
        "--peer-batch-wait-ms",
        type=float,
        default=None,
        help="MLServer max_batch_time and LitServe batch_timeout, in ms (default "
        f"{1000 * peers.PeerConfig.batch_wait_s:g}; --scenario lightgbm: 2)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="how long each server's idle CPU is measured after its warm-up (default 2; 1 with --smoke)",
    )
    parser.add_argument("--project", type=Path, default=ROOT, help="project dir to serve (a copy, to try changes)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="--scenario lightgbm: after the measured rounds, one more Locust run per level against the "
        "project with py-spy on its processes (bench/lightgbm/profile.py; not in the tables)",
    )
    args = parser.parse_args(argv)
    lightgbm = args.scenario == "lightgbm"
    known = LIGHTGBM_SERVERS if lightgbm else SERVER_NAMES
    if args.out is None:
        args.out = BENCH / "results" / "lightgbm" if lightgbm else BENCH / "results"
    if args.servers is None:
        args.servers = ",".join(known)
    if lightgbm and (args.candidate or args.candidate_env):
        parser.error("--candidate and --candidate-env are for --scenario penguins")
    if args.levels is None:
        args.levels = "1,32" if lightgbm else "16" if args.smoke else "1,8,32,64"
    try:
        args.levels = [int(x) for x in args.levels.split(",")]
    except ValueError:
        parser.error(f"--levels must be comma-separated user counts, e.g. 1,8,32,64 (got {args.levels!r})")
    if args.duration is None:
        args.duration = 3.0 if args.smoke else 15.0
    if args.bulk_duration is None:
        args.bulk_duration = 3.0 if args.smoke else 15.0
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 2
    for name in ("rounds", "bulk_size", "baseline_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.levels) < 1 or args.duration <= 0 or args.bulk_duration <= 0 or args.bulk_users < 0:
        parser.error("levels must be at least 1 user, durations positive, --bulk-users 0 or more")
    unknown = set(args.servers.split(",")) - {*known, ""}
    if unknown:
        parser.error(f"unknown --servers {sorted(unknown)}; choose from {', '.join(known)}")
    if args.no_peers:
        args.servers = ",".join(name for name in args.servers.split(",") if name not in (*peers.NAMES, *LIGHTGBM_PEERS))
    if args.idle_seconds is None:
        args.idle_seconds = 1.0 if args.smoke else 2.0
    if (
        args.peer_batch_wait_ms is None
    ):  # MLServer's LightGBM runtime did better with 2 ms (bench/README.md, "LightGBM")
        args.peer_batch_wait_ms = 2.0 if lightgbm else 1000 * peers.PeerConfig.batch_wait_s
    if (
        min(args.mlserver_workers, args.litserve_workers, args.litserve_api_servers, args.peer_max_batch_size) < 1
        or args.peer_batch_wait_ms < 0
        or args.idle_seconds <= 0
    ):
        parser.error(
            "the peers' workers, HTTP processes and --peer-max-batch-size must be at least 1, "
            "--peer-batch-wait-ms 0 or more, --idle-seconds positive"
        )
    wait = args.peer_batch_wait_ms / 1000
    args.peer_configs = {
        "mlserver": peers.PeerConfig(args.mlserver_workers, args.peer_max_batch_size, wait),
        "litserve": peers.PeerConfig(args.litserve_workers, args.peer_max_batch_size, wait, args.litserve_api_servers),
    }
    # The level of the settings' cost and of predict by id: 32 users (in --smoke, whose only level is 16: 16).
    args.focus = 32 if 32 in args.levels else max(args.levels)
    if args.byid_users is None:
        args.byid_users = args.focus
    if args.byid_users < 0:
        parser.error("--byid-users must be 0 or more")
    names = [spec.partition("=")[0] for spec in args.candidate]
    if any(
        "=" not in spec or not spec.partition("=")[0] or not Path(spec.partition("=")[2]).is_dir()
        for spec in args.candidate
    ):
        parser.error(f"--candidate takes NAME=DIR, a directory holding a copy of the project (got {args.candidate})")
    for spec in args.candidate_env:
        name, colon, setting = spec.partition(":")
        if not colon or "=" not in setting or name not in names:
            parser.error(
                f"--candidate-env takes NAME:KEY=VALUE for a NAME given with --candidate {names} (got {spec!r})"
            )
    args.project = args.project.resolve()
    return args


SERVER_NAMES = ("shipped", "nobatch", "fastapi", "nodrift", "payloadlog", "services", *peers.NAMES)
SCENARIOS = ("penguins", "lightgbm")
# --scenario lightgbm (bench/lightgbm/scenario.py): the project serving the imported booster, the FastAPI baseline
# calling booster.predict (bench/lightgbm/baseline.py), MLServer's LightGBM runtime (bench/peers/mlserver_lightgbm/).
LIGHTGBM_PEERS = ("mlserver_lightgbm", "mlserver_lightgbm_nobatch")  # the second: adaptive batching off
LIGHTGBM_SERVERS = ("shipped", "fastapi", *LIGHTGBM_PEERS)


def lightgbm_scenario():
    """bench/lightgbm/scenario.py, loaded by its path: bench/lightgbm/ has no __init__.py, so that the folder never
    shadows the real `lightgbm` package for code run with bench/ on sys.path (as this runner is)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_lightgbm_scenario", BENCH / "lightgbm" / "scenario.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    atexit.register(_kill_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.scenario == "lightgbm":  # its own data, model, servers and report; this runner's machinery
        return lightgbm_scenario().main(args, sys.modules[__name__])
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="tabserve-bench-home-"))
    workdir = Path(tempfile.mkdtemp(prefix="tabserve-bench-work-"))
    args.workdir = workdir
    args.peer_venvs = (args.peer_venvs or workdir / "venvs").resolve()
    args.feature_db = f"sqlite:///{workdir / 'features.db'}"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1"}
    env.pop("MODEL_TAG", None)
    env["PYTHONPATH"] = str(args.project)
    # A private TMPDIR: BentoML puts its inter-service Unix sockets there (bentoml-uds-*), out of reach of
    # anything else on the machine that cleans /tmp.
    (workdir / "tmp").mkdir()
    env["TMPDIR"] = str(workdir / "tmp")
    started = time.perf_counter()
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        # The peers' virtualenvs install in the background while the model trains (never beside a measurement).
        chosen = args.servers.split(",")
        installs = start_peer_installs([name for name in peers.NAMES if name in chosen], args)
        print(f"training into {home} (load avg {load_before})", flush=True)
        subprocess.run(
            [sys.executable, "train.py"], cwd=args.project, env=env, check=True, stdout=subprocess.DEVNULL, timeout=300
        )
        args.pipeline_file = pipeline_file(env)
        if args.byid_users:  # the feature table of the predict-by-id level, numbered rows of the training data
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tabserve.serving.api.feature_table",
                    "load",
                    str(args.project / "data" / "penguins.csv"),
                    "--id-column",
                    "penguin_id",
                    "--number-rows",
                    "--db",
                    args.feature_db,
                ],
                cwd=args.project,
                env=env,
                check=True,
                timeout=120,
            )
        peer_info = finish_peer_installs(installs, args, started)
        inproc_runs = []
        for omp in ("default", "1"):
            run_env = dict(env) if omp == "default" else {**env, "OMP_NUM_THREADS": omp}
            out = subprocess.run(
                [
                    sys.executable,
                    str(BENCH / "inprocess.py"),
                    "--seconds",
                    "0.5" if args.smoke else "5",
                    "--sizes",
                    f"1,{args.bulk_size}",
                ],
                cwd=args.project,
                env=run_env,
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
            inproc_runs.append(
                {"omp": omp if omp == "1" else env.get("OMP_NUM_THREADS", "default"), **json.loads(out.stdout)}
            )
            print(f"  in-process OMP={omp}: {inproc_runs[-1]['batches']}", flush=True)
        best_bulk = max(r["batches"][str(args.bulk_size)]["rows_per_s"] for r in inproc_runs)
        results = {
            "smoke": args.smoke,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
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
                "servers": chosen,
                "peers": {name: dataclasses.asdict(config) for name, config in args.peer_configs.items()},
            },
            "inprocess": {"runs": inproc_runs, "best_rows_per_s_at_1000": best_bulk},
            "peers": peer_info,
            "peers_ready_after_s": args.peers_ready_after_s,
            "servers": [],
        }
        loads = (
            [str(u) for u in args.levels]
            + (["byid"] if args.byid_users else [])
            + (["bulk"] if args.bulk_users else [])
        )
        running: list[Running] = []
        for index, server in enumerate(servers(args, 0)):
            if not any(server.takes(level) for level in loads):
                continue
            if server.peer and "error" in peer_info.get(server.peer, {}):
                continue  # not installed: the run goes on without it (results.json says why)
            port = free_port()
            try:
                running.append(start_server(servers(args, port)[index], args, env, workdir, port))
            except Exception as exc:  # a peer that does not start: reported, the run goes on; the project's must start
                if not server.peer:
                    raise
                peer_info[server.peer]["error"] = f"did not start: {exc}"[:4000]
                print(f"  WARNING: {server.name} left out: {str(exc)[:600]}", flush=True)
        in_order = sorted(running, key=lambda run: RUN_ORDER.get(run.server.name, 5))
        for level in loads:
            taking = [run for run in in_order if run.server.takes(level)]
            for round_no in range(1, args.rounds + 1):
                for run in taking if round_no % 2 else taking[::-1]:
                    run.rounds.setdefault(level, []).append(measure(run, level, args, workdir, env, round_no))
        results["servers"] = [finish(run) for run in running]
        _kill_all()
        results["load_after"] = [round(x, 2) for x in os.getloadavg()]
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["wall_s"] = round(time.perf_counter() - started, 1)
        results["targets"] = targets(results)
        log_cost = variant_cost(results, "payloadlog")
        if log_cost:
            logged = next(s for s in results["servers"] if s["name"] == "payloadlog").get("payload_log", {})
            results["payload_log"] = {**log_cost, **logged}
        write_results(results, args.out)
        status = 0
        if not args.no_scoring:  # after the load test, never beside it: both would measure the other
            results["scoring"] = run_scoring(args)
            status = 1 if "error" in results["scoring"] else 0
            results["wall_s"] = round(time.perf_counter() - started, 1)
            write_results(results, args.out)
        print((args.out / "results.md").read_text())
        print(f"wrote {args.out}/results.{{json,md,png}} in {results['wall_s']} s")
        return status
    finally:
        _kill_all()
        shutil.rmtree(home, ignore_errors=True)
        if os.environ.get("BENCH_KEEP_WORKDIR"):
            print(f"locust and server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
