"""Train a model on a CSV and save it to the BentoML model store.

    python train.py                                   # Palmer Penguins -> model "penguins"
    python train.py --data my.csv --target churn [--task classification|regression] [--name my_model]
                    [--drop a,b] [--id c] [--keep d] [--categorical e] [--numeric f] [--date g]
                    [--keep-constant] [--sep ';'] [--decimal ,] [--encoding cp1252] [--sheet NAME]

Column types are inferred and printed with the reason; the options override them.
Bad input prints one line naming the problem and exits with code 2; nothing is saved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabserve.core import data, pipeline
from tabserve.core.cli import add_csv_options, how_read, print_columns, save_model_version
from tabserve.core.columns import Overrides
from tabserve.core.schema import label_text
from tabserve.training import trainer as training


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=data.PENGUINS_CSV,
        help="training CSV or .xlsx workbook (default: data/penguins.csv)",
    )
    parser.add_argument("--target", default=None, help="column to predict (default for penguins: species)")
    parser.add_argument("--task", choices=pipeline.TASKS, help="inferred from the target when not given")
    parser.add_argument("--name", help="model name in the store (default: from the file name)")
    add_csv_options(parser)
    parser.add_argument(
        "--keep-constant", action="store_true", help="keep columns with one value in every row as features"
    )
    args = parser.parse_args(argv)
    if args.target is None:
        if args.data.resolve() != data.PENGUINS_CSV:
            parser.error("--target is required with --data")
        args.target = "species"
    return args


def print_summary(result: training.TrainingResult, target: str, args: argparse.Namespace) -> None:
    print(how_read(result.encoding, result.sheet, args.encoding is not None, args.data.name))
    if result.sheet is None:  # a workbook's cells have no separator, and its numbers no decimal mark
        sep = {"\t": "tab"}.get(result.sep, result.sep)
        print(f"read with separator {sep!r} and decimal mark {result.decimal!r}")
    print(f"target {target!r}: {result.task} ({result.task_reason})")
    print_columns(result.schema, result.columns)
    print(
        f"rows: {result.train_rows} train, {result.test_rows} held out, {result.unlabelled_rows} without a target"
        f" (not trained on; they can be scored)"
    )
    if result.rare_classes:
        rare = ", ".join(f"{label_text(c)} ({n} row{'s' if n > 1 else ''})" for c, n in result.rare_classes.items())
        print(f"rare classes, all trained on but too few rows to hold any out (their metrics are not measured): {rare}")
    print(f"{'metric':<10} {'held-out':>9}")
    for metric, value in result.metrics.items():
        print(f"{metric:<10} {value:>9.4f}")
    print(f"saved model {result.model.tag}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = Overrides(
        args.categorical, args.numeric, args.date, args.id, args.keep, args.drop, keep_constant=args.keep_constant
    )
    return save_model_version(
        lambda: training.train(
            args.data,
            args.target,
            task=args.task,
            name=args.name,
            overrides=overrides,
            sep=args.sep,
            decimal=args.decimal,
            encoding=args.encoding,
            sheet=args.sheet,
        ),
        lambda result: print_summary(result, args.target, args),
    )


if __name__ == "__main__":
    sys.exit(main())
