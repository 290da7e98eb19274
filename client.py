"""A tiny client: predict one penguin, a batch, and a CSV file with BentoML's HTTP client.

    python client.py [--url http://localhost:3000]
"""

import argparse
from pathlib import Path

import bentoml

PENGUIN = {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0,
           "flipper_length_mm": 230, "body_mass_g": 5800, "sex": "male", "year": 2009}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://localhost:3000")
    args = parser.parse_args()
    with bentoml.SyncHTTPClient(args.url) as client:
        print("one:  ", client.predict(PENGUIN))
        batch = client.predict_batch({"records": [PENGUIN, {"island": "Dream", "year": 2008}]})
        print("batch:", [p["prediction"] for p in batch["predictions"]], batch["model"])
        table = client.predict_csv(file=Path(__file__).parent / "data" / "penguins.csv")
        print("csv:  ", table.splitlines()[0])
        print("      ", table.splitlines()[1])


if __name__ == "__main__":
    main()
