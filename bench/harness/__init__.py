"""The benchmark's machinery, one module per job. bench/run.py parses the command line and runs these in
order; bench/lightgbm/scenario.py reuses them for the LightGBM scenario.

- options: the command line: every option, its defaults per scenario, its checks
- processes: the processes a run starts, each in its own process group, all killed on exit, failure or Ctrl-C
- net: free ports and the harness's own HTTP requests (readiness, warm-up, /metrics)
- sampling: CPU seconds and peak RSS of a server's whole process tree
- servers: the catalogue: which servers and peers can take part, how each starts, where it runs in a round
- peer_installs: the peers' virtualenvs (bench/peers/), installed in the background while the model trains
- prepare: before the servers: work directories, training, the feature table, the in-process timing
- lifecycle: a server's life in a run: start, cold start, warm-up, idle cost; at the end its stop and result
- load: Locust runs against one server at one level of one round (explained or not), and their stats
- scrape: what a server's /metrics says (cache hits, records per batched call, lookup vs model time)
- combine: one row per server and level from its rounds
- grade: the targets, the settings' cost and the explained points' cost
- profile: py-spy on a server's process tree during one more Locust run, summed by function, module and part
- report: results.json, results.md and results.png
- batch_scoring: bench/scoring.py, after the load test

bench/ is on sys.path (bench/run.py puts it there), so these import bench/peers/, bench/records.py and
bench/entities.py as `peers`, `records` and `entities`.
"""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent  # bench/
ROOT = BENCH.parent  # the project
BIN = Path(sys.executable).parent  # the interpreter's scripts: bentoml, locust, py-spy
