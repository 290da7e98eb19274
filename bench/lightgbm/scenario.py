"""`bench/run.py --scenario lightgbm`: the model the user already has, a LightGBM booster, served three ways.

1. The data set and the booster (bench/lightgbm/generate.py: 50 features, 6 of them pandas categories, 300 trees,
   binary), made the same on every run into the run's work directory, while MLServer's LightGBM runtime installs
   into its own virtualenv (bench/peers/mlserver_lightgbm/) in the background.
2. The project imports the booster's text file with its own CLI into a fresh BENTOML_HOME:
   `import_model.py --model model.txt --sample sample.csv --name lgbm_bench --target target`.
3. In process: `booster.predict` alone at 1 and 1,000 rows (one OpenMP thread), for reference.
4. Three servers, started one after the other and left running (the machinery of bench/harness/: cold start, peak RSS,
   warm-up, idle CPU, process groups killed on exit):
   - `shipped`: `bentoml serve service:PredictionService` with `MODEL_TAG=lgbm_bench` and `PREDICTION_CACHE_SIZE=0`
     (no cache to flatter it), the project's defaults otherwise;
   - `fastapi`: bench/lightgbm/baseline.py, FastAPI calling `booster.predict`, 2 uvicorn processes
     (bench/uvicorn_nodelay.py), the same record shape;
   - `mlserver_lightgbm`: MLServer 1.7.1 with `mlserver_lightgbm.LightGBMModel` on the same file, V2 protocol,
     2 parallel workers, adaptive batching <= 64 / 2 ms (10 ms, the penguins peer's window, was slower here at 1 and
     at 32 users: bench/README.md, "LightGBM");
   - `mlserver_lightgbm_nobatch`: the same with adaptive batching off, MLServer's better configuration for a lone
     client; against MLServer the targets take the better of the two in each round.
5. Agreement: 200 held-out records to each server, in bulk and 20 of them one by one; each answer's probability
   of class 1 against `booster.predict` in process (results.json `agreement`).
6. The load, interleaved as in bench/run.py: for each level (1 and 32 users of single records, then bulk: 4 users
   of 1,000-record requests), every server in turn, the order reversed every other round; Locust users in
   bench/lightgbm/locustfile.py. Ratios: the project's ok req/s over each peer's, per round (the two ran in
   the same minute), the median of the rounds. The project also answers each level explained (`?explain=true`:
   LightGBM's own `pred_contrib`) right after its unexplained run in every round; explained / unexplained per
   round (bench/harness/grade.py `explanation_costs`). `--explain-only`: the project alone, explained and not.
Writes results.json and results.md to --out (default bench/results/lightgbm).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# bench/ is on sys.path (bench/run.py, which loads this file, puts it there): the harness and the peers' pins.
import peers
from harness import BIN, grade, lifecycle, load, net, peer_installs, processes, profile, report
from harness.servers import Server

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
MODEL_NAME = "lgbm_bench"
AGREEMENT_RECORDS = 200
AGREEMENT_SINGLES = 20
AGREEMENT_TOLERANCE = 1e-6  # the baseline rounds probabilities to 6 places
ORDER = (
    "shipped",
    "fastapi",
    "mlserver_lightgbm",
    "mlserver_lightgbm_nobatch",
)  # within a round (reversed every other one)
MLSERVERS = ("mlserver_lightgbm", "mlserver_lightgbm_nobatch")


def _load(name: str):
    """A module of bench/lightgbm/ by its path (the folder is no package: see bench/run.py's lightgbm_scenario)."""
    key = f"bench_lightgbm_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


bodies = _load("bodies")
peer = _load("peer")


def servers(args, data: Path, model_file: Path, port: int) -> list[Server]:
    """The scenario's servers (bench/harness/servers.py's Server), those --servers names, in ORDER."""
    records, schema = bodies.load(data)
    record_body = json.dumps(records[0]).encode()
    v2_body = json.dumps(bodies.v2_request(records[:1], schema)).encode()
    v2_path = f"/v2/models/{peer.V2_MODEL}/infer"
    locustfile = HERE / "locustfile.py"
    tuned = dict(kv.split("=", 1) for kv in args.server_env)
    serve = [
        str(BIN / "bentoml"),
        "serve",
        "service:PredictionService",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    config = peers.PeerConfig(args.mlserver_workers, args.peer_max_batch_size, args.peer_batch_wait_ms / 1000)
    # The same server with adaptive batching off (max_batch_size 1): a lone client waits for no window.
    nobatch = peers.PeerConfig(args.mlserver_workers, 1, 0.0)

    def mlserver(name: str, settings):
        return lambda port: peer.command(
            args.peer_venvs / peer.NAME,
            args.workdir / f"{name}_repo",
            model_file,
            port,
            net.free_port(),
            net.free_port(),
            settings,
        )

    def mlserver_server(name: str, label: str, settings):
        return Server(
            name,
            label,
            [],
            project_metrics=False,
            ready_path="/v2/health/ready",
            single_user="MLServerLightGBMSingle",
            bulk_user="MLServerLightGBMBulk",
            peer=peer.NAME,
            setup=mlserver(name, settings),
            locustfile=locustfile,
            warmup=(v2_path, v2_body),
        )

    out = {
        "shipped": Server(
            "shipped",
            "project (bentoml serve, imported booster, cache off)",
            serve,
            {**tuned, "MODEL_TAG": MODEL_NAME, "PREDICTION_CACHE_SIZE": "0"},
            batched=True,
            single_user="LightGBMSingle",
            bulk_user="LightGBMBulk",
            locustfile=locustfile,
            warmup=("/predict", record_body),
            explained_users=("LightGBMExplainedSingle", "LightGBMExplainedBulk"),  # pred_contrib (?explain=true)
        ),
        "fastapi": Server(
            "fastapi",
            f"FastAPI baseline ({args.baseline_workers} workers, booster.predict)",
            [
                str(BIN / "python"),
                str(BENCH / "uvicorn_nodelay.py"),
                "bench.lightgbm.baseline:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.baseline_workers),
            ],
            {
                "LGBM_MODEL_FILE": str(model_file),
                "LGBM_MODEL_NAME": MODEL_NAME,
                "OMP_NUM_THREADS": str(args.baseline_omp),
            },
            project_metrics=False,
            single_user="LightGBMSingle",
            bulk_user="LightGBMBulk",
            locustfile=locustfile,
            warmup=("/predict", record_body),
        ),
        "mlserver_lightgbm": mlserver_server(
            "mlserver_lightgbm", f"MLServer LightGBM runtime ({config.label})", config
        ),
        "mlserver_lightgbm_nobatch": mlserver_server(
            "mlserver_lightgbm_nobatch", f"MLServer LightGBM runtime ({nobatch.workers} workers, no batching)", nobatch
        ),
    }
    chosen = [name for name in args.servers.split(",") if name]
    return [out[name] for name in ORDER if name in chosen]


def agreement(run, data: Path) -> dict:
    """The server's probability of class 1 for held-out records against booster.predict's (generate.py wrote
    them): in bulk (one request of AGREEMENT_RECORDS) and AGREEMENT_SINGLES one by one."""
    import urllib.request

    saved = json.loads((data / "records.json").read_text())
    records, expected = saved["records"][:AGREEMENT_RECORDS], saved["expected"][:AGREEMENT_RECORDS]
    schema = json.loads((data / "schema.json").read_text())
    v2 = run.server.peer is not None

    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            run.base + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def probabilities(rows: list[dict]) -> list[float]:
        if v2:
            return [
                float(p)
                for p in post(f"/v2/models/{peer.V2_MODEL}/infer", bodies.v2_request(rows, schema))["outputs"][0][
                    "data"
                ]
            ]
        if len(rows) == 1:
            return [float(post("/predict", rows[0])["probabilities"]["1"])]
        return [float(a["probabilities"]["1"]) for a in post("/predict_batch", {"records": rows})["predictions"]]

    try:
        bulk = probabilities(records)
        single = [probabilities([r])[0] for r in records[:AGREEMENT_SINGLES]]
    except Exception as exc:  # noqa: BLE001 - reported, the load test goes on
        return {"error": f"{type(exc).__name__}: {exc}"[:500], "agrees": False}
    diffs = [abs(a - b) for a, b in zip(bulk + single, expected + expected[:AGREEMENT_SINGLES], strict=False)]
    worst = max(diffs) if len(diffs) == len(expected) + AGREEMENT_SINGLES else None
    return {
        "records": len(bulk),
        "singles": len(single),
        "max_abs_diff": worst,
        "agrees": worst is not None and worst <= AGREEMENT_TOLERANCE,
    }


def profile_levels(args, ship, loads: list[str], env: dict, workdir: Path) -> dict:
    """py-spy on the project's server (all its processes) during one more Locust run per level and explained point
    (bench/harness/profile.py); the summaries."""
    return profile.profile_points(args, ship, loads, env, workdir, args.explain_levels)


def ratios(by: dict, name: str, other: str, level: str) -> dict | None:
    """ok req/s of `name` over `other`'s at a level, round by round (each pair ran in the same minute); the median.
    `other` "mlserver": the better of MLServer's two configurations in each round."""

    def rounds(server: str) -> list[float] | None:
        if server == "mlserver":
            each = [rounds(n) for n in MLSERVERS]
            each = [r for r in each if r]
            return [max(values) for values in zip(*each, strict=False)] if each else None
        s = by.get(server)
        s = (s.get("bulk") if level == "bulk" else s["levels"].get(level)) if s else None
        return s["ok_rps_by_round"] if s else None

    a, b = rounds(name), rounds(other)
    if not a or not b:
        return None
    by_round = [x / y for x, y in zip(a, b, strict=False) if y]
    return {
        "value": round(statistics.median(by_round), 3) if by_round else None,
        "by_round": [round(r, 3) for r in by_round],
    }


def targets(results: dict) -> dict:
    """The issue's: at 1 and at 32 users the project ahead of both (ok req/s ratio > 1 against each, median of the
    rounds), no errors; in bulk at least the baseline's rows/s."""
    by = {s["name"]: s for s in results["servers"]}
    out = {}
    if "shipped" not in by:
        return out
    for level in [str(u) for u in results["config"]["levels"]] + (["bulk"] if results["config"]["bulk_users"] else []):
        for other in ("fastapi", "mlserver"):  # "mlserver": the better of its two configurations, round by round
            r = ratios(by, "shipped", other, level)
            if r is None:
                continue
            name = f"{'bulk' if level == 'bulk' else 'users_' + level}_vs_{other}"
            if level == "bulk" and other != "fastapi":
                out[name] = {**r, "met": None}  # reported, no target
                continue
            errors = by["shipped"]["bulk" if level == "bulk" else "levels"]
            errors = (errors if level == "bulk" else errors[level])["errors"]
            met = r["value"] is not None and errors == 0 and (r["value"] >= 1 if level == "bulk" else r["value"] > 1)
            out[name] = {**r, "met": met}
    return out


def write_markdown(results: dict, path: Path) -> None:
    m, c = results["machine"], results["config"]
    by = {s["name"]: s for s in results["servers"]}
    d, imp = results["data"], results["import"]
    lines = [
        f"# LightGBM scenario ({results['finished']})",
        "",
        f'`bench/run.py --scenario lightgbm` ([bench/README.md](../../README.md), "LightGBM"). Machine: {m["cpu"]}, '
        f"{m['cores']} cores, {m['memory_gb']} GiB; Python {m['python']}. Load average before / after: "
        f"{results['load_before']} / {results['load_after']} (the cores are shared with other work).",
        f"The model: {d['features']} features ({len(d['categorical'])} pandas categories: "
        f"{', '.join(f'{k} {v}' for k, v in d['categorical'].items())}), {d['trees']} trees, binary; trained on "
        f"{d['train_rows']:,} rows in {d['train_s']} s; held-out AUC {d['held_out_auc']}, "
        f"accuracy {d['held_out_accuracy']}; "
        f"model.txt {d['model_bytes'] / 2**20:.1f} MiB. Imported with `{imp['command']}` in {imp['seconds']} s "
        f"({imp['tag']}).",
        f"Each level: {c['rounds']} round(s) of {c['duration_s']} s per server, interleaved (order reversed every "
        f"other round), closed-loop Locust users; bulk: {c['bulk_users']} users x {c['bulk_size']} records for "
        f"{c['bulk_duration_s']} s. ok req/s is the mean of the rounds, p50/p99 the worst round's.",
        "",
        "| server | level | ok req/s (rounds) | rows/s | p50 ms | p99 ms | errors | server CPU ms per request "
        "| mean batch | Locust cores |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server in results["servers"]:
        rows = list(server["levels"].items()) + ([("bulk", server["bulk"])] if "bulk" in server else [])
        for level, s in rows:
            batch = "-" if s.get("mean_batch_size") is None else f"{s['mean_batch_size']:.1f}"
            rows_s = f"{s['rows_per_s']:,.0f}" if "rows_per_s" in s else "-"
            lines.append(
                f"| {server['label']} | {_level(level, c['bulk_users'])} | "
                f"{s['ok_rps']:,.0f} ({', '.join(f'{r:,.0f}' for r in s['ok_rps_by_round'])}) | {rows_s} | "
                f"{_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | {s['errors']} | "
                f"{_cpu(s.get('server_cpu_ms_per_request'))} | "
                f"{batch} | {s['loadgen_cpu_share']} |"
            )
    others = [name for name in by if name != "shipped"]  # none with --explain-only: no comparison table
    lines += (
        [
            "",
            "The project against each (ok req/s, or rows/s in bulk, of the project / of the other: the median of the "
            "per-round ratios, the rounds in brackets):",
            "",
            "| level | / FastAPI baseline | / MLServer, batching | / MLServer, no batching | / the better MLServer |",
            "| --- | --- | --- | --- | --- |",
        ]
        if others
        else []
    )
    compared = [str(u) for u in c["levels"]] + (["bulk"] if c["bulk_users"] else []) if others else []
    for level in compared:
        cells = []
        for other in ("fastapi", *MLSERVERS, "mlserver"):
            r = ratios(by, "shipped", other, level)
            cells.append(
                "-"
                if not r or r["value"] is None
                else f"**{r['value']:.2f}** ({', '.join(f'{x:.2f}' for x in r['by_round'])})"
            )
        lines.append(f"| {_level(level, c['bulk_users'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| server | cold start s | peak RSS MB | idle cores | warm-up ok "
        "| agrees with booster.predict (max abs diff) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for server in results["servers"]:
        a = server.get("agreement", {})
        agree = a.get("error") or (
            f"{'yes' if a.get('agrees') else 'NO'} ({a.get('max_abs_diff'):.1e}, "
            f"{a.get('records')} in bulk + {a.get('singles')} singles)"
            if a
            else "-"
        )
        lines.append(
            f"| {server['label']} | {server['cold_start_s']} | {server['peak_rss_mb']} | {server['idle_cores']:.2f} | "
            f"{server['warmup_ok']}/20 | {agree} |"
        )
    ip = results.get("inprocess") or {}
    if ip:
        lines += [
            "",
            "`booster.predict` in process (no HTTP, no validation; one OpenMP thread): "
            + "; ".join(
                f"{size} row{'s' if size != '1' else ''}: {v['ms_per_call']} ms ({v['rows_per_s']:,.0f} rows/s)"
                + (
                    f", with `pred_contrib=True` (the explanations) {v['pred_contrib_ms_per_call']} ms"
                    if "pred_contrib_ms_per_call" in v
                    else ""
                )
                for size, v in ip.items()
            )
            + ".",
        ]
    for name, info in results.get("peers", {}).items():
        if "error" in info:
            lines.append(f"- {name} left out of this run: {' '.join(info['error'].split())[:400]}")
        else:
            lines.append(f"- {name}: {', '.join(f'{k} {v}' for k, v in info.get('versions', {}).items())}")
    for name, error in results.get("left_out", {}).items():
        lines.append(f"- {name} left out of this run: {' '.join(error.split())[:400]}")
    lines += report.explanations_section(results) + profile.section(results)
    lines += (
        [
            "",
            "Targets (the issue's): the project ahead of both peers at 1 and at 32 users (against MLServer: the better "
            "of its two configurations in each round), with no errors; bulk rows/s at least the baseline's:",
            "",
        ]
        if results["targets"]
        else []
    )
    for name, t in results["targets"].items():
        verdict = "reported" if t["met"] is None else "met" if t["met"] else "MISSED"
        lines.append(f"- {name}: {t['value']} (by round {t['by_round']}) -> {verdict}")
    path.write_text("\n".join(lines) + "\n")


def _machine() -> dict:
    import importlib.metadata as md

    info = report.machine_info()
    for name in ("lightgbm", "starlette"):
        try:
            info["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return info


def _level(level: str, bulk_users: int) -> str:
    return f"bulk x{bulk_users}" if level == "bulk" else f"{level} user{'' if level == '1' else 's'}"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _run_json(cmd: list[str], env: dict, cwd: Path, timeout: float) -> dict:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} exited with {out.returncode}: {(out.stderr or out.stdout)[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="tabserve-bench-lgbm-home-"))
    workdir = Path(tempfile.mkdtemp(prefix="tabserve-bench-lgbm-work-"))
    args.workdir = workdir
    args.peer_venvs = (args.peer_venvs or workdir / "venvs").resolve()
    data = workdir / "lightgbm"
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(args.project),
        "BENCH_LGBM_DIR": str(data),
        "BENCH_LGBM_V2_MODEL": peer.V2_MODEL,
    }
    env.pop("MODEL_TAG", None)
    (workdir / "tmp").mkdir()
    env["TMPDIR"] = str(workdir / "tmp")  # BentoML's Unix sockets, out of reach of anything that cleans /tmp
    started = time.perf_counter()
    chosen = args.servers.split(",")
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        install = None
        if set(MLSERVERS) & set(chosen):  # in the background while the model trains, never beside a measurement
            log = workdir / f"install_{peer.NAME}.log"
            clock = time.perf_counter()
            proc = peer.start_install(args.peer_venvs / peer.NAME, log)
            if proc is not None:
                processes.supervise(proc)
                print(f"installing {peer.NAME} into {args.peer_venvs / peer.NAME} (log: {log})", flush=True)
            install = (proc, log, clock)
        print(f"making the data set and the booster into {data} (load avg {load_before})", flush=True)
        one_thread = {**env, "OMP_NUM_THREADS": "1"}
        summary = _run_json(
            [sys.executable, str(HERE / "generate.py"), "make", "--out", str(data)], one_thread, args.project, 600
        )
        model_file = data / "model.txt"
        command = [
            sys.executable,
            "import_model.py",
            "--model",
            str(model_file),
            "--sample",
            str(data / "sample.csv"),
            "--name",
            MODEL_NAME,
            "--target",
            "target",
        ]
        clock = time.perf_counter()
        imported = subprocess.run(command, cwd=args.project, env=env, capture_output=True, text=True, timeout=600)
        if imported.returncode != 0:
            raise RuntimeError(
                f"import_model.py exited with {imported.returncode}: {(imported.stdout + imported.stderr)[-2000:]}"
            )
        tag = next(
            (line.split()[-1] for line in imported.stdout.splitlines() if line.startswith("saved model ")), MODEL_NAME
        )
        import_info = {
            "command": "import_model.py --model model.txt --sample sample.csv --name lgbm_bench --target target",
            "seconds": round(time.perf_counter() - clock, 1),
            "tag": tag,
            "output": imported.stdout[-4000:],
        }
        print(f"  imported {tag} in {import_info['seconds']} s", flush=True)
        peer_info = {}
        if install:
            proc, log, clock = install
            entry: dict = {
                "venv": str(args.peer_venvs / peer.NAME),
                "requirements": "bench/peers/mlserver_lightgbm/requirements.txt",
            }
            try:
                if proc is not None:
                    try:
                        code = proc.wait(timeout=peer_installs.PEER_INSTALL_TIMEOUT_S)
                    finally:
                        processes.stop(proc)
                    if code != 0:
                        raise RuntimeError(f"pip exited with {code}: {peer_installs.log_tail(log)}")
                entry["versions"] = peer.finish_install(args.peer_venvs / peer.NAME)
                entry["install_s"] = round(time.perf_counter() - clock, 1) if proc is not None else 0.0
                print(f"  {peer.NAME}: {entry['versions']}", flush=True)
            except Exception as exc:  # noqa: BLE001 - the run goes on without it
                entry["error"] = f"not installed: {exc}"[:4000]
                print(f"  WARNING: {peer.NAME} left out, {str(exc)[:600]}", flush=True)
            peer_info[peer.NAME] = entry
        inprocess = _run_json(
            [
                sys.executable,
                str(HERE / "generate.py"),
                "time",
                "--dir",
                str(data),
                "--seconds",
                "0.5" if args.smoke else "3",
                "--sizes",
                f"1,{args.bulk_size}",
            ],
            one_thread,
            args.project,
            300,
        )
        print(f"  booster.predict in process: {inprocess}", flush=True)
        results = {
            "scenario": "lightgbm",
            "smoke": args.smoke,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": _machine(),
            "load_before": load_before,
            "config": {
                "levels": args.levels,
                "duration_s": args.duration,
                "rounds": args.rounds,
                "bulk_users": args.bulk_users,
                "bulk_size": args.bulk_size,
                "bulk_duration_s": args.bulk_duration,
                "baseline": {"workers": args.baseline_workers, "omp": args.baseline_omp},
                "server_env": " ".join(args.server_env),
                "servers": chosen,
                "focus_users": args.focus,
                "explain_levels": args.explain_levels,
                "mlserver": {
                    "workers": args.mlserver_workers,
                    "max_batch_size": args.peer_max_batch_size,
                    "batch_wait_ms": args.peer_batch_wait_ms,
                },
            },
            "data": summary,
            "import": import_info,
            "inprocess": inprocess,
            "peers": peer_info,
            "load_by_round": [],
            "left_out": {},
            "servers": [],
        }
        loads = [str(u) for u in args.levels] + (["bulk"] if args.bulk_users else [])
        running = []
        for index, server in enumerate(servers(args, data, model_file, 0)):
            if server.peer and "error" in peer_info.get(server.peer, {}):
                continue
            port = net.free_port()
            try:
                run = lifecycle.start_server(servers(args, data, model_file, port)[index], args, env, workdir, port)
            except Exception as exc:  # a peer that does not start is reported; the project's and the baseline must
                if not server.peer:
                    raise
                results["left_out"][server.name] = f"did not start: {exc}"[:4000]
                print(f"  WARNING: {server.name} left out: {str(exc)[:600]}", flush=True)
                continue
            run.result["agreement"] = agreement(run, data)
            print(f"  {server.name} agreement: {run.result['agreement']}", flush=True)
            running.append(run)
        for level in loads:
            for round_no in range(1, args.rounds + 1):
                results["load_by_round"].append(
                    {"level": level, "round": round_no, "load": round(os.getloadavg()[0], 2)}
                )
                # The project's explained point (?explain=true) right after its unexplained one: the same minute.
                # load.measure also takes the server's CPU per answered request over the round.
                taking = [
                    (run, explain)
                    for run in running
                    for explain in (False, True)
                    if not explain or run.server.explains(level, args.explain_levels)
                ]
                for run, explain in taking if round_no % 2 else taking[::-1]:
                    stats = load.measure(run, level, args, workdir, env, round_no, explain)
                    (run.explained_rounds if explain else run.rounds).setdefault(level, []).append(stats)
        ship = next((run for run in running if run.server.name == "shipped"), None)
        if args.profile and ship:
            results["profile"] = profile_levels(args, ship, loads, env, workdir)
        results["servers"] = [lifecycle.finish(run) for run in running]  # combine() averages the CPU per request
        processes.kill_all()
        results["load_after"] = [round(x, 2) for x in os.getloadavg()]
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["wall_s"] = round(time.perf_counter() - started, 1)
        results["targets"] = targets(results)
        results["explanations"] = grade.explanation_costs(results)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results, args.out / "results.md")
        print((args.out / "results.md").read_text())
        print(f"wrote {args.out}/results.{{json,md}} in {results['wall_s']} s")
        return 0
    finally:
        processes.kill_all()
        shutil.rmtree(home, ignore_errors=True)
        if os.environ.get("BENCH_KEEP_WORKDIR"):
            print(f"locust and server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
