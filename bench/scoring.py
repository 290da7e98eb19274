"""Batch scoring throughput: score.py's local and Spark engines against the in-process limit.

    python bench/scoring.py --out /tmp/scoring-bench            # 200k rows, Spark local[2]
    python bench/scoring.py --rows 20000 --out /tmp/x --engines local

It trains the default model into a fresh temporary BENTOML_HOME, makes --rows rows from
data/penguins.csv (sampled, numbers perturbed, a few missing), writes them as CSV and as typed Parquet,
then measures, each in a fresh process with OMP_NUM_THREADS=1 as score.py and the service run:
- the in-process limit: the model version's runtime (tabserve/models/) on the whole frame of valid records
  (no reading, checking or writing), and frames.score_frame on the whole text frame (the row checks too);
- `score.py --engine local` and `--engine spark --master M` on each file: rows/s from score.py's own
  clock (reading to writing), and the wall time of the command (Python, Spark and JVM start included).
Prints a markdown table; writes scoring.json and scoring.md to --out. Not part of bench/run.py: never
run two benchmarks at once on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

INPROCESS = r"""
import json, sys, time
import pandas as pd
from tabserve.scoring import batch
from tabserve.scoring.frames import score_frame, as_text
from tabserve.core import rows
model = batch.load_model("penguins:latest")
text = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
records = [rows.validate(model.record_type, model.card.schema, row)
           for row in as_text(text, model.card.schema.names).to_dict("records")]
out = {}
for name, work in [("pipeline", lambda: model.runtime.predict_records(records)),
                   ("checks+pipeline", lambda: score_frame(model, text))]:
    work()  # warm
    best = None
    for _ in range(3):
        start = time.perf_counter()
        work()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    out[name] = {"seconds": round(best, 3), "rows_per_s": round(len(text) / best, 1)}
print(json.dumps(out))
"""


def make_data(rows: int, workdir: Path) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    base = pd.read_csv(ROOT / "data" / "penguins.csv", dtype=str, keep_default_na=False)
    frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    for name in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        values = pd.to_numeric(frame[name], errors="coerce")
        values = (values + rng.normal(0, values.std() * 0.05, rows)).round(1)
        frame[name] = ["NA" if np.isnan(v) else repr(float(v)) for v in values]
    frame.insert(0, "id", [str(i) for i in range(rows)])
    csv_path, parquet_path = workdir / "rows.csv", workdir / "rows.parquet"
    frame.to_csv(csv_path, index=False)
    frame.head(1000).to_csv(workdir / "start.csv", index=False)  # Spark's fixed cost: a run that is nearly all start
    typed = pd.read_csv(csv_path)  # numbers as numbers, NA as NaN: what a Parquet export holds
    typed.to_parquet(parquet_path, index=False, row_group_size=max(1, rows // 16))
    return csv_path, parquet_path


def run_score(data: Path, engine: str, master: str, workdir: Path, env: dict) -> dict:
    out = workdir / f"scored-{engine}-{data.suffix[1:]}.parquet"
    command = [sys.executable, "score.py", "--data", str(data), "--out", str(out), "--engine", engine]
    if engine == "spark":
        command += ["--master", master]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"score.py failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    seconds = float(re.search(r"^time\s+([\d.]+) s", done.stdout, re.M).group(1))
    scored = int(re.search(r"^scored\s+([\d,]+)", done.stdout, re.M).group(1).replace(",", ""))
    return {
        "engine": engine if engine == "local" else f"spark {master}",
        "input": data.suffix[1:],
        "rows": scored,
        "seconds": seconds,
        "rows_per_s": round(scored / seconds, 1),
        "wall_s": round(wall, 1),
        "wall_rows_per_s": round(scored / wall, 1),
    }


def markdown(results: dict) -> str:
    lines = [
        f"Batch scoring, {results['rows']:,} rows, {results['machine']['cpus']} CPUs, "
        f"load {results['load_before']} before, "
        f"{results['load_after']} after ({results['started']}).",
        "",
        "| what | input | rows/s (score.py's clock) | rows/s once Spark has started | wall s (whole command) "
        "| rows/s (wall) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, run in results["inprocess"].items():
        lines.append(
            f"| in-process limit: {name} | frame in memory | {run['rows_per_s']:,.0f} | | {run['seconds']:.1f} | |"
        )
    for run in results["runs"]:
        after = f"{run['rows_per_s_after_start']:,.0f}" if "rows_per_s_after_start" in run else ""
        lines.append(
            f"| score.py --engine {run['engine']} | {run['input']} | {run['rows_per_s']:,.0f} | {after} | "
            f"{run['wall_s']:.1f} | "
            f"{run['wall_rows_per_s']:,.0f} |"
        )
    if results.get("spark_start"):
        lines += [
            "",
            f"Spark's start (a run of 1,000 rows, by score.py's clock): {results['spark_start']['seconds']:.1f} s; "
            "'once started' subtracts it.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, required=True, help="directory for scoring.json and scoring.md")
    parser.add_argument("--engines", default="local,spark", help="local, spark or both (default)")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="tabserve-bench-home-"))
    workdir = Path(tempfile.mkdtemp(prefix="tabserve-bench-scoring-"))
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("MODEL_TAG", None)
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        print(f"training into {home} (load avg {load_before})", flush=True)
        subprocess.run(
            [sys.executable, "train.py"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, timeout=600
        )
        csv_path, parquet_path = make_data(args.rows, workdir)
        print(
            f"{args.rows:,} rows: {csv_path} ({csv_path.stat().st_size / 1e6:.1f} MB), {parquet_path} "
            f"({parquet_path.stat().st_size / 1e6:.1f} MB)",
            flush=True,
        )
        done = subprocess.run(
            [sys.executable, "-c", INPROCESS, str(csv_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=True,
        )
        inprocess = json.loads(done.stdout)
        print(f"  in-process: {inprocess}", flush=True)
        runs, start = [], None
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            if engine == "spark":
                start = run_score(workdir / "start.csv", engine, args.master, workdir, env)
                print(f"  Spark's start (1,000 rows): {start}", flush=True)
            for data in (csv_path, parquet_path):
                run = run_score(data, engine, args.master, workdir, env)
                if engine == "spark" and run["seconds"] > start["seconds"]:  # rows/s once started
                    run["rows_per_s_after_start"] = round(
                        (run["rows"] - start["rows"]) / (run["seconds"] - start["seconds"]), 1
                    )
                runs.append(run)
                print(f"  {runs[-1]}", flush=True)
        results = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "rows": args.rows,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "inprocess": inprocess,
            "spark_start": start,
            "runs": runs,
        }
        (args.out / "scoring.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "scoring.md").write_text(markdown(results))
        print(markdown(results))
        print(f"wrote {args.out}/scoring.{{json,md}}")
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
