"""HTTP checks of a running tabserve container (stdlib only, every call bounded by a timeout).

    python scripts/container/probe.py ready   URL          exit 0 when GET /readyz answers 200
    python scripts/container/probe.py predict URL MODEL    POST /predict and check the answer;
                                                           exit 1 with one line if wrong

predict works for any model: it reads the served model's card (GET /v1/model), builds a record from
each feature's example, and checks that the card and the answer name MODEL (the name:version the
image was built with), the answer's shape for the model's task, that an unknown field answers 400,
and GET /livez. With PROBE_API_KEY set (the container's API_KEY), it first checks that calls without
the key answer 401, then sends "Authorization: Bearer <key>".
"""

from __future__ import annotations

import json
import math
import os
import sys
import urllib.error
import urllib.request

API_KEY = os.environ.get("PROBE_API_KEY", "")


def call(url: str, body: dict | None = None, timeout: float = 30, key: str | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    key = API_KEY if key is None else key
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def ready(base: str) -> int:
    try:
        status, _ = call(f"{base}/readyz", timeout=5)
    except OSError:
        return 1
    return 0 if status == 200 else 1


def predict(base: str, expected_model: str) -> int:
    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 1

    if API_KEY:
        status, raw = call(f"{base}/v1/model", key="")
        if status != 401:
            return fail(f"GET /v1/model without the API key answered {status}, expected 401: {raw[:300]!r}")
    status, raw = call(f"{base}/v1/model")
    if status != 200:
        return fail(f"GET /v1/model answered {status}: {raw[:300]!r}")
    card = json.loads(raw)
    if card.get("tag") != expected_model:
        return fail(f"GET /v1/model: the container serves {card.get('tag')!r}, expected {expected_model!r}")
    record = {feature["name"]: feature["example"] for feature in card["features"]}
    print(
        f"model card ok: GET /v1/model -> {card['tag']} "
        f"({card['task']}, target {card['target']!r}, {len(record)} features)"
    )
    if card.get("source"):  # imported with import_model.py: its library must be in the image (a prediction proves it)
        source = card["source"]
        needs = ", ".join(source.get("requirements") or []) or "nothing beyond requirements.txt"
        system = ", ".join(source.get("system_packages") or [])
        print(
            f"imported model: {source.get('format', '?')} file, "
            f"needs {needs}{f' and Debian {system}' if system else ''}"
        )
    if API_KEY:
        status, raw = call(f"{base}/predict", record, key="")
        if status != 401:
            return fail(f"POST /predict without the API key answered {status}, expected 401: {raw[:300]!r}")
        print("api key ok: GET /v1/model and POST /predict without the key -> 401")
    status, raw = call(f"{base}/predict", record)
    if status != 200:
        return fail(f"POST /predict answered {status}: {raw[:300]!r}")
    answer = json.loads(raw)
    prediction, probabilities = answer.get("prediction"), answer.get("probabilities")
    problems = []
    if answer.get("model") != expected_model:
        problems.append(f"model {answer.get('model')!r}, expected {expected_model!r}")
    if card["task"] == "classification":
        if card.get("classes") and prediction not in card["classes"]:
            problems.append(f"prediction {prediction!r} is not one of the classes {card['classes']!r}")
        if not probabilities or abs(sum(probabilities.values()) - 1) > 1e-6:
            problems.append(f"probabilities {probabilities!r} do not sum to 1")
    elif not isinstance(prediction, (int, float)) or isinstance(prediction, bool) or not math.isfinite(prediction):
        problems.append(f"prediction {prediction!r} is not a finite number")
    if problems:
        return fail(f"POST /predict: {'; '.join(problems)}")
    print(f"prediction ok: POST /predict with the card's example record -> 200 {json.dumps(answer, sort_keys=True)}")
    status, raw = call(f"{base}/predict", dict(record, probe_unknown_field=1))
    if status != 400:
        return fail(f"POST /predict with an unknown field answered {status}, expected 400: {raw[:300]!r}")
    print("validation ok: POST /predict with an unknown field -> 400")
    status, _ = call(f"{base}/livez", timeout=10)
    if status != 200:
        return fail(f"GET /livez answered {status}")
    return 0


def main() -> int:
    args = sys.argv[1:]
    if not (args[:1] == ["ready"] and len(args) == 2 or args[:1] == ["predict"] and len(args) == 3):
        print(__doc__, file=sys.stderr)
        return 2
    base = args[1].rstrip("/")
    try:
        return ready(base) if args[0] == "ready" else predict(base, args[2])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {sys.argv[1]} {base}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
