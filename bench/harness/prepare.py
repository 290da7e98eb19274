"""Before the servers start: the run's private BENTOML_HOME and work directory, the model trained into it, the
feature table of the predict-by-id level, the fitted pipeline file the peers load, and the pipeline timed in
process (bench/inprocess.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import BENCH


def workspace(args) -> tuple[Path, Path, dict]:
    """A fresh BENTOML_HOME and work directory (both temporary) and the environment of the run's processes;
    sets args.workdir, args.peer_venvs and args.feature_db."""
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
    return home, workdir, env


def train(args, env: dict) -> None:
    subprocess.run(
        [sys.executable, "train.py"], cwd=args.project, env=env, check=True, stdout=subprocess.DEVNULL, timeout=300
    )


def pipeline_file(env: dict) -> Path:
    """The fitted pipeline the servers load: pipeline.joblib in the trained version's directory
    (tabserve/core/store.py)."""
    code = "import bentoml; print(bentoml.models.get('penguins:latest').path_of('pipeline.joblib'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    return Path(out.stdout.strip().splitlines()[-1])


def load_feature_table(args, env: dict) -> None:
    """The feature table of the predict-by-id level: numbered rows of the training data, into args.feature_db."""
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


def time_in_process(args, env: dict) -> dict:
    """bench/inprocess.py at batch 1 and --bulk-size, with the default OpenMP threads and with one; the best
    rows/s at the bulk size (results.json "inprocess")."""
    runs = []
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
        runs.append({"omp": omp if omp == "1" else env.get("OMP_NUM_THREADS", "default"), **json.loads(out.stdout)})
        print(f"  in-process OMP={omp}: {runs[-1]['batches']}", flush=True)
    best_bulk = max(r["batches"][str(args.bulk_size)]["rows_per_s"] for r in runs)
    return {"runs": runs, "best_rows_per_s_at_1000": best_bulk}
