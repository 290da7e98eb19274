"""Features looked up by entity id, for GET /v1/entities/{id}/predict: one row of the feature table
(FEATURE_DB_URL, FEATURE_TABLE, FEATURE_ID_COLUMN) read per request, then validated as a record.

- Lazy: nothing touches the database until the first lookup, so the server starts and is ready
  while the database is down or the table is missing. The table is reflected at the first lookup
  that reaches it (the id column: FEATURE_ID_COLUMN, else its primary key) and again after a lookup
  finds it gone.
- Bounded: a lookup (pool checkout, connect, query) runs on a thread of its own pool and is abandoned
  after FEATURE_DB_TIMEOUT_MS (503, `timeout`; a lookup that must reflect the table first, after
  REFLECT_TIMEOUT_S at most: a first connection and the catalog queries); the event loop never waits on the
  database. The driver's own timeouts (tabserve/core/feature_db.py) end the abandoned work soon
  after, and the lookup pool has no more threads than the connection pool has connections, so
  stuck threads cannot pile up: lookups beyond that wait in line and time out like the others.
- Failures answer 503 with one line naming the cause (database unreachable, table missing and the
  command that fills it, too slow); an unknown id answers 404.
- Each lookup's time is on /metrics as tabserve_feature_lookup_seconds{result}, result one of
  found, not_found, error, timeout (beside tabserve_model_call_seconds, the model service's time).

`entity_record` makes the model's record from the row and the query's overrides. The row's values are
validated exactly like a JSON body of POST /predict; a text cell is read as a CSV cell is (missing
markers, yes/no, the training file's date format). A row the model cannot use answers 422, naming the
entity, the column and the table: the request was right, the stored data is not, and the caller can
still get an answer by giving that column as a query parameter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from tabserve.core.errors import TabserveError, pydantic_detail
from tabserve.core.feature_db import LOAD_COMMAND, FeatureDbError, first_line, make_engine, safe_url
from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATETIME, FeatureSchema
from tabserve.serving.observe import metrics

logger = logging.getLogger("tabserve")

INT64 = 2**63
REFLECT_TIMEOUT_S = 5.0  # the deadline of a lookup that must read the table's columns first
# PostgreSQL's SQLSTATEs for a statement cancelled by statement_timeout / a lock wait given up.
TIMEOUT_STATES = ("57014", "55P03")
# A table or column gone since it was reflected: reflect again at the next lookup.
GONE_STATES = ("42P01", "42703")


class LookupFailed(TabserveError):
    """The feature database could not answer: HTTP 503 with Retry-After. `result` is the metric label."""

    def __init__(self, message: str, result: str = "error"):
        super().__init__(message)
        self.result = result


class NotConfigured(TabserveError):
    """No feature table was configured (FEATURE_DB_URL unset and no features.db loaded): HTTP 501, saying how to
    turn the route on. Not 503: nothing is down, and retrying will not help."""


NOT_CONFIGURED = (
    f"no feature table is configured: load one with `{LOAD_COMMAND}` (into sqlite:///features.db),"
    " or set FEATURE_DB_URL to the database that holds FEATURE_TABLE"
)


class DefaultDatabaseLookup:
    """FEATURE_DB_URL unset: the default database, sqlite:///features.db, is used once a table was loaded into it.
    Until then every lookup answers 501 saying how to load one, and nothing of SQLAlchemy is loaded at start."""

    def __init__(self, make: Callable[[], EntityLookup], table_name: str, database_file: str):
        self._make, self.table_name, self.database_file = make, table_name, database_file
        self._lookup: EntityLookup | None = None

    async def lookup(self, entity_id: str) -> Found:
        if self._lookup is None:
            if not os.path.exists(self.database_file):
                metrics.observe_feature_lookup("not_configured", 0.0)
                raise NotConfigured(NOT_CONFIGURED)
            self._lookup = self._make()
        return await self._lookup.lookup(entity_id)

    def close(self) -> None:
        if self._lookup is not None:
            self._lookup.close()


class EntityNotFound(TabserveError):
    """No row has this id: HTTP 404."""

    def __init__(self, entity_id: str, table: str):
        super().__init__(f"no entity {entity_id!r} in table {table!r}")
        self.entity_id = entity_id


class InvalidEntity(TabserveError):
    """The entity's row holds a value the model cannot take (or lacks a required feature): HTTP 422."""

    def __init__(self, message: str, detail: list[dict[str, Any]]):
        super().__init__(message)
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class Found:
    """An entity's row: the model's features the table has (column -> value), and those it lacks."""

    values: dict[str, Any]
    lacking: tuple[str, ...]


