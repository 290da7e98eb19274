"""Train a model on a CSV and save it to the BentoML model store.

    python train.py                                   # Palmer Penguins -> model "penguins"
    python train.py --data my.csv --target churn [--task classification|regression]
                    [--name my_model] [--drop id,signup_date]

Bad input prints one line naming the problem and exits with code 2; nothing is saved.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from tabserve import data, pipeline, training
from tabserve.errors import TabserveError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=data.PENGUINS_CSV, help="training CSV (default: data/penguins.csv)")
    parser.add_argument("--target", default=None, help="column to predict (default for penguins: species)")
    parser.add_argument("--task", choices=pipeline.TASKS, help="inferred from the target when not given")
    parser.add_argument("--name", help="model name in the store (default: from the file name)")
    parser.add_argument("--drop", default="", help="comma-separated columns to ignore, e.g. id,date")
    args = parser.parse_args(argv)
    if args.target is None:
        if args.data.resolve() != data.PENGUINS_CSV:
            parser.error("--target is required with --data")
        args.target = "species"
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so the staged model is cleaned up


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    drop = [name.strip() for name in args.drop.split(",") if name.strip()]
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = training.train(args.data, args.target, task=args.task, name=args.name, drop=drop)
    except TabserveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no model was saved", file=sys.stderr)
        return 130
    print(f"saved model {result.model.tag} ({result.task}, target {args.target!r})")
    print(f"rows: {result.train_rows} train, {result.test_rows} held out, {result.dropped_rows} without target dropped")
    print(f"{'metric':<10} {'held-out':>9}")
    for metric, value in result.metrics.items():
        print(f"{metric:<10} {value:>9.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
