"""bench/run.py's command line: every option, its defaults (which depend on --scenario and --smoke), its checks
(a malformed option is one line and exit 2, before anything starts) and what is derived from the options."""

from __future__ import annotations

import argparse
from pathlib import Path

import peers

from harness import BENCH, ROOT
from harness.servers import LIGHTGBM_PEERS, LIGHTGBM_SERVERS, SERVER_NAMES

SCENARIOS = ("penguins", "lightgbm")


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The options of `argv` (None: the command line's), with the defaults of their scenario filled in and the
    values each server needs derived (args.peer_configs, args.focus); a malformed one exits 2 with one line."""
    parser = argparse.ArgumentParser(description=description)
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
        "--out",
        type=Path,
        default=None,
        help="default bench/results (lightgbm: bench/results/lightgbm; --explain-only: "
        "bench/results/explain/penguins or .../lightgbm)",
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
        "--no-explain",
        action="store_true",
        help="leave out the explained points (POST /predict?explain=true at 1 and 32 users, "
        "/predict_batch?explain=true in bulk, on the shipped server: bench/README.md, 'Explanations')",
    )
    parser.add_argument(
        "--explain-only",
        action="store_true",
        help="only the explained points and the unexplained ones they are compared with: the shipped server (and "
        "--candidate copies) with PREDICTION_CACHE_SIZE=0, at 1 and 32 users (default --levels 1,32) and bulk; no "
        "predict by id, no batch scoring, no peers (about 4 minutes for each scenario)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measured rounds, one more Locust run per level against the project with py-spy on its "
        "processes (bench/harness/profile.py; not in the tables): --scenario lightgbm every level, the penguins "
        "run the explained points and the unexplained ones beside them",
    )
    args = parser.parse_args(argv)
    lightgbm = args.scenario == "lightgbm"
    known = LIGHTGBM_SERVERS if lightgbm else SERVER_NAMES
    if args.out is None:  # --explain-only never writes over a full run's results
        results = BENCH / "results" / "explain" if args.explain_only else BENCH / "results"
        args.out = results / ("lightgbm" if lightgbm else "penguins" if args.explain_only else "")
    if args.explain_only:
        if args.no_explain:
            parser.error("--explain-only and --no-explain exclude each other")
        if args.servers is not None:
            parser.error("--explain-only measures the shipped server (and --candidate copies): leave out --servers")
        args.servers = "shipped"
        args.levels = args.levels or "1,32"
        args.byid_users = 0 if args.byid_users is None else args.byid_users
        args.no_scoring = True
        # Every request computes: the cache off on the one server (both points; the full run's shipped server keeps
        # its cache, and new bodies leave it the 2 rows without measurements, ~0.6 % hits, on both points alike).
        if not any(kv.startswith("PREDICTION_CACHE_SIZE=") for kv in args.server_env):
            args.server_env.append("PREDICTION_CACHE_SIZE=0")
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
    # The explained points (the shipped server, and candidates, beside their unexplained twins in every round):
    # a lone client's latency, throughput at the focus level (32 users), bulk rows/s.
    singles = [str(u) for u in dict.fromkeys((1, args.focus)) if u in args.levels]
    args.explain_levels = [] if args.no_explain else singles + (["bulk"] if args.bulk_users else [])
    # --smoke runs them for 1 s each (a few seconds in all; the smoke run asserts no timing), else as their twins.
    args.explain_seconds = 1.0 if args.smoke else None
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