class EntityLookup:
    """Reads an entity's features from the feature table, within a deadline."""

    def __init__(
        self, url: str, table: str, features: list[str], id_column: str = "", timeout_ms: int = 1000, pool_size: int = 5
    ):
        self.url = safe_url(url)
        self.table_name = table
        self.features = list(features)
        self.id_column = id_column
        self.timeout_s = timeout_ms / 1000
        self.engine = make_engine(
            url, timeout_s=self.timeout_s, pool_size=pool_size, statement_timeout_ms=timeout_ms, read_only=True
        )
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="feature-lookup")
        self._lock = threading.Lock()
        self._reflected: tuple[Any, Any] | None = None  # (table, id column), once the table was read
        self._quiet_until = 0.0

    @classmethod
    def from_config(cls, schema: FeatureSchema) -> EntityLookup:
        """The lookup the settings describe; a FEATURE_DB_URL that is not usable stops the process with one line."""
        from tabserve.serving import settings

        def lookup() -> EntityLookup:
            try:
                return cls(
                    settings.FEATURE_DB_URL,
                    settings.FEATURE_TABLE,
                    schema.names,
                    settings.FEATURE_ID_COLUMN,
                    settings.FEATURE_DB_TIMEOUT_MS,
                    settings.FEATURE_DB_POOL_SIZE,
                )
            except FeatureDbError as exc:
                raise SystemExit(f"error: FEATURE_DB_URL: {exc}") from None

        if settings.FEATURE_DB_CONFIGURED:
            return lookup()
        # The default URL, sqlite:///features.db: a file relative to where the server runs.
        return DefaultDatabaseLookup(lookup, settings.FEATURE_TABLE, settings.FEATURE_DB_URL.removeprefix("sqlite:///"))

    async def lookup(self, entity_id: str) -> Found:
        """The entity's row; EntityNotFound, or LookupFailed when the database does not answer in time."""
        started = time.perf_counter()
        result = "error"
        # The first lookup also connects for the first time and reflects the table (a few catalog queries):
        # it may take up to REFLECT_TIMEOUT_S; every later one FEATURE_DB_TIMEOUT_MS.
        deadline = self.timeout_s if self._reflected is not None else max(self.timeout_s, REFLECT_TIMEOUT_S)
        try:
            async with asyncio.timeout(deadline):
                found = await asyncio.get_running_loop().run_in_executor(self._executor, self._read, entity_id)
            result = "found" if found is not None else "not_found"
        except TimeoutError:
            result = "timeout"
            raise LookupFailed(
                f"the feature database ({self.url}) did not answer within {deadline * 1000:g} ms "
                "(FEATURE_DB_TIMEOUT_MS); retry shortly",
                "timeout",
            ) from None
        except LookupFailed as exc:
            result = exc.result
            raise
        finally:
            metrics.observe_feature_lookup(result, time.perf_counter() - started)
        if found is None:
            raise EntityNotFound(entity_id, self.table_name)
        return found

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()

    # --- on a lookup thread -------------------------------------------------------------------

    def _read(self, entity_id: str) -> Found | None:
        import sqlalchemy as sa

        try:
            table, id_col = self._table()
            key = id_value(id_col, entity_id)
            if key is None:
                return None  # "abc" for an integer id: no such entity
            columns = [table.c[name] for name in self.features if name in table.c]
            query = sa.select(*(columns or [id_col])).where(id_col == key).limit(1)
            with self.engine.connect() as connection:
                row = connection.execute(query).mappings().first()
        except LookupFailed:
            raise
        except sa.exc.NoSuchTableError:
            raise LookupFailed(self._missing_table()) from None
        except sa.exc.TimeoutError:  # no pooled connection came free in time
            raise LookupFailed(
                f"the feature database ({self.url}) is busy: no connection free within {self.timeout_s * 1000:g} ms",
                "timeout",
            ) from None
        except sa.exc.DBAPIError as exc:
            raise self._failure(exc) from None
        if row is None:
            return None
        values = {name: row[name] for name in self.features if name in row}
        return Found(values, tuple(name for name in self.features if name not in table.c))

    def _table(self) -> tuple[Any, Any]:
        """The feature table and its id column, reflected once (again after the table went away)."""
        import sqlalchemy as sa

        with self._lock:
            if self._reflected is not None:
                return self._reflected
            with self.engine.connect() as connection:
                table = sa.Table(self.table_name, sa.MetaData(), autoload_with=connection)
            if self.id_column:
                if self.id_column not in table.c:
                    raise LookupFailed(
                        f"table {self.table_name!r} has no column {self.id_column!r} (FEATURE_ID_COLUMN); "
                        f"its columns: {', '.join(table.c.keys())}"
                    )
                id_col = table.c[self.id_column]
            else:
                key = list(table.primary_key.columns)
                if len(key) != 1:
                    what = "no primary key" if not key else f"a primary key of {len(key)} columns"
                    raise LookupFailed(f"table {self.table_name!r} has {what}: set FEATURE_ID_COLUMN to its id column")
                id_col = key[0]
            self._reflected = table, id_col
            return self._reflected

    def _missing_table(self, where: str = "") -> str:
        where = where or f"table {self.table_name!r} is not in the feature database ({self.url})"
        return f"{where}; fill it with: {LOAD_COMMAND} --table {self.table_name} --db <FEATURE_DB_URL>"

    def _failure(self, exc: Exception) -> LookupFailed:
        """A driver error as a 503 saying what happened."""
        original = getattr(exc, "orig", None)
        state = getattr(original, "sqlstate", None) or getattr(getattr(original, "diag", None), "sqlstate", None)
        text = first_line(exc)
        if state in TIMEOUT_STATES or "database is locked" in text or "timeout expired" in text:
            return LookupFailed(
                f"the feature database ({self.url}) did not answer in time: {text}; retry shortly", "timeout"
            )
        if state in GONE_STATES or "no such table" in text or "no such column" in text:
            with self._lock:
                self._reflected = None  # reflect again next time
            if state == "42703" or "no such column" in text:
                return LookupFailed(f"table {self.table_name!r} changed while serving ({text}); retry")
            return LookupFailed(self._missing_table())
        if self.engine.dialect.name == "sqlite" and "unable to open database file" in text:
            return LookupFailed(
                self._missing_table(f"the SQLite file of {self.url} does not exist or cannot be opened")
            )
        if time.monotonic() > self._quiet_until:  # one log line per minute while it stays down
            self._quiet_until = time.monotonic() + 60
            logger.warning("feature lookup failed: %s", text)
        return LookupFailed(f"the feature database is unreachable ({self.url}): {text}")


