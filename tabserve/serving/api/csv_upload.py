"""Scoring an uploaded CSV (in any encoding tabserve/core/data.py reads) or .xlsx workbook: its rows validated
against the API's record type, and the file given back as UTF-8 CSV with the predictions (ids and other
passed-through columns unchanged, the upload's separator and decimal mark; "," and "." for a workbook)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from tabserve.core import data, rows
from tabserve.core.card import ModelCard
from tabserve.core.errors import DataError, InvalidInput, TooLarge
from tabserve.serving.edge.limits import score_instead

# Rows whose errors are listed in a 400 for a bad CSV; the count of all bad rows is always given.
MAX_REPORTED_ROWS = 50


@dataclass(frozen=True)
class CsvScoring:
    """An uploaded CSV, validated: the records to predict and, per bad row, why it was refused."""

    upload: data.Upload
    records: list[dict[str, Any]]  # validated, for the good rows only
    good_rows: list[int]  # 0-based positions of the good rows in the upload
    row_errors: dict[int, str]  # 0-based position -> one line naming the problem

    @property
    def failed(self) -> int:
        return len(self.row_errors)


def records_from_csv(
    content: bytes, card: ModelCard, record_type: type[BaseModel], max_rows: int, skip_bad_rows: bool = False
) -> CsvScoring:
    """An uploaded CSV as validated records. By default one bad row refuses the file: InvalidInput
    lists the bad rows by number. With `skip_bad_rows`, the bad rows are reported, not refused."""
    try:
        upload = data.parse_upload(content, card.schema, max_rows, passthrough=(card.target,))
    except TooLarge as exc:  # over MAX_CSV_ROWS: the message says the way out
        raise InvalidInput(f"{exc}; {score_instead('MAX_CSV_ROWS', card.tag)}", status=413) from None
    except DataError as exc:
        raise InvalidInput(str(exc)) from None
    decimal = upload.table.decimal
    records, good, errors, detail = [], [], {}, []
    for position, row in enumerate(upload.table.raw.to_dict("records")):
        try:
            records.append(rows.validate(record_type, card.schema, row, decimal))
            good.append(position)
        except ValidationError as exc:
            problems = rows.problems(exc, position)
            errors[position] = rows.error_line(problems)
            if len(errors) <= MAX_REPORTED_ROWS:
                detail.extend(problems)
    if errors and not skip_bad_rows:
        first = detail[0]["loc"][0]
        raise InvalidInput(
            f"{len(errors)} of {len(upload.table.raw)} CSV rows failed validation (first: {first}); "
            "nothing was predicted (add ?on_error=skip to predict the good rows)",
            detail,
        )
    return CsvScoring(upload, records, good, errors)


def csv_with_predictions(scoring: CsvScoring, results: list[dict[str, Any]], card: ModelCard, reasons: int = 0) -> str:
    """The uploaded table as it came (ids and other passed-through columns included), plus a
    prediction column and, for classification, proba_<class> columns, then `reasons` reason_K columns
    (explain=K); in the upload's separator and decimal mark. When bad rows were skipped, an `error` column
    says why their cells are empty."""
    table = scoring.upload.table
    labels = rows.class_texts(card)
    header = [*table.raw.columns, *rows.result_columns(card), *rows.reason_columns(reasons)]
    if scoring.row_errors:
        header.append("error")
    by_row = dict(zip(scoring.good_rows, results, strict=True))  # one result per good row
    records = dict(zip(scoring.good_rows, scoring.records, strict=True))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=table.sep, lineterminator="\n")
    writer.writerow(header)
    for position, cells in enumerate(table.raw.itertuples(index=False, name=None)):
        result = by_row.get(position)
        if result is None:
            extra = ["", *("" for _ in labels if card.has_probabilities), *("" for _ in range(reasons))]
        else:
            extra = [rows.cell(value, table.decimal) for value in rows.result_values(result, labels)]
            if reasons:
                extra += rows.reasons(result["explanation"], records[position], reasons, table.decimal)
        if scoring.row_errors:
            extra.append(scoring.row_errors.get(position, ""))
        writer.writerow([*cells, *extra])
    return buffer.getvalue()
