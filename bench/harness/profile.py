"""Where the project's server spends its CPU under load: py-spy on its whole process tree.

`--profile` runs, after the measured rounds, one more Locust run per point against the project's server with
`py-spy record --subprocesses --nonblocking --format raw` on it (the numbers of those runs are not in the tables:
the sampler costs CPU on the same cores): `bench/run.py --scenario lightgbm --profile` every level (and each
explained point), the penguins run (`bench/run.py --profile`) its explained points and the unexplained ones
beside them (`profile_points`). This module starts py-spy and reads its raw output (one line per distinct stack:
`frame;frame;...;leaf count`, each frame `function (file:line)`, the first the process) into:
- `waiting`: the share of samples that were a wait, not work: a thread parked in the event loop's `select` or
  in the thread pool's queue (`--nonblocking` sampling cannot tell idle threads apart, so they are counted here
  and left out of the rest);
- `by_process`: busy samples per process (the arbiter, each worker);
- `self`: the functions the busy samples were in (the leaf), the top 25, as a share of the busy samples;
- `self_by_module`: the same by where that function is: a file of tabserve, else the package (bentoml, h11,
  asyncio, pydantic, ...): where the CPU went;
- `within`: the share of busy samples with a frame of each part of the work below anywhere in the stack (each
  a subtree of the request's work: what it cost with everything it called).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

# Part of the work -> substrings of a frame (function or file); a sample counts for every part its stack touches.
# Only subtrees: the middleware that wraps every request (the gate, BentoML's, Starlette's) would be in all of them.
GROUPS = {
    "booster.predict (lightgbm)": ("lightgbm/basic.py",),  # pred_contrib too: see the explainer's line
    "the explainer (tabserve/explaining/, with the model calls it makes)": ("tabserve/explaining/",),
    "scikit-learn (the penguins pipeline)": ("sklearn/",),
    "the answers' shape (tabserve/serving/api/contract.py)": ("tabserve/serving/api/contract.py",),
    "records -> the booster's matrix (LightGBMRuntime.matrix)": ("LightGBMRuntime.matrix",),
    "the model runtime (tabserve/models: matrix, predict, answers)": ("tabserve/models/",),
    "drift counting (tabserve/serving/observe/drift.py)": ("tabserve/serving/observe/drift.py",),
    "pydantic validation": ("model_validate", "validate_python", "validate_json"),
    "the hand-off to the pipeline thread (ThreadPoolExecutor.submit)": ("ThreadPoolExecutor.submit",),
    "Prometheus client": ("prometheus_client/",),
    "the access log (logging)": ("logging/__init__.py",),
}
PACKAGES = {"_bentoml_impl": "bentoml", "_bentoml_sdk": "bentoml", "bentoml": "bentoml"}
# A leaf that is a parked thread, not work (see the module's docstring).
WAITS = (
    "EpollSelector.select (",
    "_worker (concurrent/futures/thread.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Thread.join (threading.py",
)
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def record_command(py_spy: Path, pid: int, seconds: float, output: Path, rate: int = 100) -> list[str]:
    return [
        str(py_spy),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--full-filenames",
        "--rate",
        str(rate),
        "--duration",
        str(max(1, round(seconds))),
        "--format",
        "raw",
        "--output",
        str(output),
    ]


def start(py_spy: Path, pid: int, seconds: float, output: Path, log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    proc = subprocess.Popen(
        record_command(py_spy, pid, seconds, output), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    handle.close()
    return proc


def _short(frame: str) -> str:
    """`function (/full/path/to/file.py:123)` -> `function (package/file.py)`: the path from the package on (after
    site-packages, the standard library's folder, or the project's tabserve/), without the line."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    if "/site-packages/" in path:
        path = path.split("/site-packages/", 1)[1]
    elif "/tabserve/" in path:
        path = "tabserve/" + path.rsplit("/tabserve/", 1)[1]
    elif re.search(r"/lib/python3\.\d+/", path):
        path = re.split(r"/lib/python3\.\d+/", path, maxsplit=1)[1]
    return f"{match.group('function')} ({path})"


def _module(short: str) -> str:
    """Where a shortened frame's function is: tabserve's file, else the package (its path's first part)."""
    match = re.search(r"\(([^()]*)\)$", short)
    path = match.group(1) if match else short
    if path.startswith("tabserve/"):
        return path
    first = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    return PACKAGES.get(first, first)


