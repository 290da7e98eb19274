"""`python -m tabserve.serving.api.feature_table load`: the feature table made from a CSV read as training reads it,
with typed columns and the id as primary key, in SQLite and a real PostgreSQL; its one-line errors."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tabserve.core.data import PENGUINS_CSV
from tabserve.serving.api import feature_table as features
from tests.conftest import DATA, ROOT, free_port
from tests.engines import Postgres


def penguins_raw() -> Path:
    """Real data (palmerpenguins' raw export): dates, Yes/No, NA markers, free text, duplicate ids."""
    import palmerpenguins

    return Path(palmerpenguins.__file__).resolve().parent / "data" / "penguins-raw.csv"


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = features.main(["load", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def rows(url: str, table: str, order: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
            return [dict(r) for r in connection.execute(sa.select(reflected).order_by(reflected.c[order])).mappings()]
    finally:
        engine.dispose()


def primary_key(url: str, table: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_pk_constraint(table)["constrained_columns"]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def postgres():
    with Postgres() as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'features.db'}"
    url = request.getfixturevalue("postgres").url
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # a fresh database for each test
        for name in sa.inspect(connection).get_table_names():
            connection.execute(sa.text(f'DROP TABLE "{name}"'))
    engine.dispose()
    return url


def test_penguins_with_numbered_rows(capsys, db):
    code, out, err = run(capsys, str(PENGUINS_CSV), "--id-column", "penguin_id", "--number-rows", "--db", db)
    assert code == 0, err
    shown = sa.engine.make_url(db).render_as_string(hide_password=True)
    assert out == f"loaded 344 rows, 9 columns (id column 'penguin_id') into table 'features' of {shown}\n"
    table = rows(db, "features", "penguin_id")
    assert len(table) == 344 and primary_key(db, "features") == ["penguin_id"]
    assert table[0] == {
        "penguin_id": 1,
        "species": "Adelie",
        "island": "Torgersen",
        "bill_length_mm": 39.1,
        "bill_depth_mm": 18.7,
        "flipper_length_mm": 181,
        "body_mass_g": 3750,
        "sex": "male",
        "year": 2007,
    }
    assert table[3] == {
        "penguin_id": 4,
        "species": "Adelie",
        "island": "Torgersen",
        "bill_length_mm": None,
        "bill_depth_mm": None,
        "flipper_length_mm": None,
        "body_mass_g": None,
        "sex": None,
        "year": 2007,
    }  # NA in the CSV


def test_real_data_with_dates_booleans_and_missing_markers(capsys, db):
    code, out, err = run(
        capsys, str(penguins_raw()), "--id-column", "row", "--number-rows", "--table", "raw", "--db", db
    )
    assert code == 0, err
    assert out.startswith("loaded 344 rows, 18 columns (id column 'row') into table 'raw' of ")
    first, last = rows(db, "raw", "row")[0], rows(db, "raw", "row")[-1]
    assert first["Date Egg"] == dt.date(2007, 11, 11) and first["Clutch Completion"] is True
    assert first["Culmen Length (mm)"] == 39.1 and first["Body Mass (g)"] == 3750 and first["Individual ID"] == "N1A1"
    assert first["Delta 15 N (o/oo)"] is None and first["Comments"] == "Not enough blood for isotopes."
    assert last["Sex"] == "FEMALE" and last["Comments"] is None


def test_european_csv_decimal_comma_and_day_first_dates(capsys, db):
    code, _, err = run(
        capsys, str(DATA / "european.csv"), "--id-column", "n", "--number-rows", "--table", "sales", "--db", db
    )
    assert code == 0, err
    first = rows(db, "sales", "n")[0]
    assert first == {
        "n": 1,
        "datum": dt.date(2023, 8, 11),
        "region": "Ost",
        "preis": 98.54,
        "menge": 11,
        "umsatz": 1073.3,
    }


def test_dates_and_date_times_and_text_ids(capsys, db, tmp_path):
    path = tmp_path / "visits.csv"
    path.write_text(
        "code,day,at,active\n007,2024-11-04,2024-11-04 14:20:00,yes\nA12,2024-12-12,2024-12-12 09:54:00,?\n"
    )
    code, _, err = run(capsys, str(path), "--id-column", "code", "--table", "visits", "--db", db)
    assert code == 0, err
    assert rows(db, "visits", "code") == [
        {
            "code": "007",
            "day": dt.date(2024, 11, 4),
            "at": dt.datetime(2024, 11, 4, 14, 20),
            "active": True,
        },  # "007" stays text
        {"code": "A12", "day": dt.date(2024, 12, 12), "at": dt.datetime(2024, 12, 12, 9, 54), "active": None},
    ]


def test_replace(capsys, db, tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("id,x\n1,1.5\n2,2.5\n")
    assert run(capsys, str(path), "--id-column", "id", "--db", db)[0] == 0
    path.write_text("id,x\n1,9.5\n")
    code, out, err = run(capsys, str(path), "--id-column", "id", "--db", db)
    assert (
        code == 2
        and err.startswith("error: table 'features' already exists in ")
        and err.endswith("; --replace replaces it\n")
    )
    assert rows(db, "features", "id") == [{"id": 1, "x": 1.5}, {"id": 2, "x": 2.5}]  # untouched
    assert run(capsys, str(path), "--id-column", "id", "--db", db, "--replace")[0] == 0
    assert rows(db, "features", "id") == [{"id": 1, "x": 9.5}]


def _write(tmp_path: Path, text: str, name: str = "in.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing file", "error: no such file: "),
        ("missing id column", "error: id column 'penguin_id' is not in penguins.csv; columns are: species, island, "),
        (
            "duplicate ids",
            "error: id column 'Individual ID' repeats 114 id(s): N11A1, N11A2, N12A1, N12A2, N13A1 (and 109 more); "
            "ids must be unique",
        ),
        ("missing ids", "error: id column 'id' has no id in 2 row(s): 2, 3 (rows counted from 1 after the header)"),
        ("id column given twice", "error: in.csv already has a column 'id'; drop --number-rows to use it as the id"),
        ("unreachable postgres", "error: cannot reach the database postgresql+psycopg://nobody@127.0.0.1:"),
        (
            "unreachable sqlite",
            "error: cannot reach the database sqlite:////nonexistent-dir/features.db: unable to open database file",
        ),
        ("not a database URL", "error: cannot use nosuchdb://x: "),
        ("no --id-column", "error: the following arguments are required: --id-column"),
    ],
)
def test_one_line_errors_exit_2(capsys, tmp_path, monkeypatch, case, message):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    args = {
        "missing file": [str(tmp_path / "nope.csv"), "--id-column", "id"],
        "missing id column": [str(PENGUINS_CSV), "--id-column", "penguin_id"],
        "duplicate ids": [str(penguins_raw()), "--id-column", "Individual ID"],
        "missing ids": [_write(tmp_path, "id,x\n1,1\nNA,2\n,3\n", "gaps.csv"), "--id-column", "id"],
        "id column given twice": [_write(tmp_path, "id,x\n1,1\n"), "--id-column", "id", "--number-rows"],
        "unreachable postgres": [
            str(PENGUINS_CSV),
            "--id-column",
            "i",
            "--number-rows",
            "--db",
            f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x",
        ],
        "unreachable sqlite": [
            str(PENGUINS_CSV),
            "--id-column",
            "i",
            "--number-rows",
            "--db",
            "sqlite:////nonexistent-dir/features.db",
        ],
        "not a database URL": [str(PENGUINS_CSV), "--id-column", "i", "--number-rows", "--db", "nosuchdb://x"],
        "no --id-column": [str(PENGUINS_CSV)],
    }[case]
    if "--db" not in args:
        args += ["--db", db]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err
    assert (
        not (tmp_path / "f.db").exists() or not sa.inspect(sa.create_engine(db)).get_table_names()
    )  # nothing half-made


def test_runs_as_a_module(tmp_path):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    command = [
        sys.executable,
        "-m",
        "tabserve.serving.api.feature_table",
        "load",
        str(PENGUINS_CSV),
        "--id-column",
        "penguin_id",
        "--number-rows",
        "--db",
        db,
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "FEATURE_DB_URL": ""}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"loaded 344 rows, 9 columns (id column 'penguin_id') into table 'features' of {db}\n"
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (
        again.returncode == 2
        and again.stderr == f"error: table 'features' already exists in {db}; --replace replaces it\n"
    )
