"""Every curl command in the README and the docs (docs/*.md) works as printed (against a test server instead
of :3000), and answers what they say; every `train.py` command prints the summary they quote."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.conftest import HGB_ONLY, PENGUIN, ROOT, Server
from tests.docs.pages import docs_text
from tests.served.metrics_text import parse, samples

pytestmark = pytest.mark.served
README_KEY = "change-me"  # the README's example API key


def readme_commands(prefix: str) -> list[str]:
    """The lines of the README and the docs starting with `prefix`, each once (the README repeats a page's curl),
    outside docs/bring-your-own-model.md (test_readme_byom.py runs those)."""
    text = docs_text(exclude=("bring-your-own-model.md",))
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip().startswith(prefix)))


@pytest.fixture(scope="module")
def keyed_as_in_the_readme(penguins_model):
    """`API_KEY=change-me make serve`, for the README's command with that key."""
    with Server(env={"API_KEY": README_KEY, "MODEL_TAG": str(penguins_model.tag)}, name="readme-keyed") as running:
        yield running


def run_curl(command: str, url: str, cwd: Path) -> tuple[int, str]:
    """The command as printed, against `url`; curl also writes the HTTP status to stderr (after any
    pipe, the command's output is unchanged). (status, stdout)."""
    runnable = command.replace("http://localhost:3000", url).replace("curl ", "curl -w '%{stderr}%{http_code}\\n' ", 1)
    result = subprocess.run(["bash", "-c", runnable], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    statuses = re.findall(r"^(\d{3})$", result.stderr, re.M)
    assert len(statuses) == 1, f"{command}\n{result.stderr}"
    return int(statuses[0]), result.stdout


def route(command: str) -> str:
    return re.search(r"localhost:3000(/[^\s'?]*)", command).group(1)


def check(command: str, status: int, out: str, model_tag: str) -> None:
    """What each README command must answer; a command without an expectation here fails."""
    path, where = route(command), f"{command}\n-> {status} {out[:500]}"
    if "explain" in command and path in ("/predict", "/v1/predict"):  # docs/explanations.md
        body = json.loads(out)
        if "explain=maybe" in command:
            assert status == 400 and body["error"] == "invalid input: explain must be true or false, not 'maybe'", where
            return
        assert status == 200 and body["model"] == model_tag, where
        explanation = body["explanation"]
        assert list(explanation["contributions"]) == list(PENGUIN), where
        assert abs(explanation["base"] + sum(explanation["contributions"].values()) - explanation["value"]) <= 1e-6
        explained = (
            command.split("explain_class=")[1].split("'")[0] if "explain_class=" in command else body["prediction"]
        )
        assert explanation["output"].endswith(f"of '{explained}'"), where
        if "Biscoe" in command and "explain_class" not in command:  # the page shows this one's answer
            assert (
                body["prediction"] == "Gentoo"
                and max(explanation["contributions"], key=explanation["contributions"].get) == "flipper_length_mm"
            ), where
    elif path == "/predict_csv" and "explain=2" in command:  # | head -3, with the two reason columns
        assert status == 200, where
        header, *rows = out.splitlines()
        assert header.split(",")[-2:] == ["reason_1", "reason_2"] and len(rows) == 2, where
        assert all(
            re.fullmatch(r"\w+=[^,]+ \([+-][\d.e+-]+\)", cell) for row in rows for cell in row.split(",")[-2:]
        ), where
    elif path == "/predict" and "Atlantis" in command:
        assert status == 400, where
        assert json.loads(out)["error"] == "invalid input: island: Input should be 'Biscoe', 'Dream' or 'Torgersen'", (
            where
        )
    elif path == "/predict":
        assert status == 200, where
        body = json.loads(out)
        assert body["model"] == model_tag and body["prediction"] in ("Adelie", "Chinstrap", "Gentoo"), where
        if "Biscoe" in command:  # the README shows this one's answer
            assert body["prediction"] == "Gentoo", where
    elif path == "/predict_batch":
        assert status == 200, where
        body = json.loads(out)
        assert len(body["predictions"]) == 2 and body["model"] == model_tag, where
    elif path == "/predict_csv":  # | head -3: the header and two rows
        assert status == 200, where
        header, *rows = out.splitlines()
        assert len(rows) == 2, where
        assert header.split(",")[-4:] == ["prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"], where
        assert all(row.split(",")[-4] in ("Adelie", "Chinstrap", "Gentoo") for row in rows), where
    elif path == "/readyz":
        assert status == 200 and json.loads(out) == {"status": "ready"}, where
    elif path == "/v1/model":
        assert status == 200 and json.loads(out)["tag"] == model_tag, where
    elif path.startswith("/v1/features/"):
        assert status == 200 and json.loads(out)["name"] == path.rsplit("/", 1)[1], where
    elif path == "/v1/predict" and " -i " in command:  # | grep -i x-cache: the header only
        assert status == 200 and re.fullmatch(r"(?i)x-cache: (hit|miss)\s*", out), where
    elif path == "/v1/predict":
        assert status == 200 and json.loads(out)["prediction"] in ("Adelie", "Chinstrap", "Gentoo"), where
    elif path == "/v1/form":  # | grep -o '<p class="answer"...': the answer paragraph
        assert status == 200 and re.fullmatch(r'<p class="answer"[^>]*>(Adelie|Chinstrap|Gentoo)\s*', out), where
    elif path == "/metrics":  # | grep '^tabserve_': the service's own samples
        assert status == 200, where
        names = {sample.name for sample in parse(out)}
        assert names and all(name.startswith("tabserve_") for name in names), where
        assert "tabserve_predictions_total" in names, where
    elif path == "/v1/drift":
        body = json.loads(out)
        assert status == 200 and body["model"] == model_tag and body["status"] in ("ok", "warn", "alert", "too few"), (
            where
        )
        assert {f["name"] for f in body["features"]} >= {"island", "body_mass_g"}, where
    elif path == "/v2/health/ready":
        assert status == 200 and json.loads(out) == {"ready": True}, where
    elif path == "/v2/models/penguins":
        body = json.loads(out)
        assert status == 200 and body["name"] == "penguins" and model_tag.endswith(":" + body["versions"][0]), where
        assert [i["name"] for i in body["inputs"]] == [
            "island",
            "bill_length_mm",
            "bill_depth_mm",
            "flipper_length_mm",
            "body_mass_g",
            "sex",
            "year",
        ], where
    elif path == "/v2/models/penguins/infer":  # the README shows this one's answer
        body = json.loads(out)
        assert status == 200 and body["id"] == "1" and body["model_name"] == "penguins", where
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["predict"]["data"] == ["Gentoo", "Adelie"] and outputs["predict_proba"]["shape"] == [2, 3], where
    else:
        pytest.fail(f"the README's {command!r} has no expectation in {__file__}")


def test_readme_curl_commands(server, keyed_as_in_the_readme, penguins_model, tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data")
    # /v1/entities needs a feature table, /v1/models and /v1/admin a server holding several versions: below.
    commands = [
        c for c in readme_commands("curl ") if not any(p in c for p in ("/v1/entities/", "/v1/models", "/v1/admin/"))
    ]
    assert len(commands) >= 12
    for command in commands:
        keyed = f"Bearer {README_KEY}" in command
        target = keyed_as_in_the_readme if keyed else server
        status, out = run_curl(command, target.url, tmp_path)
        check(command, status, out, str(penguins_model.tag))
        if keyed:  # the key is what opens it
            status, out = run_curl(
                command.replace(f"-H 'Authorization: Bearer {README_KEY}' ", ""), target.url, tmp_path
            )
            assert status == 401 and "missing API key" in json.loads(out)["error"], out
    # Run where a reader runs them (the work tree), they must leave nothing behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_readme_names_the_client_script():
    """The docs' `python client.py` is run against a server by tests/served/test_client.py."""
    assert any("python client.py" in line for line in docs_text().splitlines())


def test_readme_train_commands_print_what_the_readme_shows(bentoml_home):
    """Each `train.py --data tests/data/...` command runs as printed; the summary lines the README
    quotes after it are what it prints."""
    text = docs_text()
    commands = readme_commands(".venv/bin/python train.py --data tests/data/")
    assert len(commands) >= 2
    python = str(Path(sys.executable))
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command.replace(".venv/bin/python", python, 1)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        after = text.split(command, 1)[1]
        after = after[after.index("```") + 3 :]  # past the end of the command's block
        quoted = after[after.index("```\n") + 4 :].split("```")[0]  # the next (output) block
        for line in quoted.strip().splitlines():
            assert line in result.stdout, f"{command}: the README shows {line!r}, the command printed:\n{result.stdout}"


def test_readme_tritonclient_example_runs_as_printed(server):
    """The README's tritonclient snippet, run against the test server, prints what its comments say."""
    text = docs_text()
    snippet = text.split("With Triton's client", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    host = server.url.removeprefix("http://")
    result = subprocess.run(
        [sys.executable, "-c", snippet.replace("localhost:3000", host)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first == "['Gentoo' 'Adelie']", result.stdout
    assert "[[" in rest[0], result.stdout  # a [2, 3] array of probabilities


def test_readme_entity_commands_run_as_printed(penguins_model, tmp_path):
    """The feature table loaded with the README's command, then its /v1/entities curls against a server
    reading that table."""
    (tmp_path / "data").symlink_to(ROOT / "data")
    [load] = readme_commands(".venv/bin/python -m tabserve.serving.api.feature_table load")
    result = subprocess.run(
        ["bash", "-c", load.replace(".venv/bin/python", sys.executable, 1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    text = docs_text()
    after = text.split(load, 1)[1]
    shown = after[after.index("```\n", after.index("```") + 3) + 4 :].split("```")[0].strip()
    assert shown and shown in result.stdout, result.stdout
    commands = [c for c in readme_commands("curl ") if "/v1/entities/" in c]
    assert len(commands) == 2
    tag = str(penguins_model.tag)
    with Server(
        env={"MODEL_TAG": tag, "FEATURE_DB_URL": f"sqlite:///{tmp_path / 'features.db'}"}, name="readme-entities"
    ) as server:
        for command in commands:
            status, out = run_curl(command, server.url, tmp_path)
            body = json.loads(out)
            assert status == 200 and body["entity_id"] == "1" and body["model"] == tag, out
            assert body["prediction"] == ("Chinstrap" if "island=Dream" in command else "Adelie"), out


def test_readme_payload_log_and_drift_report_run_as_printed(penguins_model, tmp_path):
    """The README's payload-log server settings, then its drift_report command as printed, on a log of
    the penguins data sent through /predict_batch: it prints the line the README shows (tag, counts and
    times are this run's) and writes the page."""
    [serve] = [c for c in readme_commands("PAYLOAD_LOG=1 ") if c.endswith("make serve")]
    settings = dict(re.findall(r"(\w+)=(\$\([^)]*\)|\S+)", serve))
    assert settings.keys() == {"PAYLOAD_LOG", "PAYLOAD_LOG_REDACT", "PAYLOAD_LOG_SALT"}
    env = {
        **settings,
        "PAYLOAD_LOG_SALT": "a-test-secret",
        "PAYLOAD_LOG_DIR": str(tmp_path / "payload_log"),
        "MODEL_TAG": str(penguins_model.tag),
    }
    frame = pd.read_csv(ROOT / "data" / "penguins.csv").drop(columns=["species"])
    records = [{k: v for k, v in row.items() if pd.notna(v)} for row in frame.to_dict("records")]
    with Server(env=env, name="readme-payload-log") as server:
        for _ in range(2):  # 688 records: more than DRIFT_MIN_RECORDS
            answer = requests.post(f"{server.url}/predict_batch", json={"records": records}, timeout=60)
            assert answer.status_code == 200, answer.text
    # Stopped: the writer thread has flushed every line.
    [report] = readme_commands(".venv/bin/python -m tabserve.serving.observe.drift_report")
    result = subprocess.run(
        ["bash", "-c", report.replace(".venv/bin/python", sys.executable, 1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    text = docs_text()
    after = text.split(report, 1)[1]
    shown = after[after.index("```\n", after.index("```") + 3) + 4 :].split("```")[0].strip()
    assert (
        shown.startswith("wrote report.html: penguins:<version>, ") and " records, " in shown and ", status " in shown
    )
    printed = result.stdout.strip()
    assert re.fullmatch(r"wrote report\.html: penguins:\S+, 688 records, \S+ to \S+, status ok", printed), printed
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_readme_versions_commands_run_as_printed(penguins_model, tmp_path):
    """The README's versions walk-through: a server started with its settings (and the session's model as
    challenger, as the text says to set one), its train.py command saving a version the server swaps in,
    then each of its curls."""
    from tabserve.core.data import PENGUINS_CSV
    from tabserve.training import trainer

    [serve] = [c for c in readme_commands("ADMIN_KEY=") if c.endswith("make serve")]
    settings = dict(re.findall(r"(\w+)=(\S+)", serve))
    assert settings.keys() == {"ADMIN_KEY", "MODEL_WATCH_S"}
    before = str(
        trainer.train(PENGUINS_CSV, "species", name="penguins", choices=HGB_ONLY).model.tag
    )  # penguins:latest when the server starts
    env = {**settings, "MODEL_TAG": "penguins:latest", "CHALLENGER_TAG": str(penguins_model.tag)}
    commands = [c for c in readme_commands("curl ") if "/v1/models" in c or "/v1/admin/" in c]
    assert [route(c) for c in commands] == [
        "/v1/models",
        "/v1/models/previous/predict",
        "/v1/admin/promote",
        "/v1/models/challenger/comparison",
    ]
    with Server(env=env, name="readme-versions") as server:
        trained = subprocess.run(
            ["bash", "-c", ".venv/bin/python train.py".replace(".venv/bin/python", sys.executable, 1)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert (
            ".venv/bin/python train.py" in readme_commands(".venv/bin/python train.py") and trained.returncode == 0
        ), trained.stderr
        after = trained.stdout.strip().splitlines()[-1].split()[-1]

        def workers_serving() -> dict[str, float]:  # every worker's champion, from /metrics
            return {s.labels["model"]: s.value for s in samples(server.url) if s.name == "tabserve_champion_workers"}

        deadline = time.monotonic() + 60
        while (
            not (workers_serving().get(after, 0) >= 1 and workers_serving().get(before, 0) == 0)
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        assert workers_serving().get(before) == 0, f"some worker still answers with {before}: {workers_serving()}"
        listed, predicted, promoted, compared = commands

        status, out = run_curl(listed, server.url, tmp_path)
        roles = {v["tag"]: v["role"] for v in json.loads(out)}
        assert status == 200 and roles == {
            after: "champion",
            before: "available",
            str(penguins_model.tag): "challenger",
        }, out

        status, out = run_curl(predicted, server.url, tmp_path)
        assert status == 200 and json.loads(out)["model"] == before and json.loads(out)["prediction"] == "Gentoo", out

        status, out = run_curl(promoted.replace("Bearer change-me-too", "Bearer wrong"), server.url, tmp_path)
        assert status == 403, out
        status, out = run_curl(promoted, server.url, tmp_path)
        assert status == 200 and json.loads(out)["champion"] == before and json.loads(out)["previous"] == after, out

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            requests.post(f"{server.url}/predict", json=PENGUIN, timeout=10)
            status, out = run_curl(compared, server.url, tmp_path)
            if json.loads(out).get("champion") == before and json.loads(out)["compared"] > 0:
                break
            time.sleep(0.5)
        body = json.loads(out)
        assert (
            status == 200
            and body["challenger"] == str(penguins_model.tag)
            and body["compared"] > 0
            and body["agreement"] is not None
        ), out
