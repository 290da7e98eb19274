"""Import a model you already have into the BentoML model store, typed by a sample of its data.

    python import_model.py --model PATH|bentoml:NAME[:VERSION] --sample DATA.csv [--name NAME] [--target COLUMN]
                           [--task TASK] [--classes NAME,NAME,...] [--trust-pickle] [--trust TYPE[,TYPE]]
                           [--drop a,b] [--id c] [--categorical e] [--numeric f] [--date g] [--sep ';'] [--decimal ,]
                           [--encoding cp1252] [--sheet NAME]

PATH: a scikit-learn model saved with skops (.skops) or joblib/pickle (.joblib, .pkl: only with --trust-pickle,
since unpickling runs code from the file), a LightGBM booster (.txt) or pickled LGBM model, an XGBoost booster
(.json, .ubj) or pickled XGB model, an ONNX model (.onnx), an MLflow model directory (its MLmodel file), or
bentoml:NAME[:VERSION], a model saved with bentoml.sklearn/lightgbm/xgboost/onnx/mlflow/picklable_model.save_model.
The sample is typed as train.py types a training file; the task and labels come from the model.
Bad input prints one line naming the problem and exits with code 2; nothing is saved.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tabserve.core import pipeline
from tabserve.core.cli import (
    OneLineParser,
    add_csv_options,
    column_list,
    encoding_note,
    print_columns,
    save_model_version,
)
from tabserve.core.columns import Overrides


def parse_args(argv: list[str] | None):
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        required=True,
        help="the model file, an MLflow model directory, or bentoml:NAME[:VERSION] (a model in the store)",
    )
    parser.add_argument(
        "--sample",
        type=Path,
        required=True,
        help="a CSV or .xlsx of the model's input columns (and the target, with --target)",
    )
    parser.add_argument(
        "--name", help="model name in the store (for bentoml:NAME: NAME, a new version beside the original)"
    )
    parser.add_argument("--target", help="the sample's target column: metrics on the sample in the card")
    parser.add_argument("--task", choices=pipeline.TASKS, help="checked against the model (which says its task itself)")
    parser.add_argument(
        "--classes",
        type=column_list,
        default=(),
        metavar="NAME[,NAME]",
        help="names of a booster's class indices 0, 1, ... in order (a booster keeps no labels)",
    )
    parser.add_argument(
        "--trust-pickle", action="store_true", help="load a pickle/joblib file: it runs code from the file"
    )
    parser.add_argument(
        "--trust", type=column_list, default=(), metavar="TYPE[,TYPE]", help="types of a skops file to trust"
    )
    add_csv_options(parser)
    return parser.parse_args(argv)


def print_summary(result, encoding_given: bool = False) -> None:
    from tabserve.importing.importer import FORMAT_NAMES

    card, source = result.card, result.card.source
    what = (
        f"{FORMAT_NAMES[source['format']]} {source['original_file']}"
        if "bentoml_model" not in source
        else f"the store's {source['original_file']} ({FORMAT_NAMES[source['format']].split(' (')[0]})"
    )
    print(f"model     {what} ({source['library']} {source['library_version']}), sha256 {source['sha256'][:16]}...")
    print(f"task      {card.task} ({card.task_reason})")
    read = card.training_data
    if read.get("sheet") is not None:
        print(f"sample    read sheet {read['sheet']!r} of {read['file']}")
    else:
        sep = {"\t": "tab"}.get(read["separator"], read["separator"])
        print(f"sample    read with separator {sep!r} and decimal mark {read['decimal']!r}")
        print(f"encoding  {encoding_note(read['encoding'], encoding_given)}")
    print_columns(card.schema, result.columns)
    for note in result.notes:
        print(f"note: {note}")
    print(
        f"rows: {result.rows} in the sample, each answered by the model (one prediction per row, no NaN"
        f"{', probabilities summing to 1' if card.task == 'classification' else ''})"
    )
    if card.metrics:
        print(f"{'metric':<10} {'on the sample':>13}  ({result.labelled} labelled rows)")
        for metric, value in card.metrics.items():
            print(f"{metric:<10} {value:>13.4f}")
    print(f"saved model {result.model.tag}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = Overrides(args.categorical, args.numeric, args.date, args.id, args.keep, args.drop)
    from tabserve.importing.importer import import_model

    return save_model_version(
        lambda: import_model(
            args.model,
            args.sample,
            args.name,
            target=args.target,
            task=args.task,
            trust_pickle=args.trust_pickle,
            trust=args.trust,
            overrides=overrides,
            sep=args.sep,
            decimal=args.decimal,
            classes=args.classes,
            encoding=args.encoding,
            sheet=args.sheet,
        ),
        lambda result: print_summary(result, args.encoding is not None),
    )


if __name__ == "__main__":
    sys.exit(main())
