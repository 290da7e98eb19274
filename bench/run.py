"""The benchmark runner: one run, the project's servers, a FastAPI baseline and the peers (MLServer, LitServe),
the same model and the same cores.

    python bench/run.py                      # full run -> bench/results/ (about 30 minutes)
    python bench/run.py --smoke --out /tmp/x # a few seconds per level, for CI (no timing checks)
    python bench/run.py --scenario lightgbm  # an imported LightGBM booster vs MLServer's LightGBM runtime vs FastAPI
                                             # (bench/lightgbm/scenario.py) -> bench/results/lightgbm/
    python bench/run.py --explain-only --out /tmp/x   # explained vs unexplained only, on the shipped server

It trains the model into a fresh temporary BENTOML_HOME and measures the pipeline in-process. Then it
starts each server in turn on a free port (timing its cold start to /readyz 200) and leaves it running,
idle, while the next starts. The load comes after, interleaved: for each concurrency level, ROUNDS
rounds in which every server gets the same Locust load one after the other (the order reversed every
other round), so a change in the machine's background load hits all servers alike instead of whichever
ran in that minute; bulk /predict_batch the same way. Two variants of the shipped project take part
in the 32-user level only (drift counting off; the payload log on), so their cost is a per-round ratio
against the shipped server in the same minute; the shipped server also gets a predict-by-id level
(bench/entities.py, features in a SQLite table) and explained points (`?explain=true` on /predict at 1 and 32
users and on bulk /predict_batch, each right after the same point unexplained; `--explain-only`: those alone).
The peers (bench/peers/: Seldon MLServer and LitServe,
each in its own virtualenv under the work directory, installed while the model trains) serve the same
pipeline file at every level. It reads the records per pipeline call, the cache hits and the feature
lookup and model call times from /metrics and samples the RSS of each server's whole process tree.
After the servers are stopped, bench/scoring.py measures batch scoring (score.py). Every process it
starts is in its own process group and is killed on exit, on failure and on Ctrl-C.
Writes results.json, results.md and results.png (and scoring.json, scoring.md) to --out.
This file is the command line and the run's order; bench/harness/ does each step (its __init__.py lists
the modules: processes, sampling, the server catalogue, peer installs, Locust, /metrics, grading, writing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/harness/, bench/peers/, records.py, entities.py as top-level imports
import peers  # noqa: E402 - bench/peers/: installs and configures MLServer and LitServe
from harness import (  # noqa: E402 - bench/harness/: the machinery, one module per job
    batch_scoring,
    grade,
    lifecycle,
    load,
    options,
    peer_installs,
    prepare,
    processes,
    profile,
    report,
    servers,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (bench/harness/options.py); --help's description is this file's first line."""
    return options.parse_args(argv, description=__doc__.split("\n")[0])


def lightgbm_scenario():
    """bench/lightgbm/scenario.py, loaded by its path: bench/lightgbm/ has no __init__.py, so that the folder never
    shadows the real `lightgbm` package for code run with bench/ on sys.path (as this runner is)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_lightgbm_scenario", BENCH_DIR / "lightgbm" / "scenario.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    processes.kill_all_on_exit()
    if args.scenario == "lightgbm":  # its own data, model, servers and report; this runner's machinery
        return lightgbm_scenario().main(args)
    args.out.mkdir(parents=True, exist_ok=True)
    home, workdir, env = prepare.workspace(args)
    started = time.perf_counter()
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        # The peers' virtualenvs install in the background while the model trains (never beside a measurement).
        chosen = args.servers.split(",")
        installs = peer_installs.start_peer_installs([name for name in peers.NAMES if name in chosen], args)
        print(f"training into {home} (load avg {load_before})", flush=True)
        prepare.train(args, env)
        args.pipeline_file = prepare.pipeline_file(env)
        if args.byid_users:  # the feature table of the predict-by-id level, numbered rows of the training data
            prepare.load_feature_table(args, env)
        peer_info = peer_installs.finish_peer_installs(installs, args, started)
        inprocess = prepare.time_in_process(args, env)
        results = report.new_results(args, chosen, load_before, inprocess, peer_info)
        loads = (
            [str(u) for u in args.levels]
            + (["byid"] if args.byid_users else [])
            + (["bulk"] if args.bulk_users else [])
        )
        running = lifecycle.start_servers(args, env, workdir, loads, peer_info)
        # The load, interleaved: per level, round by round, every server in turn (reversed every other round); a
        # server's explained point (?explain=true) right after its unexplained one, so each pair is the same minute.
        in_order = sorted(running, key=lambda run: servers.RUN_ORDER.get(run.server.name, 5))
        for level in loads:
            taking = [
                (run, explain)
                for run in in_order
                if run.server.takes(level)
                for explain in (False, True)
                if not explain or run.server.explains(level, args.explain_levels)
            ]
            for round_no in range(1, args.rounds + 1):
                for run, explain in taking if round_no % 2 else taking[::-1]:
                    stats = load.measure(run, level, args, workdir, env, round_no, explain)
                    (run.explained_rounds if explain else run.rounds).setdefault(level, []).append(stats)
        if args.profile:  # after the measured rounds: py-spy during one more run of each explained point and its twin
            ship = next((run for run in running if run.server.name == "shipped"), None)
            if ship:
                results["profile"] = profile.profile_points(
                    args, ship, args.explain_levels, env, workdir, args.explain_levels
                )
        results["servers"] = [lifecycle.finish(run) for run in running]
        processes.kill_all()
        results["load_after"] = [round(x, 2) for x in os.getloadavg()]
        results["finished"] = report.now()
        results["wall_s"] = round(time.perf_counter() - started, 1)
        results["targets"] = {} if args.explain_only else grade.targets(results)  # issue 12's: against the others
        results["explanations"] = grade.explanation_costs(results)
        payload_log = grade.payload_log_cost(results)
        if payload_log:
            results["payload_log"] = payload_log
        report.write_results(results, args.out)
        status = 0
        if not args.no_scoring:  # after the load test, never beside it: both would measure the other
            results["scoring"] = batch_scoring.run_scoring(args)
            status = 1 if "error" in results["scoring"] else 0
            results["wall_s"] = round(time.perf_counter() - started, 1)
            report.write_results(results, args.out)
        print((args.out / "results.md").read_text())
        print(f"wrote {args.out}/results.{{json,md,png}} in {results['wall_s']} s")
        return status
    finally:
        processes.kill_all()
        shutil.rmtree(home, ignore_errors=True)
        if os.environ.get("BENCH_KEEP_WORKDIR"):
            print(f"locust and server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
