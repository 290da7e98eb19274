"""client.py as a user runs it: against the served model, and against a URL where nothing answers.
(Its runs against a server with an API key are in test_error_contract.py, which has one running.)"""

import os
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.served


def run_client(*args: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python client.py ARGS` with API_KEY taken from `env` only, never from the test's environment."""
    environ = {k: v for k, v in os.environ.items() if k != "API_KEY"}
    return subprocess.run(
        [sys.executable, str(ROOT / "client.py"), *args],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_client_predicts_the_models_own_example(server, tmp_path):
    """One record, a batch and a CSV, all from the example record of GET /v1/model; no file left behind."""
    result = run_client("--url", server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    card = requests.get(f"{server.url}/v1/model", timeout=30).json()
    example = {f["name"]: f["example"] for f in card["features"]}
    expected = requests.post(f"{server.url}/predict", json=example, timeout=30).json()["prediction"]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("one:") and f"'prediction': '{expected}'" in lines[0]
    assert lines[1] == f"batch: {[expected, expected]} {card['tag']}"
    header, row = lines[2].split(maxsplit=1)[1], lines[3].strip()
    assert header.split(",")[: len(example)] == list(example) and "prediction" in header and "proba_Adelie" in header
    assert expected in row.split(",")
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_nothing_answering_is_one_line_and_fast(tmp_path):
    start = time.monotonic()
    result = run_client("--url", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr.startswith("error: nothing answers at http://127.0.0.1:")
        and len(result.stderr.strip().splitlines()) == 1
    ), result.stderr
    assert elapsed < 15, elapsed  # not BentoML's default 30 s wait for readiness
