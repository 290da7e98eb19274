"""Fill the feature table that GET /v1/entities/{id}/predict reads (FEATURE_DB_URL, FEATURE_TABLE).

    python -m tabserve.serving.api.feature_table load data.csv --id-column customer_id
    python -m tabserve.serving.api.feature_table load data/penguins.csv --id-column penguin_id --number-rows --replace
    python -m tabserve.serving.api.feature_table load data.csv --id-column ID --table T --db postgresql+psycopg://user@host/db

The CSV is read as training reads it (tabserve/core/data.py: separator and decimal mark sniffed, missing
markers such as NA or ? as NULL) and each column typed as training would type it: booleans, whole
numbers, numbers, dates, date-times, text. The id column becomes the primary key: every row needs one,
and no two rows the same (as whole numbers when every id is one, else as text). `--number-rows` adds
the id column, numbering the rows 1, 2, ... (for a CSV that has none). The table is made in one
transaction; `--replace` drops an existing one in the same transaction (lookups wait for it to end).

One summary line on success; one line (`error: ...`) and exit code 2 for anything that stops the load.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from tabserve.core.cli import OneLineParser, fail
from tabserve.core.errors import DataError, repeated
from tabserve.core.feature_db import FeatureDbError, first_line, make_engine, safe_url
from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, MISSING_MARKERS, NUMERIC

CHUNK_ROWS = 5000
CONNECT_TIMEOUT_S = 10
INT64 = 2**63
WHOLE = re.compile(r"-?(0|[1-9]\d{0,18})")


class LoadError(Exception):
    """Why the load stops, in one line."""


def _parser() -> argparse.ArgumentParser:
    from tabserve.serving import settings

    parser = OneLineParser(
        prog="python -m tabserve.serving.api.feature_table",
        description="Fill the feature table read by GET /v1/entities/{id}/predict.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    load = commands.add_parser("load", help="make the feature table from a CSV, keyed by its id column")
    load.add_argument("csv", help="the CSV file (read as training reads it)")
    load.add_argument(
        "--id-column",
        default=settings.FEATURE_ID_COLUMN or None,
        required=not settings.FEATURE_ID_COLUMN,
        help="the column of entity ids: the table's primary key (default: FEATURE_ID_COLUMN)",
    )
    load.add_argument(
        "--table",
        default=settings.FEATURE_TABLE,
        help=f"the table (default: FEATURE_TABLE, now {settings.FEATURE_TABLE!r})",
    )
    load.add_argument(
        "--db",
        default=settings.FEATURE_DB_URL,
        help=f"a SQLAlchemy URL (default: FEATURE_DB_URL, now {safe_url(settings.FEATURE_DB_URL)})",
    )
    load.add_argument("--replace", action="store_true", help="replace the table if it exists (else that is an error)")
    load.add_argument(
        "--number-rows",
        action="store_true",
        help="add the id column, numbering the rows 1, 2, ... (the CSV has no id column)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rows, columns = load(
            Path(args.csv), args.id_column, args.table, args.db, replace=args.replace, number_rows=args.number_rows
        )
    except (LoadError, DataError, FeatureDbError) as exc:
        return fail(str(exc))
    print(
        f"loaded {rows} rows, {columns} columns (id column {args.id_column!r}) "
        f"into table {args.table!r} of {safe_url(args.db)}"
    )
    return 0


# --- reading and typing the CSV -----------------------------------------------------------------


def typed_columns(path: Path, id_column: str, number_rows: bool = False) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """The CSV's columns as ({name: kind}, {name: values}); kind one of id_int, id_text, boolean,
    integer, number, date, datetime, text. Values typed (None for missing), the id column first."""
    from tabserve.core import data
    from tabserve.core.columns import Overrides, infer_column

    table = data.read_table(path)
    raw = table.raw
    columns = list(raw.columns)
    if number_rows:
        if id_column in columns:
            raise LoadError(f"{path.name} already has a column {id_column!r}; drop --number-rows to use it as the id")
        raw = raw.copy()
        raw.insert(0, id_column, [str(n) for n in range(1, len(raw) + 1)])
    elif id_column not in columns:
        raise LoadError(
            f"id column {id_column!r} is not in {path.name}; columns are: {', '.join(columns)} "
            "(--number-rows adds it, numbering the rows)"
        )
    kinds: dict[str, str] = {}
    values: dict[str, list[Any]] = {}
    ids = raw[id_column].tolist()
    _check_ids(ids, id_column)
    whole = all(WHOLE.fullmatch(i) for i in ids)
    kinds[id_column] = "id_int" if whole else "id_text"
    values[id_column] = [int(i) for i in ids] if whole else ids
    for name in raw.columns:
        if name == id_column:
            continue
        column = raw[name]
        present = column[~column.isin(MISSING_MARKERS)]
        example = present.iloc[0] if not present.empty else ""
        verdict = infer_column(column, example, Overrides(keep=(name,)), table.decimal, table.sep)
        feature = verdict.feature
        if feature is None:  # no value in any row
            kinds[name], values[name] = "text", [None] * len(column)
            continue
        cells = [feature.parse_cell(cell, table.decimal) for cell in column]
        kind = {BOOLEAN: "boolean", DATE: "date", DATETIME: "datetime"}.get(feature.kind, "text")
        if feature.kind == NUMERIC or (
            feature.kind == CATEGORICAL and feature.categories and isinstance(feature.categories[0], int)
        ):
            numbers = [c for c in cells if c is not None]
            if all(float(n).is_integer() and abs(n) < INT64 for n in numbers):
                kind, cells = "integer", [None if c is None else int(c) for c in cells]
            else:
                kind = "number"
        kinds[name], values[name] = kind, cells
    return kinds, values


def _check_ids(ids: list[str], id_column: str) -> None:
    empty = [n for n, i in enumerate(ids, start=1) if i in MISSING_MARKERS]
    if empty:
        raise LoadError(
            f"id column {id_column!r} has no id in {len(empty)} row(s): {_some(empty)} "
            "(rows counted from 1 after the header)"
        )
    twice = repeated(ids)
    if twice:
        raise LoadError(f"id column {id_column!r} repeats {len(twice)} id(s): {_some(twice)}; ids must be unique")


def _some(items: list[Any], shown: int = 5) -> str:
    text = ", ".join(str(i) for i in items[:shown])
    return text + (f" (and {len(items) - shown} more)" if len(items) > shown else "")


# --- writing the table --------------------------------------------------------------------------


def load(
    path: Path, id_column: str, table_name: str, url: str, replace: bool = False, number_rows: bool = False
) -> tuple[int, int]:
    """Make the table from the CSV: (rows, columns)."""
    import sqlalchemy as sa

    if not table_name:
        raise LoadError("--table must not be empty")
    kinds, values = typed_columns(path, id_column, number_rows)
    engine = make_engine(url, timeout_s=CONNECT_TIMEOUT_S, pool_size=1)
    try:
        limit = engine.dialect.max_identifier_length or 63
        too_long = [name for name in [table_name, *kinds] if len(name.encode()) > limit]
        if too_long:
            raise LoadError(
                f"name {too_long[0]!r} is longer than the database allows ({limit} bytes); rename the column"
            )
        sql_types = {
            "id_int": sa.BigInteger,
            "id_text": sa.Text,
            "boolean": sa.Boolean,
            "integer": sa.BigInteger,
            "number": sa.Float,
            "date": sa.Date,
            "datetime": sa.DateTime,
            "text": sa.Text,
        }
        metadata = sa.MetaData()
        table = sa.Table(
            table_name,
            metadata,
            *[
                sa.Column(
                    name,
                    sql_types[kind](),
                    primary_key=name == id_column,
                    nullable=name != id_column,
                    autoincrement=False,
                )
                for name, kind in kinds.items()
            ],
        )
        names = list(kinds)
        # Every column holds one value per CSV row.
        rows = [dict(zip(names, row, strict=True)) for row in zip(*(values[n] for n in names), strict=True)]
        try:
            with engine.begin() as connection:
                if sa.inspect(connection).has_table(table_name):
                    if not replace:
                        raise LoadError(
                            f"table {table_name!r} already exists in {safe_url(url)}; --replace replaces it"
                        )
                    sa.Table(table_name, sa.MetaData()).drop(connection)
                table.create(connection)
                for start in range(0, len(rows), CHUNK_ROWS):
                    connection.execute(table.insert(), rows[start : start + CHUNK_ROWS])
        except sa.exc.OperationalError as exc:
            raise LoadError(f"cannot reach the database {safe_url(url)}: {first_line(exc)}") from None
        except sa.exc.DBAPIError as exc:
            raise LoadError(f"the database {safe_url(url)} refused the table: {first_line(exc)}") from None
        return len(rows), len(names)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
