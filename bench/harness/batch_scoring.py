"""Batch scoring after the load test, never beside it: bench/scoring.py (score.py's engines) in its own process
group, into --out (scoring.json, scoring.md); its figures for results.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness import BENCH, ROOT
from harness.processes import stop, supervise


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
    proc = supervise(subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True))
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
