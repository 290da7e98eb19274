"""A server's life in a run: started on a free port (its cold start timed to its readiness route's 200), warmed
up, its idle CPU measured, then left running, or paused (`pause_idle`), while the others start and between its
rounds; at the end stopped, and its rounds combined into its result with its peak RSS."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import peers
from records import V2_PATH, load_records, v2_request

from harness.combine import combine
from harness.net import free_port, http
from harness.processes import pause, spawn, stop
from harness.sampling import RssSampler, tree_cpu_s
from harness.servers import Server, chosen_servers

READY_TIMEOUT_S = 90


@dataclass
class Running:
    """A started server and what was measured on it so far."""

    server: Server
    proc: subprocess.Popen
    sampler: RssSampler
    base: str
    result: dict
    rounds: dict = field(default_factory=dict)  # level ("1", "32", "bulk") -> [stats of each round]
    explained_rounds: dict = field(default_factory=dict)  # the same for its explained points (?explain=true)


def start_servers(args, env: dict, workdir: Path, loads: list[str], peer_info: dict) -> list[Running]:
    """Start, one after the other, every chosen server that takes part in one of `loads`; a peer that was not
    installed or does not start is left out (peer_info says why), the project's servers must start."""
    running: list[Running] = []
    for index, server in enumerate(chosen_servers(args, 0)):
        if not any(server.takes(level) for level in loads):
            continue
        if server.peer and "error" in peer_info.get(server.peer, {}):
            continue  # not installed: the run goes on without it (results.json says why)
        port = free_port()
        try:
            running.append(start_server(chosen_servers(args, port)[index], args, env, workdir, port))
        except Exception as exc:  # a peer that does not start: reported, the run goes on; the project's must start
            if not server.peer:
                raise
            peer_info[server.peer]["error"] = f"did not start: {exc}"[:4000]
            print(f"  WARNING: {server.name} left out: {str(exc)[:600]}", flush=True)
    return running


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
    if server.explained_users:  # the explainer is built on the first explained request of each worker
        result["warmup_explained_ok"] = sum(
            http("POST", base + path + "?explain=true", body, timeout=30)[0] == 200 for _ in range(20)
        )
    # What it costs while it waits (its rounds are interleaved with the others'): CPU of its process tree.
    time.sleep(0.5)
    cpu, clock = tree_cpu_s(proc.pid), time.perf_counter()
    time.sleep(args.idle_seconds)
    result["idle_cores"] = round((tree_cpu_s(proc.pid) - cpu) / (time.perf_counter() - clock), 3)
    run = Running(server, proc, sampler, base, result)
    if server.pause_idle:
        pause(proc, True)
        result["paused_between_rounds"] = True
    return run


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
    for level, rounds in run.explained_rounds.items():  # ?explain=true: bulk as bulk, the others per level
        result.setdefault("explained", {})[level] = combine(rounds, run.server.batched and level != "bulk")
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
