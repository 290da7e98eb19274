"""CI smoke run of the benchmark (bench/run.py --smoke): it runs end to end against all three servers,
writes its files, sees no errors, and the batched service really batches under concurrency.
No timing thresholds: the cores are shared, timings are noise here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# find_spec, not import: importing locust monkey-patches the test process with gevent.
_missing = [name for name in ("locust", "fastapi") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.served,  # bench/run.py starts the servers it measures
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(bool(_missing), reason=f"the benchmark needs the dev extras: {_missing}"),
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if k not in ("BENTOML_HOME", "MODEL_TAG")}
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_writes_json_markdown_and_plot(smoke):
    for name in ("results.json", "results.md", "results.png"):
        assert (smoke / name).stat().st_size > 0, name
    assert (smoke / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| server | users | ok req/s" in (smoke / "results.md").read_text()


def test_every_server_answered_without_errors(smoke):
    results = json.loads((smoke / "results.json").read_text())
    assert [s["name"] for s in results["servers"]] == ["shipped", "nobatch", "fastapi"]
    for server in results["servers"]:
        assert server["cold_start_s"] > 0 and server["peak_rss_mb"] > 0
        for users, level in server["levels"].items():
            assert level["requests"] > 0, (server["name"], users)
            assert level["errors"] == 0, (server["name"], users, level)
        assert server["bulk"]["requests"] > 0 and server["bulk"]["errors"] == 0, server["name"]
    assert results["inprocess"]["best_rows_per_s_at_1000"] > 0


def test_batches_under_concurrency(smoke):
    results = json.loads((smoke / "results.json").read_text())
    shipped = next(s for s in results["servers"] if s["name"] == "shipped")
    concurrent = max(shipped["levels"], key=int)
    assert int(concurrent) > 1
    assert shipped["levels"][concurrent]["mean_batch_size"] > 1


def test_the_prediction_cache_does_not_answer_for_the_model(smoke):
    """Bodies are new for every request, so the benchmark measures the model, not the cache."""
    results = json.loads((smoke / "results.json").read_text())
    for server in results["servers"]:
        for users, level in server["levels"].items():
            if server["name"] == "fastapi":
                assert level["cache_hit_rate"] is None
            else:
                assert level["cache_hit_rate"] is not None and level["cache_hit_rate"] < 0.05, (server["name"], users)