def summarize(raw: str, top: int = 25) -> dict:
    """The raw collapsed stacks as shares: per process, per leaf function, per group anywhere in the stack."""
    total = waiting = 0
    by_process: Counter = Counter()
    leaves: Counter = Counter()
    modules: Counter = Counter()
    groups: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = _short(frames[-1])
        if leaf.startswith(WAITS):
            waiting += n
            continue
        total += n
        by_process[frames[0].strip()] += n
        leaves[leaf] += n
        modules[_module(leaf)] += n
        for group, needles in GROUPS.items():
            if any(needle in frame for frame in frames[1:] for needle in needles):
                groups[group] += n

    def share(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    return {
        "samples": total,
        "waiting": round(waiting / (total + waiting), 4) if total + waiting else 0.0,
        "by_process": {name: share(n) for name, n in by_process.most_common()},
        "self": [{"function": name, "share": share(n)} for name, n in leaves.most_common(top)],
        "self_by_module": {name: share(n) for name, n in modules.most_common(top)},
        "within": {group: share(groups[group]) for group in GROUPS},
    }


def markdown(summary: dict, title: str, top: int = 12) -> list[str]:
    lines = [
        f"{title}: {summary['samples']:,} busy samples (py-spy, 100 Hz, every process of the server; another "
        f"{100 * summary['waiting']:.0f} % of the samples were threads waiting in `select` or the thread pool's "
        "queue, left out).",
        "",
        "| part of the work (with all it called) | share of busy samples |",
        "| --- | ---: |",
    ]
    lines += [f"| {group} | {100 * share:.1f} % |" for group, share in summary["within"].items() if share]
    lines += ["", "| where the CPU was (self time, by module) | share |", "| --- | ---: |"]
    lines += [f"| {name} | {100 * share:.1f} % |" for name, share in list(summary["self_by_module"].items())[:top]]
    lines += ["", "| the function a sample was in (self time) | share |", "| --- | ---: |"]
    lines += [f"| `{row['function']}` | {100 * row['share']:.1f} % |" for row in summary["self"][:top]]
    return lines


def profile_points(args, run, levels: list[str], env: dict, workdir: Path, explain_levels: list[str]) -> dict:
    """py-spy on a running server (all its processes) during one more Locust run per level, and per explained
    point where the server has one at that level (key "<level>_explained"); the summaries, and each run's
    collapsed stacks in --out as profile_<key>.txt.gz."""
    import gzip
    import shutil

    from harness import BIN, load, processes

    out = {}
    for level in levels:
        for explain in (False, True) if run.server.explains(level, explain_levels) else (False,):
            key = f"{level}_explained" if explain else level
            seconds = args.bulk_duration if level == "bulk" else args.duration
            raw, log = workdir / f"pyspy_{key}.txt", workdir / f"pyspy_{key}.log"
            spy = start(BIN / "py-spy", run.proc.pid, seconds, raw, log)
            processes.supervise(spy)
            try:
                stats = load.measure(run, level, args, workdir, env, 0, explain)
                spy.wait(timeout=seconds + 60)
            finally:
                processes.stop(spy)
            if not raw.exists():
                out[key] = {"error": log.read_text()[-1000:]}
                continue
            out[key] = {**summarize(raw.read_text()), "ok_rps_while_sampled": stats["ok_rps"]}
            with raw.open("rb") as source, gzip.open(args.out / f"profile_{key}.txt.gz", "wb") as target:
                shutil.copyfileobj(source, target)  # the collapsed stacks (gunzip, then flamegraph.pl or speedscope)
    return out


def point_name(key: str, bulk_users: int) -> str:
    """A profiled point's key ("1", "32", "bulk", "1_explained", ...) as the tables name it."""
    level, _, explained = key.partition("_")
    name = f"bulk x{bulk_users}" if level == "bulk" else f"{level} user{'' if level == '1' else 's'}"
    return name + (", explained" if explained else "")


def section(results: dict) -> list[str]:
    """results.md's profiles (results["profile"], from profile_points)."""
    lines = []
    for key, summary in (results.get("profile") or {}).items():
        name = point_name(key, results["config"]["bulk_users"])
        if "error" in summary:
            lines += ["", f"Profile at {name}: py-spy failed: {summary['error']}"]
            continue
        lines += [
            "",
            *markdown(
                summary,
                f"Profile of the project's server at {name} (one more run of "
                f"{summary['ok_rps_while_sampled']:,.0f} ok req/s while sampled; "
                f"[profile_{key}.txt.gz](profile_{key}.txt.gz), py-spy's collapsed stacks)",
            ),
        ]
    return lines
