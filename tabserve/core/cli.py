"""What the `python -m tabserve.<tool>` commands share: bad usage and bad input end in one line
`error: ...` on stderr and exit code 2, never argparse's usage dump or a traceback."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import Any

from tabserve.core.errors import TabserveError


def fail(message: str) -> int:
    """Print the one line; the exit code to return."""
    print(f"error: {message}", file=sys.stderr)
    return 2


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print the usage too
        raise SystemExit(fail(message))


SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}  # --sep's names


def column_list(value: str) -> tuple[str, ...]:
    """A --option COL[,COL] value as names."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so a staged model version is cleaned up


COLUMN_OPTIONS = [  # train.py's and import_model.py's column overrides (tabserve/core/columns.py Overrides)
    ("drop", "columns to ignore (passed through when scoring a file)"),
    ("id", "identifier columns: not features, passed through when scoring a file"),
    ("keep", "columns left out by inference (identifiers, constant columns) to use as features after all"),
    ("categorical", "columns to treat as categories (e.g. codes 1/2/3)"),
    ("numeric", "columns to treat as numbers (other text in them is read as missing)"),
    ("date", "columns to parse as dates"),
]


OPTION_ALIASES = {"categorical": "category", "numeric": "number"}  # --category COL reads as well as --categorical


def add_csv_options(parser: argparse.ArgumentParser) -> None:
    """The column overrides and the CSV dialect options, as train.py and import_model.py take them."""
    for option, meaning in COLUMN_OPTIONS:
        names = [f"--{option}", *([f"--{OPTION_ALIASES[option]}"] if option in OPTION_ALIASES else [])]
        parser.add_argument(*names, dest=option, type=column_list, default=(), metavar="COL[,COL]", help=meaning)
    parser.add_argument(
        "--sep",
        type=lambda sep: SEPARATOR_NAMES.get(sep, sep),
        help="field separator: , ; tab | (detected when not given)",
    )
    parser.add_argument("--decimal", choices=[".", ","], help="decimal mark (detected when not given)")


def print_columns(schema, columns: list[str]) -> None:
    """The summary's table: each column of the file (in file order), its type and why, or why it is not used."""
    print(f"{'column':<28} {'type':<12} why")
    for name in columns:
        if name in schema.other_columns:
            print(f"{name:<28} {'(not used)':<12} {schema.other_columns[name]}")
        else:
            feature = schema[name]
            print(f"{name:<28} {feature.type_name:<12} {feature.reason or ''}")


def save_model_version(work: Callable[[], Any], summary: Callable[[Any], None]) -> int:
    """train.py's and import_model.py's run: the work (which saves a version), then its summary. A TabserveError
    is its one line and exit code 2; Ctrl-C or SIGTERM leave the store as it was (the save is atomic): 130."""
    signal.signal(signal.SIGTERM, interrupt)
    try:
        result = work()
    except TabserveError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("error: interrupted; no model was saved", file=sys.stderr)
        return 130
    summary(result)
    return 0
