"""A tiny client: predict the model's own example record, a batch and a CSV file with BentoML's HTTP client.

python client.py [--url http://localhost:3000] [--api-key KEY]    (the key defaults to $API_KEY)
"""

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

import bentoml
import httpx
from bentoml.exceptions import BentoMLException


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://localhost:3000")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY", ""),
        help="sent as 'Authorization: Bearer <key>' (default: $API_KEY)",
    )
    args = parser.parse_args()
    try:
        # A short connect timeout and no waiting for readiness: a wrong URL fails at once.
        with bentoml.SyncHTTPClient(
            args.url, token=args.api_key, timeout=httpx.Timeout(60, connect=3), server_ready_timeout=0
        ) as client:
            card = client.request("GET", "/v1/model")
            card.raise_for_status()
            example = {feature["name"]: feature["example"] for feature in card.json()["features"]}
            print("one:  ", client.predict(example))
            batch = client.predict_batch(records=[example, example])
            print("batch:", [p["prediction"] for p in batch["predictions"]], batch["model"])
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "example.csv"
                with path.open("w", newline="") as file:
                    writer = csv.DictWriter(file, fieldnames=list(example))
                    writer.writeheader()
                    writer.writerow(example)
                table = client.predict_csv(file=path)
            header, first_row = table.splitlines()[:2]
            print("csv:  ", header)
            print("      ", first_row)
    except httpx.TransportError as exc:  # refused, unreachable, timed out
        fail(f"nothing answers at {args.url} ({exc or type(exc).__name__})")
    except httpx.HTTPStatusError as exc:  # GET /v1/model refused: the API key, most often
        hint = " (give --api-key or set API_KEY)" if exc.response.status_code == 401 else ""
        fail(server_message(exc.response.text) + hint)
    except BentoMLException as exc:  # a prediction refused: its text is the server's answer
        fail(server_message(str(exc)))


def server_message(text: str) -> str:
    """The one line of the server's {"error": ..., "detail": [...]}, or the first line of any other answer."""
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return (text.strip() or "no answer").splitlines()[0]


if __name__ == "__main__":
    main()
