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
    add_file_options(parser)


def add_file_options(parser: argparse.ArgumentParser) -> None:
    """--encoding and --sheet: how a file is read (train.py, import_model.py and score.py take them)."""
    parser.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding of the file (detected when not given: UTF-8, UTF-16 with a BOM, else a legacy code page"
        " such as cp1252)",
    )
    parser.add_argument("--sheet", metavar="NAME", help="the worksheet of an .xlsx file (default: the first)")


def encoding_note(encoding: str, given: bool) -> str:
    """Which encoding a text file was read in and how it was chosen: `cp1252 (detected; --encoding to override)`,
    `UTF-16 (byte-order mark)`, `latin-1 (--encoding)`."""
    spelt = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}.get(encoding, encoding)
    if given:
        return f"{spelt} (--encoding)"
    if encoding in ("utf-8-sig", "utf-16", "utf-32"):
        return f"{spelt} (byte-order mark)"
    return f"{spelt} (detected; --encoding to override)"


def how_read(encoding: str, sheet: str | None, given: bool, name: str) -> str:
    """train.py's summary line on how the file was read: `read as cp1252 (detected; --encoding to override)`,
    `read sheet 'Sheet1' of loans.xlsx`."""
    return f"read sheet {sheet!r} of {name}" if sheet is not None else f"read as {encoding_note(encoding, given)}"


def column_lines(schema, columns: list[str]) -> list[str]:
    """The summary's table: each column of the file (in file order), its type and why, or why it is not used."""
    lines = [f"{'column':<28} {'type':<12} why"]
    for name in columns:
        if name in schema.other_columns:
            lines.append(f"{name:<28} {'(not used)':<12} {schema.other_columns[name]}")
        else:
            feature = schema[name]
            lines.append(f"{name:<28} {feature.type_name:<12} {feature.reason or ''}".rstrip())
    return lines


def print_columns(schema, columns: list[str]) -> None:
    print("\n".join(column_lines(schema, columns)))


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
