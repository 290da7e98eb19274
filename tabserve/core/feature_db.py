"""The feature database (FEATURE_DB_URL): a SQLAlchemy engine with bounded waits, for both its users:
the loader (`python -m tabserve.serving.api.feature_table load`, which fills the table) and the lookup by entity id
(tabserve/serving/api/entities.py, which reads one row per request).

Every wait is bounded at the driver, so a thread never hangs on a database that is down or slow:
- PostgreSQL (psycopg): `connect_timeout` (libpq counts whole seconds, at least 2) and, for lookups,
  `statement_timeout` on every connection; the server cancels a statement that runs longer.
- SQLite: the busy timeout (how long to wait for another connection's lock); lookups open the file
  read-only, so a missing file is an error, not a new empty database.
- The pool: `pool_timeout` for a free connection, no overflow beyond `pool_size`.
"""

from __future__ import annotations

import math
from typing import Any

LOAD_COMMAND = "python -m tabserve.serving.api.feature_table load data.csv --id-column ID"


class FeatureDbError(Exception):
    """FEATURE_DB_URL is not a usable SQLAlchemy URL (unknown dialect, driver not installed)."""


def make_engine(
    url: str, *, timeout_s: float, pool_size: int = 5, statement_timeout_ms: int | None = None, read_only: bool = False
) -> Any:
    """A SQLAlchemy engine for `url` that connects lazily (nothing is reached here) and never waits
    longer than `timeout_s` for a connection; `statement_timeout_ms` bounds each query (PostgreSQL)."""
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError as exc:
        raise FeatureDbError(
            f"{url!r} is not a database URL ({exc}); e.g. sqlite:///features.db or postgresql+psycopg://user@host/db"
        ) from None
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        connect_args["connect_timeout"] = max(2, math.ceil(timeout_s))
        if statement_timeout_ms is not None:
            connect_args["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    elif backend == "sqlite":
        connect_args["timeout"] = timeout_s
        connect_args["check_same_thread"] = False  # pooled connections move between the lookup threads
        if read_only and parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            parsed = parsed.set(database=f"file:{parsed.database}", query={**parsed.query, "mode": "ro", "uri": "true"})
    elif backend == "mysql":
        connect_args["connect_timeout"] = max(1, math.ceil(timeout_s))
    options: dict[str, Any] = dict(pool_pre_ping=True)
    if not (backend == "sqlite" and parsed.database in (None, "", ":memory:")):
        options.update(pool_size=pool_size, max_overflow=0, pool_timeout=timeout_s)
    try:
        return sa.create_engine(parsed, connect_args=connect_args, **options)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise FeatureDbError(f"cannot use {safe_url(url)}: {exc}") from None


def safe_url(url: Any) -> str:
    """The URL without its password, for messages and logs."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all
        return "<the database URL>"


def first_line(exc: BaseException) -> str:
    """A driver's error as one line: its first line, without SQLAlchemy's background link."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0].strip() if text else type(original).__name__
