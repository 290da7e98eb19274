"""The LightGBM scenario's data set and model, made the same on every run (bench/README.md, "LightGBM").

    python bench/lightgbm/generate.py make --out DIR      # data set, booster, files for the servers and Locust
    python bench/lightgbm/generate.py time --dir DIR      # booster.predict alone: 1 row and 1,000 rows

The data set: scikit-learn's `make_classification`, 20,000 rows of 50 features (20 informative, 10 of them
combinations of those, 3 % of the labels flipped), binary target; 6 of the 50 columns become pandas categorical
columns with text categories (`plan`, `region`, `channel`, `device`, `segment`, `month`: each the quantile bin of
a generated column, the bins named in a shuffled order, so a category's position says nothing about its value).
The model: `lightgbm.train` on the first 16,000 rows, 300 trees of 31 leaves (binary objective, one thread,
`deterministic=True`), the categorical columns as LightGBM categories (from the pandas dtype), saved with
`booster.save_model` as a text file. The same seed gives the same rows and the same model file byte for byte.

Files written to DIR:
- `model.txt`: the booster (what the project imports, what MLServer and the baseline load);
- `sample.csv`: the 16,000 training rows with their `target` (the import's --sample; numbers as Python writes
  floats, categories as their text);
- `records.json`: the 4,000 held-out rows as the API takes them (objects keyed by column name, numbers rounded
  to 6 places, categories as text) with the booster's probability of class 1 for each (`expected`);
- `schema.json`: the feature order, the categories of each categorical column in the booster's order (its
  `pandas_categorical`) and the target's name: what Locust needs to send MLServer the same records as
  numbers (bench/lightgbm/locustfile.py), read without importing lightgbm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 20_000
TRAIN_ROWS = 16_000
FEATURES = 50
TREES = 300
SEED = 7
TARGET = "target"
# Which generated columns become categories, and their categories (the booster keeps this order).
CATEGORICAL = {
    3: ("plan", ["basic", "plus", "pro"]),
    11: ("region", ["north", "south", "east", "west", "central"]),
    17: ("channel", ["web", "app", "store", "phone", "partner", "email", "social", "other"]),
    24: ("month", ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    38: ("device", ["android", "ios", "windows", "mac"]),
    45: ("segment", ["student", "family", "single", "senior", "smb", "enterprise"]),
}
PARAMS = {
    "objective": "binary",
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 20,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "seed": SEED,
    "verbose": -1,
}


def make_frame(rows: int = ROWS, seed: int = SEED) -> tuple[pd.DataFrame, pd.Series]:
    """The features (44 float columns x00..x49 and the 6 categorical ones, in the generated order) and the target."""
    from sklearn.datasets import make_classification

    values, target = make_classification(
        n_samples=rows,
        n_features=FEATURES,
        n_informative=20,
        n_redundant=10,
        flip_y=0.03,
        class_sep=0.8,
        random_state=seed,
    )
    rng = np.random.default_rng(seed)
    columns = {}
    for j in range(FEATURES):
        if j in CATEGORICAL:
            name, categories = CATEGORICAL[j]
            bins = pd.qcut(values[:, j], len(categories), labels=False)
            named = np.asarray(categories, dtype=object)[rng.permutation(len(categories))]
            columns[name] = pd.Categorical(named[bins], categories=categories)
        else:
            columns[f"x{j:02d}"] = values[:, j].round(6)
    return pd.DataFrame(columns), pd.Series(target, name=TARGET)


def train(features: pd.DataFrame, target: pd.Series, trees: int = TREES, seed: int = SEED):
    import lightgbm as lgb

    data = lgb.Dataset(features, label=target, categorical_feature="auto", free_raw_data=False)
    return lgb.train({**PARAMS, "seed": seed}, data, num_boost_round=trees)


def schema_of(booster) -> dict:
    """What a client needs to send a record as the booster's numbers: the feature order, and per categorical
    column its categories in code order (the booster's own pandas_categorical)."""
    names = booster.feature_name()
    indices = [int(i) for i in booster.params.get("categorical_feature", [])]
    return {
        "features": names,
        "categorical": {names[i]: list(cats) for i, cats in zip(indices, booster.pandas_categorical, strict=False)},
        "target": TARGET,
    }


def records_of(frame: pd.DataFrame) -> list[dict]:
    """Rows as the API takes them: numbers as floats, categories as their text."""
    out = []
    for row in frame.itertuples(index=False):
        out.append(
            {
                name: (value if isinstance(value, str) else round(float(value), 6))
                for name, value in zip(frame.columns, row, strict=False)
            }
        )
    return out


def make(out: Path, rows: int = ROWS, train_rows: int = TRAIN_ROWS, trees: int = TREES, seed: int = SEED) -> dict:
    import lightgbm as lgb
    from sklearn.metrics import accuracy_score, roc_auc_score

    out.mkdir(parents=True, exist_ok=True)
    features, target = make_frame(rows, seed)
    clock = time.perf_counter()
    booster = train(features.iloc[:train_rows], target.iloc[:train_rows], trees, seed)
    train_s = time.perf_counter() - clock
    booster.save_model(str(out / "model.txt"))
    held = features.iloc[train_rows:].reset_index(drop=True)
    expected = booster.predict(held)
    sample = features.iloc[:train_rows].copy()
    sample[TARGET] = target.iloc[:train_rows].to_numpy()
    sample.to_csv(out / "sample.csv", index=False)
    records = records_of(held)
    (out / "records.json").write_text(
        json.dumps(
            {
                "records": records,
                "expected": [round(float(p), 9) for p in expected],
                "labels": target.iloc[train_rows:].tolist(),
            }
        )
    )
    # As read back from the file (an in-memory booster's params lack the categorical columns the file records).
    saved = lgb.Booster(model_file=str(out / "model.txt"))
    (out / "schema.json").write_text(json.dumps(schema_of(saved)) + "\n")
    return {
        "rows": rows,
        "train_rows": train_rows,
        "held_out_rows": len(held),
        "features": features.shape[1],
        "categorical": {name: len(cats) for name, cats in CATEGORICAL.values()},
        "trees": booster.num_trees(),
        "train_s": round(train_s, 2),
        "held_out_auc": round(float(roc_auc_score(target.iloc[train_rows:], expected)), 4),
        "held_out_accuracy": round(float(accuracy_score(target.iloc[train_rows:], expected > 0.5)), 4),
        "model_bytes": (out / "model.txt").stat().st_size,
        "sample_bytes": (out / "sample.csv").stat().st_size,
    }


def matrix(records: list[dict], schema: dict) -> np.ndarray:
    """Records as the booster's input: one float column per feature, a category as its code."""
    codes = {name: {c: float(i) for i, c in enumerate(cats)} for name, cats in schema["categorical"].items()}
    return np.array(
        [[codes[n][r[n]] if n in codes else r[n] for n in schema["features"]] for r in records], dtype=np.float64
    )


def time_predict(directory: Path, seconds: float, sizes: list[int]) -> dict:
    """booster.predict alone on the held-out records already as a matrix (no HTTP, no validation): ms per call;
    and with pred_contrib=True (the explanations the project serves for this booster: ?explain=true)."""
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(directory / "model.txt"))
    schema = json.loads((directory / "schema.json").read_text())
    records = json.loads((directory / "records.json").read_text())["records"]

    def ms_per_call(call) -> float:
        call()
        calls, clock = 0, time.perf_counter()
        while time.perf_counter() - clock < seconds or not calls:
            call()
            calls += 1
        return 1000 * (time.perf_counter() - clock) / calls

    out = {}
    for size in sizes:
        x = matrix(records[:size], schema)
        ms = ms_per_call(lambda x=x: booster.predict(x))
        contrib = ms_per_call(lambda x=x: booster.predict(x, pred_contrib=True))
        out[str(size)] = {
            "ms_per_call": round(ms, 4),
            "rows_per_s": round(1000 * size / ms, 1),
            "pred_contrib_ms_per_call": round(contrib, 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("make", help="the data set, the booster and the files for the servers and Locust")
    made.add_argument("--out", type=Path, required=True)
    made.add_argument("--rows", type=int, default=ROWS)
    made.add_argument("--train-rows", type=int, default=TRAIN_ROWS)
    made.add_argument("--trees", type=int, default=TREES)
    made.add_argument("--seed", type=int, default=SEED)
    timed = sub.add_parser("time", help="booster.predict in-process (and with pred_contrib), as JSON")
    timed.add_argument("--dir", type=Path, required=True)
    timed.add_argument("--seconds", type=float, default=2.0)
    timed.add_argument("--sizes", default="1,1000")
    args = parser.parse_args(argv)
    if args.command == "make":
        if not 0 < args.train_rows < args.rows:
            parser.error("--train-rows must be between 0 and --rows")
        summary = make(args.out, args.rows, args.train_rows, args.trees, args.seed)
    else:
        summary = time_predict(args.dir, args.seconds, [int(s) for s in args.sizes.split(",")])
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
