"""Train a model on a CSV and save it to the BentoML model store.

    python train.py                                   # Palmer Penguins -> model "penguins"
    python train.py --data my.csv --target churn [--task classification|regression] [--name my_model]
                    [--drop a,b] [--id c] [--keep d] [--categorical e] [--numeric f] [--date g]
                    [--keep-constant] [--sep ';'] [--decimal ,] [--encoding cp1252] [--sheet NAME]
                    [--model auto|hgb|linear|forest|lightgbm|xgboost] [--metric log_loss|roc_auc|accuracy|
                    f1_macro|rmse|mae|r2] [--cv-time DATE_COLUMN] [--time-budget 120] [--seed 42]
                    [--class-weight balanced] [--report report.html]

Column types are inferred and printed with the reason; the options override them. The model is chosen by
5-fold cross-validation among the families (--model auto) or is the one named, then refit on every labelled
row; the summary prints the leaderboard, and a training report (HTML) is kept with the version.
Bad input prints one line naming the problem and exits with code 2; nothing is saved.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tabserve.core import data, pipeline
from tabserve.core.cli import add_csv_options, fail, save_model_version
from tabserve.core.columns import Overrides
from tabserve.training import candidates, fit, selection
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
    choosing = parser.add_argument_group("choosing the model")
    choosing.add_argument(
        "--model",
        default="auto",
        help=f"the model family: {', '.join(candidates.CHOICES)} (default auto: the best by cross-validation)",
    )
    choosing.add_argument(
        "--metric",
        help="what the best is measured by: log_loss (the default), roc_auc, accuracy, f1_macro for classification; "
        "rmse (the default), mae, r2 for regression",
    )
    choosing.add_argument(
        "--cv-time", metavar="DATE_COLUMN", help="time-ordered folds on this date column (no training on the future)"
    )
    choosing.add_argument(
        "--time-budget",
        type=float,
        default=selection.DEFAULT_BUDGET_S,
        metavar="SECONDS",
        help=f"for cross-validating the candidates (default {selection.DEFAULT_BUDGET_S:g}); the refit comes after",
    )
    choosing.add_argument("--seed", type=int, default=fit.SEED, help=f"folds and models (default {fit.SEED})")
    choosing.add_argument("--class-weight", help="balanced: weigh each class by the inverse of its share")
    choosing.add_argument("--report", type=Path, metavar="PATH", help="also write the training report (HTML) here")
    args = parser.parse_args(argv)
    if args.target is None:
        if args.data.resolve() != data.PENGUINS_CSV:
            parser.error("--target is required with --data")
        args.target = "species"
    return args


def print_summary(result: training.TrainingResult, args: argparse.Namespace) -> None:
    print("\n".join(result.data_lines))
    chosen = result.selection
    direction = "higher" if chosen["greater_is_better"] else "lower"
    print(f"model selection: {chosen['cross_validation']}, by {chosen['metric']} ({direction} is better)")
    print("\n".join(leaderboard_lines(chosen["leaderboard"], chosen["metric"])))
    print(f"chosen: {chosen['model']}, refit on all {result.labelled_rows} labelled rows")
    route = f"GET /v1/models/{result.model.tag.version}/report"
    kept = f"{args.report} (and {result.report})" if args.report is not None else str(result.report)
    print(f"training report: {kept}; served at {route}")
    print(f"saved model {result.model.tag}")  # last: scripts read the tag from it


def leaderboard_lines(leaderboard: list[dict], metric: str) -> list[str]:
    """The leaderboard as the summary prints it: the metric's mean ± std over folds, the other metrics' means,
    the mean fit time per fold and the model's time for one record; skipped candidates with their reason."""
    others = [name for name in next((e["metrics"] for e in leaderboard if e["metrics"]), {}) if name != metric]
    lines = [f"{'model':<9} {metric + ' (± std)':<20} " + " ".join(f"{n:>9}" for n in others) + "    fit s  ms/record"]
    for entry in leaderboard:
        if entry["status"] == "skipped":
            lines.append(f"{entry['model']:<9} skipped: {entry['reason']}")
            continue
        score = f"{entry['score_mean']:.4f} ± {entry['score_std']:.4f}"
        values = " ".join(f"{entry['metrics'].get(n, float('nan')):>9.4f}" for n in others)
        mark = "  <- chosen" if entry["status"] == "chosen" else ""
        lines.append(
            f"{entry['model']:<9} {score:<20} {values} {entry['fit_s']:>8.2f} {entry['predict_ms']:>10.3f}{mark}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = Overrides(
        args.categorical, args.numeric, args.date, args.id, args.keep, args.drop, keep_constant=args.keep_constant
    )
    if args.report is not None and not args.report.resolve().parent.is_dir():
        return fail(f"--report {args.report}: its folder {args.report.resolve().parent} does not exist")

    def work() -> training.TrainingResult:
        result = training.train(
            args.data,
            args.target,
            task=args.task,
            name=args.name,
            overrides=overrides,
            sep=args.sep,
            decimal=args.decimal,
            encoding=args.encoding,
            sheet=args.sheet,
            choices=training.Choices(
                args.model, args.metric, args.seed, args.time_budget, args.cv_time, args.class_weight
            ),
        )
        if args.report is not None:
            shutil.copyfile(result.report, args.report)
        return result

    return save_model_version(work, lambda result: print_summary(result, args))


if __name__ == "__main__":
    sys.exit(main())
