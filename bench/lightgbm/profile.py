"""Where the project's server spends its CPU under the LightGBM scenario's load: py-spy on its whole process tree.

`bench/run.py --scenario lightgbm --profile` runs, after the measured rounds, one more Locust run per level
(the largest single-record level and bulk) against the project's server with `py-spy record --subprocesses
--nonblocking --format raw` on it (the numbers of those runs are not in the tables: the sampler costs CPU on
the same cores). This module starts py-spy and reads its raw output (one line per distinct stack:
`frame;frame;...;leaf count`, each frame `function (file:line)`, the first the process) into:
- `by_process`: samples per process (the arbiter, each worker);
- `self`: the functions the samples were in (the leaf), the top 25, as a share of all samples;
- `within`: the share of samples with at least one frame of each group below anywhere in the stack.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

# Group -> substrings of a frame's file path (or function); a sample counts for every group its stack touches.
GROUPS = {
    "booster.predict (lightgbm)": ("lightgbm/basic.py",),
    "the model's input matrix (tabserve/models)": ("tabserve/models/",),
    "tabserve (all of it)": ("tabserve/",),
    "pydantic": ("pydantic/", "pydantic_core"),
    "BentoML": ("_bentoml_impl/", "_bentoml_sdk/", "bentoml/"),
    "uvicorn and h11": ("uvicorn/", "h11/"),
    "starlette": ("starlette/",),
    "OpenTelemetry": ("opentelemetry/",),
    "Prometheus client": ("prometheus_client/",),
    "asyncio": ("asyncio/",),
    "json": ("json/", "orjson"),
    "logging": ("logging/",),
}
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def record_command(py_spy: Path, pid: int, seconds: float, output: Path, rate: int = 100) -> list[str]:
    return [str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", str(rate),
            "--duration", str(max(1, round(seconds))), "--format", "raw", "--output", str(output)]


def start(py_spy: Path, pid: int, seconds: float, output: Path, log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    proc = subprocess.Popen(record_command(py_spy, pid, seconds, output), stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    handle.close()
    return proc


def _short(frame: str) -> str:
    """`function (path/to/file.py:123)` -> `function (file.py)`, the path shortened after site-packages."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('function')} ({path})"


def summarize(raw: str, top: int = 25) -> dict:
    """The raw collapsed stacks as shares: per process, per leaf function, per group anywhere in the stack."""
    total = 0
    by_process: Counter = Counter()
    leaves: Counter = Counter()
    groups: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        by_process[frames[0].strip()] += n
        leaves[_short(frames[-1])] += n
        for group, needles in GROUPS.items():
            if any(needle in frame for frame in frames[1:] for needle in needles):
                groups[group] += n

    def share(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    return {"samples": total,
            "by_process": {name: share(n) for name, n in by_process.most_common()},
            "self": [{"function": name, "share": share(n)} for name, n in leaves.most_common(top)],
            "within": {group: share(groups[group]) for group in GROUPS}}


def markdown(summary: dict, title: str, top: int = 12) -> list[str]:
    lines = [f"{title}: {summary['samples']:,} samples (py-spy, 100 Hz, every process of the server).", "",
             "| anywhere in the stack | share of samples |", "| --- | ---: |"]
    lines += [f"| {group} | {100 * share:.1f} % |" for group, share in summary["within"].items()]
    lines += ["", "| the function a sample was in (self time) | share |", "| --- | ---: |"]
    lines += [f"| `{row['function']}` | {100 * row['share']:.1f} % |" for row in summary["self"][:top]]
    return lines