def id_value(column: Any, text: str) -> Any:
    """The path's id as a value of the id column's type; None when it cannot be one (then no row has it)."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return text
    if kind is bool:
        return None
    if kind is int:
        if not re.fullmatch(r"[+-]?\d{1,19}", text) or abs(int(text)) >= INT64:
            return None
        return int(text)
    try:
        if kind is float:
            number = float(text)
            return number if math.isfinite(number) else None
        if kind is decimal.Decimal:
            number = decimal.Decimal(text)
            return number if number.is_finite() else None
        if kind is uuid.UUID:
            return uuid.UUID(text)
        if kind is dt.date:
            return dt.date.fromisoformat(text)
        if kind is dt.datetime:
            return dt.datetime.fromisoformat(text)
    except (ValueError, ArithmeticError):
        return None
    return text


def table_value(feature: Any, value: Any) -> Any:
    """A value from the table as the JSON-like value a request would carry.

    Text is read as a CSV cell (missing markers, yes/no, numbers, the training file's date format);
    numbers the driver returns as Decimal become floats (whole ones ints, for coded categories); NaN is
    missing; 0/1 stand for a boolean, a date for a date-time at midnight. Everything else is left as it
    is, for validation to judge.
    """
    if isinstance(value, str):
        return feature.parse_cell(value)
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if feature.kind == CATEGORICAL and value.is_integer():
            return int(value)
    if feature.kind == BOOLEAN and type(value) is int and value in (0, 1):
        return bool(value)
    if feature.kind == DATETIME and type(value) is dt.date:
        return dt.datetime.combine(value, dt.time())
    return value


def entity_record(
    schema: FeatureSchema,
    record_type: type[BaseModel],
    found: Found,
    overrides: dict[str, Any],
    entity_id: str,
    table: str,
) -> dict[str, Any]:
    """The record to predict: the row's features, with the query's values instead where given, validated
    as a JSON body of POST /predict is. InvalidEntity names the entity, column and table of a bad value."""
    values: dict[str, Any] = {}
    for feature in schema.features:
        if feature.name in overrides:
            values[feature.name] = overrides[feature.name]
        elif feature.name in found.values:
            values[feature.name] = table_value(feature, found.values[feature.name])
    try:
        return record_type.model_validate(values).model_dump()
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    detail = pydantic_detail(errors)
    problems = []
    for item in detail:  # one per error
        column = str(item["loc"][0]) if item["loc"] else "?"
        if column in found.lacking:
            problems.append(f"table {table!r} has no column {column!r}, a feature the model requires")
            item["msg"] = f"not in table {table!r}: {item['msg']}"
        elif found.values.get(column) is None and column in found.values:
            problems.append(f"column {column!r} of table {table!r} is empty (NULL), but the model requires a value")
            item["msg"] = f"NULL in table {table!r}: {item['msg']}"
        else:
            shown = repr(found.values.get(column))
            problems.append(f"column {column!r} of table {table!r} holds {shown[:80]}: {item['msg']}")
            item["msg"] = f"{shown[:80]} in table {table!r}: {item['msg']}"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    message = (
        f"entity {entity_id!r} cannot be scored: {problems[0]}{more}; "
        "fix the table, or give the value as a query parameter"
    )
    logger.warning("feature table %r, entity %r: %s", table, entity_id, problems[0])
    raise InvalidEntity(message, detail)
