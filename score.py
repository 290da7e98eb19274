"""Score a big file with a model version from the store, on Spark or locally: the same checks, feature
preparation and pipeline call as the service's /predict_csv.

    python score.py --data big.parquet --out scored.parquet                 # Spark, local[2], penguins:latest
    python score.py --data big.csv --out scored.csv --engine local          # pandas chunks in this process
    python score.py --data big.csv --out scored.parquet --model sales:latest --master yarn
    python score.py --data sales.xlsx --sheet 2024 --out scored.csv --engine local  # an Excel worksheet
    python score.py --data big.csv --out scored.csv --explain 3              # and each row's 3 main reasons

The output is the input columns plus `prediction` and `proba_<class>` (Parquet, the model tag in its
metadata under tabserve.model; CSV when --out ends in .csv). --explain K adds, after them, `reason_1` …
`reason_K`: each row's K largest contributions to its predicted class (or value), largest first, as text such as
`flipper_length_mm=230 (+2.31)`, as /predict_csv?explain=K writes them (numbers in the input's decimal mark);
K is 1 to the model's feature count, for a version with explanations. Rows that fail the schema go to
<out stem>.rejects.csv with an `error` column. A CSV is read in the encodings train.py reads (UTF-8, UTF-16
with a BOM, else a detected legacy code page such as cp1252; --encoding overrides), an .xlsx workbook's first
sheet (or --sheet). Bad input prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# One OpenMP thread per process, as the service does (set before scikit-learn loads).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tabserve.core import config  # noqa: E402
from tabserve.core.cli import add_file_options  # noqa: E402
from tabserve.core.errors import TabserveError  # noqa: E402
from tabserve.scoring import batch, engines  # noqa: E402


def _conf(value: str) -> tuple[str, str]:
    key, sep, setting = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {value!r}")
    return key.strip(), setting.strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the file to score: .csv, .xlsx or .parquet")
    parser.add_argument("--out", type=Path, required=True, help="scored rows: .parquet or .csv (rejects beside it)")
    parser.add_argument(
        "--model", default=config.MODEL_TAG, help=f"model tag in the store (default: {config.MODEL_TAG})"
    )
    parser.add_argument("--engine", choices=engines.ENGINES, default="spark", help="spark (default) or local")
    parser.add_argument(
        "--master", default="local[2]", help="Spark master: local[N], yarn, k8s://... (default: local[2])"
    )
    parser.add_argument(
        "--conf", type=_conf, action="append", default=[], metavar="KEY=VALUE", help="a Spark setting (repeatable)"
    )
    parser.add_argument(
        "--explain",
        metavar="K",
        help="add columns reason_1 … reason_K: each row's K largest contributions to its prediction, as "
        "`feature=value (+contribution)` (K: 1 to the model's feature count; models with explanations only)",
    )
    add_file_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = batch.score(
            args.data,
            args.out,
            args.model,
            args.engine,
            args.master,
            dict(args.conf),
            encoding=args.encoding,
            sheet=args.sheet,
            explain=args.explain,
        )
    except TabserveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(summary.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
