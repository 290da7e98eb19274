"""Schemathesis against the served /docs.json: every operation, hundreds of generated requests;
no 5xx, every response matches its documented schema, status codes and content types (the form's HTML 400 included)."""

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import requests

from tests.conftest import ARTIFACTS, Server

pytestmark = pytest.mark.served
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
SEED = os.environ.get("FUZZ_SEED", "20261125")  # fixed for a repeatable CI; set another to explore
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def documented_operations(url: str) -> set[str]:
    """ "METHOD /path" of every operation /docs.json documents, as Schemathesis names them."""
    spec = requests.get(f"{url}/docs.json", timeout=30).json()
    return {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item if method in METHODS}


def schemathesis(url: str, name: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    """A run, its output kept in artifacts/; (the result, its JUnit report)."""
    st = str(Path(sys.executable).parent / "st")
    reports = ARTIFACTS / f"schemathesis-{name}"
    shutil.rmtree(reports, ignore_errors=True)  # this run's report only
    command = [
        st,
        "run",
        f"{url}/docs.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "30",
        "--seed",
        SEED,
        "--continue-on-failure",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(reports),
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"schemathesis-{name}.log").write_text(result.stdout + result.stderr)
    [report] = reports.glob("*.xml")
    return result, report


def assert_clean(url: str, result: subprocess.CompletedProcess, report: Path) -> None:
    """No failure; hundreds of requests; every operation /docs.json documents was tested, none skipped."""
    assert result.returncode == 0, result.stdout[-6000:]
    generated = int(re.search(r"(\d+) generated", result.stdout).group(1))
    assert generated >= 200, result.stdout[-2000:]
    operations = documented_operations(url)
    assert len(operations) >= 10, operations  # the prediction routes, /v1, the probes, /metrics
    cases = ElementTree.parse(report).getroot().iter("testcase")
    tested = {case.get("name"): case for case in cases if case.get("name") != "Stateful tests"}
    assert set(tested) == operations, (
        f"documented, not tested: {operations - set(tested)}; tested, not documented: {set(tested) - operations}"
    )
    not_run = {
        name for name, case in tested.items() if case.find("skipped") is not None or case.find("error") is not None
    }
    assert not not_run, not_run
    summary = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", result.stdout)
    assert summary and {int(n) for n in summary.groups()} == {len(operations)}, result.stdout[-2000:]


def test_fuzz_the_open_server(server):
    assert_clean(server.url, *schemathesis(server.url, "open"))


def test_fuzz_behind_an_api_key(penguins_model, feature_db):
    with Server(
        env={
            "API_KEY": "fuzz-key",
            "ADMIN_KEY": "fuzz-admin",
            "MODEL_TAG": str(penguins_model.tag),
            "FEATURE_DB_URL": feature_db,
        },
        name="fuzz-keyed",
    ) as served:
        assert_clean(served.url, *schemathesis(served.url, "keyed", "--header", "Authorization: Bearer fuzz-key"))
