"""The server catalogue: every server a run can measure (the shipped project and its variants, candidates, the
FastAPI baseline, the peers MLServer and LitServe), how each starts, what it answers to, and where it runs
within a round."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import peers  # bench/peers/: installs and configures MLServer and LitServe

from harness import BENCH, BIN
from harness.net import free_port

LOCUSTFILE = BENCH / "locustfile.py"


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
    # The Locust users of its explained points (single record, bulk: ?explain=true), run beside the unexplained ones
    # in every round at the levels of args.explain_levels; None: no explained points (the peers, the variants).
    explained_users: tuple[str, str] | None = None

    def takes(self, level: str) -> bool:
        if level == "byid":
            return self.byid
        return self.levels is None or level in self.levels

    def explains(self, level: str, explain_levels: list[str]) -> bool:
        """Whether it has an explained point at this level (right after its unexplained one in every round)."""
        return self.explained_users is not None and level in explain_levels and self.takes(level)


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

# bench/locustfile.py's users of the explained points: /predict?explain=true, /predict_batch?explain=true.
EXPLAINED_USERS = ("ExplainedRecord", "ExplainedBulk")

SERVER_NAMES = ("shipped", "nobatch", "fastapi", "nodrift", "payloadlog", "services", *peers.NAMES)
# --scenario lightgbm (bench/lightgbm/scenario.py): the project serving the imported booster, the FastAPI baseline
# calling booster.predict (bench/lightgbm/baseline.py), MLServer's LightGBM runtime (bench/peers/mlserver_lightgbm/).
LIGHTGBM_PEERS = ("mlserver_lightgbm", "mlserver_lightgbm_nobatch")  # the second: adaptive batching off
LIGHTGBM_SERVERS = ("shipped", "fastapi", *LIGHTGBM_PEERS)


def chosen_servers(args, port: int) -> list[Server]:
    """The --servers of the penguins run, then the --candidate copies, each to start on `port`."""
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
            explained_users=EXPLAINED_USERS,
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
        # The shipped project (the monolith layout, the default) in its other layout, SERVICE_LAYOUT=services,
        # at every level.
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
                explained_users=EXPLAINED_USERS,
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
