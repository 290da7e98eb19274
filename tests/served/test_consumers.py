"""Keys per team on a real server: API_KEYS_FILE written by `python -m tabserve.serving.edge.keys add`, API_KEY beside
it as the consumer `default`; one team flooding is refused 429 while another's requests all succeed;
routes per team (403), records per minute, keys refused in URLs, usage on /metrics, the consumer in
the access log, the file re-read while serving (a broken change keeps the last good file), and a broken
file at start stopping the server with one line."""

import concurrent.futures
import json
import re
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import PENGUIN, ROOT, Server
from tests.docs.pages import page
from tests.served.metrics_text import metric

pytestmark = pytest.mark.served
LEGACY = "legacy-single-key"


def add_key(path, team, *options) -> str:
    """`python -m tabserve.serving.edge.keys add`, as a person runs it: the key is the last line it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "tabserve.serving.edge.keys", "add", team, *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"API_KEYS_FILE": str(path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def teams(tmp_path_factory, penguins_model):
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys = {
        "flood": add_key(path, "flood", "--rps", "2", "--burst", "2"),
        "calm": add_key(path, "calm"),
        "narrow": add_key(path, "narrow", "--routes", "/predict"),
        "bulk": add_key(path, "bulk", "--records-per-minute", "5"),
    }
    # One entry worker: the assertions follow one worker's quotas and its re-reading of the keys file.
    with Server(
        env={"API_WORKERS": "1", "API_KEYS_FILE": str(path), "API_KEY": LEGACY, "MODEL_TAG": str(penguins_model.tag)},
        name="teams",
    ) as server:
        yield server, keys, path


def post(server, key, path="/predict", **kwargs):
    kwargs.setdefault("json", PENGUIN)
    return requests.post(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60, **kwargs)


def test_one_team_over_its_quota_does_not_slow_the_others(teams):
    server, keys, _ = teams
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        flood = [pool.submit(post, server, keys["flood"]) for _ in range(60)]
        calm = []
        for _ in range(30):  # meanwhile, one request after another from another team
            calm.append(post(server, keys["calm"]))
        flooded = [f.result() for f in flood]
    assert [r.status_code for r in calm] == [200] * 30
    assert all(r.json()["prediction"] == "Gentoo" for r in calm)
    statuses = [r.status_code for r in flooded]
    assert set(statuses) == {200, 429} and statuses.count(429) >= 40, statuses
    refused = next(r for r in flooded if r.status_code == 429)
    assert (
        set(refused.json()) == {"error", "detail"}
        and "consumer 'flood' is over its quota of 2 requests per second" in refused.json()["error"]
    )
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["X-RateLimit-Limit"] == "2"
    assert refused.headers["X-RateLimit-Remaining"] == "0" and int(refused.headers["X-RateLimit-Reset"]) >= 1
    time.sleep(1.1)
    answered = post(server, keys["flood"])
    assert (
        answered.status_code == 200
        and answered.headers["X-RateLimit-Limit"] == "2"
        and "X-RateLimit-Remaining" in answered.headers
    )
    assert "X-RateLimit-Reset" in answered.headers and "Retry-After" not in answered.headers


def test_api_key_still_works_beside_the_teams_and_wrong_keys_learn_nothing(teams):
    server, keys, _ = teams
    assert post(server, LEGACY).status_code == 200
    unknown, wrong = (
        post(server, "x" * 43),
        post(server, keys["calm"][:-1] + ("B" if keys["calm"].endswith("A") else "A")),
    )
    for response in (unknown, wrong):
        assert response.status_code == 401 and response.json() == {"error": "wrong API key", "detail": []}
        assert response.headers["www-authenticate"] == "Bearer"


def test_routes_per_team(teams):
    server, keys, _ = teams
    assert post(server, keys["narrow"]).status_code == 200
    refused = requests.get(f"{server.url}/v1/model", headers={"Authorization": f"Bearer {keys['narrow']}"}, timeout=30)
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/json"
    assert refused.json() == {
        "error": "the key of consumer 'narrow' may not call /v1/model; it may call: /predict",
        "detail": [],
    }
    assert (
        requests.get(
            f"{server.url}/v1/model", headers={"Authorization": f"Bearer {keys['calm']}"}, timeout=30
        ).status_code
        == 200
    )


def test_records_per_minute_counts_the_records(teams):
    server, keys, _ = teams
    three = {"records": [PENGUIN] * 3}
    first = post(server, keys["bulk"], "/predict_batch", json=three)
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "2"
    second = post(server, keys["bulk"], "/predict_batch", json=three)
    assert (
        second.status_code == 429
        and "quota of 5 records per minute" in second.json()["error"]
        and int(second.headers["Retry-After"]) >= 1
    )
    csv = ",".join(PENGUIN) + "\n" + (",".join(str(v) for v in PENGUIN.values()) + "\n") * 6
    too_many = post(
        server, keys["bulk"], "/predict_csv", json=None, files={"file": ("in.csv", csv.encode(), "text/csv")}
    )
    assert too_many.status_code == 413 and too_many.json()["error"].startswith(
        "6 records are more than consumer 'bulk'"
    )


def test_a_key_in_the_url_is_refused(teams):
    server, keys, _ = teams
    for query in (f"api_key={keys['calm']}", f"key={keys['calm']}", "token=anything"):
        response = requests.get(
            f"{server.url}/v1/predict?island=Dream&year=2008&{query}",
            timeout=30,
            headers={"Authorization": f"Bearer {keys['calm']}"},
        )
        assert response.status_code == 400 and "never in the URL" in response.json()["error"], query


def test_usage_per_team_on_metrics_and_in_the_access_log(teams):
    server, keys, _ = teams
    for _ in range(3):
        assert post(server, keys["calm"], "/predict_batch", json={"records": [PENGUIN] * 4}).status_code == 200
    assert metric(server.url, "tabserve_requests_total", consumer="calm", route="/predict", status="200") >= 30
    assert metric(server.url, "tabserve_requests_total", consumer="calm", route="/predict_batch", status="200") == 3
    assert metric(server.url, "tabserve_requests_total", consumer="flood", route="/predict", status="429") >= 40
    assert metric(server.url, "tabserve_requests_total", consumer="narrow", route="/v1/model", status="403") == 1
    assert metric(server.url, "tabserve_requests_total", consumer="anonymous", route="/predict", status="401") >= 2
    assert metric(server.url, "tabserve_records_total", consumer="calm") >= 30 + 12
    assert metric(server.url, "tabserve_records_total", consumer="bulk") == 3
    log = server.log_path.read_text()
    assert "path=/predict_batch" in log and "(consumer=calm)" in log and "(consumer=default)" in log


def test_the_keys_file_is_reread_without_a_restart(teams):
    server, keys, path = teams
    new = add_key(path, "late-team")
    deadline = time.monotonic() + 10
    while post(server, new).status_code != 200:
        assert time.monotonic() < deadline, "a key added while serving was not taken up"
        time.sleep(0.3)

    good = path.read_text()
    path.write_text("consumers: [this is not: valid")

    def complaints() -> list[str]:
        return [line for line in server.log_path.read_text().splitlines() if "still using the last good one" in line]

    deadline = time.monotonic() + 10
    while not complaints():  # the event: a request after the change made the server read the file, and complain
        assert post(server, new).status_code == 200  # meanwhile the last good file answers
        assert time.monotonic() < deadline, "a broken keys file was not noticed"
        time.sleep(0.3)
    assert post(server, new).status_code == 200 and post(server, keys["calm"]).status_code == 200  # the last good file
    assert len(complaints()) == 1 and "keys.yaml" in complaints()[0], complaints()  # once, not once per request

    path.write_text(good)
    subprocess.run(
        [sys.executable, "-m", "tabserve.serving.edge.keys", "remove", "late-team", "--file", str(path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 10
    while post(server, new).status_code != 401:
        assert time.monotonic() < deadline, "a removed key still works"
        time.sleep(0.3)
    assert post(server, keys["calm"]).status_code == 200


# The "Keys per team" example of docs/keys.md, read from the page (its keys file beside the server's here).
README_EXAMPLE = next(
    block for block in re.findall(r"```bash\n(.*?)```", page("keys.md"), re.S) if "keys add fraud-team" in block
)


def test_the_readme_example_works_as_printed(teams):
    assert len(README_EXAMPLE.splitlines()) == 4, README_EXAMPLE  # setup (2 lines), the call, the listing
    server, _, path = teams
    script = README_EXAMPLE.replace(".venv/bin/python", sys.executable).replace("http://localhost:3000", server.url)
    lines = script.splitlines()
    setup, call_and_list = "\n".join(lines[:2]), lines[2:]
    # The key is taken up within a second or so: the curl is retried until then, as a reader would.
    script = (
        setup
        + "\nfor i in $(seq 20); do out=$("
        + call_and_list[0]
        + "); case $out in *prediction*) break;; esac; sleep 0.5; done\n"
        + 'echo "$out"\n'
        + call_and_list[1]
        + "\n"
    )
    done = subprocess.run(["bash", "-c", script], cwd=path.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer, *listing = done.stdout.splitlines()
    assert json.loads(answer)["prediction"] in ("Adelie", "Chinstrap", "Gentoo"), done.stdout
    assert any(
        line.startswith("fraud-team  sha256:")
        and line.endswith("rps 5, burst 10; 6000 records/min; routes /predict,/predict_batch")
        for line in listing
    ), listing


def test_a_broken_keys_file_at_start_stops_the_server_with_one_line(tmp_path, penguins_model):
    path = tmp_path / "keys.yaml"
    path.write_text("consumers:\n  team: {key_sha256: not-a-hash}\n")
    code, output = Server(
        env={"API_KEYS_FILE": str(path), "MODEL_TAG": str(penguins_model.tag)}, name="teams-broken"
    ).wait_exit()
    assert code != 0
    lines = [line for line in output.splitlines() if line.startswith("error: API_KEYS_FILE")]
    assert lines == [
        f"error: API_KEYS_FILE {path}: consumer 'team': key_sha256 must be the 64 hex digits of the key's SHA-256 "
        "(python -m tabserve.serving.edge.keys add writes it)"
    ], output[-3000:]
    assert "Traceback" not in output
