"""HTTP checks of a running tabserve container (stdlib only, every call bounded by a timeout).

    python scripts/container/probe.py ready   URL    exit 0 when GET /readyz answers 200
    python scripts/container/probe.py predict URL    POST /predict and check the answer; exit 1 with one line if wrong

With PROBE_API_KEY set (the container's API_KEY), predict first checks that a call without the key
answers 401, then sends "Authorization: Bearer <key>".
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

RECORD = {"island": "Biscoe", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181,
          "body_mass_g": 3750, "sex": "male", "year": 2007}
EXPECTED = "Adelie"


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


def predict(base: str) -> int:
    if API_KEY:
        status, raw = call(f"{base}/predict", RECORD, key="")
        if status != 401:
            print(f"error: POST /predict without the API key answered {status}, expected 401: {raw[:300]!r}", file=sys.stderr)
            return 1
        print("api key ok: POST /predict without the key -> 401")
    status, raw = call(f"{base}/predict", RECORD)
    if status != 200:
        print(f"error: POST /predict answered {status}: {raw[:300]!r}", file=sys.stderr)
        return 1
    answer = json.loads(raw)
    probabilities = answer.get("probabilities") or {}
    problems = []
    if answer.get("prediction") != EXPECTED:
        problems.append(f"prediction {answer.get('prediction')!r}, expected {EXPECTED!r}")
    if not probabilities or abs(sum(probabilities.values()) - 1) > 1e-6:
        problems.append(f"probabilities {probabilities!r} do not sum to 1")
    if not str(answer.get("model", "")).startswith("penguins:"):
        problems.append(f"model {answer.get('model')!r} is not a penguins version")
    if problems:
        print(f"error: POST /predict: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print(f"prediction ok: POST /predict -> 200 {json.dumps(answer, sort_keys=True)}")
    bad = dict(RECORD, island="Atlantis")
    status, raw = call(f"{base}/predict", bad)
    if status != 400:
        print(f"error: POST /predict with island 'Atlantis' answered {status}, expected 400: {raw[:300]!r}", file=sys.stderr)
        return 1
    print("validation ok: POST /predict with an unknown island -> 400")
    status, _ = call(f"{base}/livez", timeout=10)
    if status != 200:
        print(f"error: GET /livez answered {status}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("ready", "predict"):
        print(__doc__, file=sys.stderr)
        return 2
    base = sys.argv[2].rstrip("/")
    try:
        return ready(base) if sys.argv[1] == "ready" else predict(base)
    except (OSError, ValueError) as exc:
        print(f"error: {sys.argv[1]} {base}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
