"""Predict by entity id, in-process: the /v1 app with a real feature table (SQLite and a real PostgreSQL)
and a predictor running the real pipeline. Found, not found, overrides, invalid rows, a missing table,
a database that is down or slow (answered 503, never a hang: the test's own timeout is the guard)."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import time

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from tabserve.core import pipeline, store
from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV, read_table
from tabserve.serving.api import feature_table as features
from tabserve.serving.api import v1 as v1_app
from tabserve.serving.api.contract import ApiTypes
from tabserve.serving.api.entities import EntityLookup, LookupFailed
from tabserve.serving.rollout.versions import ModelVersions
from tests.conftest import DATA, HGB_ONLY, free_port
from tests.engines import Postgres


class Predictor:
    """The entry service's predict_one, reduced to the pipeline: notes every record it is given."""

    def __init__(self, model, card):
        self.pipeline, self.card, self.records = store.load_pipeline(model), card, []
        self.versions = ModelVersions(card)

    async def predict_one(self, record, card=None):
        self.records.append(record)
        [result] = pipeline.predict_records(self.pipeline, self.card.schema, [record])
        return {**result, "warnings": [], "model": self.card.tag}, False


@pytest.fixture(scope="module")
def card(penguins_model):
    return ModelCard.from_model(penguins_model)


@pytest.fixture(scope="module")
def types(card):
    return ApiTypes.from_card(card, max_records=10)


@pytest.fixture(scope="module")
def predictor(penguins_model, card):
    return Predictor(penguins_model, card)


@pytest.fixture(scope="module")
def postgres():
    with Postgres() as running:
        features.load(PENGUINS_CSV, "penguin_id", "features", running.url, number_rows=True)
        yield running


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('features') / 'features.db'}"
    features.load(PENGUINS_CSV, "penguin_id", "features", url, number_rows=True)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db(request) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres").url


def client(card, types, predictor, lookup) -> TestClient:
    return TestClient(
        v1_app.create_app(card, types.record, types.prediction, {}, predictor=lambda: predictor, entities=lookup)
    )


def lookup_for(card, url, table="features", **options) -> EntityLookup:
    return EntityLookup(url, table, card.schema.names, **options)


def row_record(card, types, number: int) -> dict:
    """What POST /predict would predict for the CSV's row `number` (from 1): the record a JSON body of it gives."""
    table = read_table(PENGUINS_CSV)
    cells = table.raw.iloc[number - 1].to_dict()
    return types.record.model_validate(card.schema.parse_row(cells)).model_dump()


def lookups(result: str) -> float:
    return REGISTRY.get_sample_value("tabserve_feature_lookup_seconds_count", {"result": result}) or 0.0


def test_found_predicts_the_rows_record(card, types, predictor, db):
    found_before, missing_before = lookups("found"), lookups("not_found")
    with client(card, types, predictor, lookup_for(card, db)) as http:
        for number in (1, 4, 344):  # row 4 has NA in every measurement
            response = http.get(f"/entities/{number}/predict")
            assert response.status_code == 200, response.text
            assert predictor.records[-1] == row_record(card, types, number)
            [expected] = pipeline.predict_records(predictor.pipeline, card.schema, [row_record(card, types, number)])
            assert response.json() == {**expected, "warnings": [], "model": card.tag, "entity_id": str(number)}
        for unknown in ("999", "abc", "1.5", "99999999999999999999999"):
            response = http.get(f"/entities/{unknown}/predict")
            assert response.status_code == 404
            assert response.json() == {
                "error": f"no entity {unknown!r} in table 'features'",
                "detail": [{"loc": ["id"], "msg": f"no entity {unknown!r} in table 'features'", "type": "not_found"}],
            }
    assert lookups("found") == found_before + 3 and lookups("not_found") == missing_before + 4


def test_query_parameters_override_the_row(card, types, predictor, db):
    with client(card, types, predictor, lookup_for(card, db)) as http:
        plain = http.get("/entities/1/predict").json()
        response = http.get("/entities/1/predict", params={"island": "Dream", "bill_length_mm": "50", "sex": "female"})
        assert response.status_code == 200
        assert predictor.records[-1] == {
            **row_record(card, types, 1),
            "island": "Dream",
            "bill_length_mm": 50.0,
            "sex": "female",
        }
        assert (plain["prediction"], response.json()["prediction"]) == ("Adelie", "Chinstrap")
        for params, fragment in [({"wings": "2"}, "wings"), ({"year": "soon"}, "year"), ({"island": "Mars"}, "island")]:
            refused = http.get("/entities/1/predict", params=params)
            assert refused.status_code == 400 and fragment in refused.json()["error"], refused.text


@pytest.fixture
def odd_tables(tmp_path):
    """Tables made by other tools: all text (as a CSV), bad values, a missing column, no primary key."""
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    with sqlite3.connect(tmp_path / "odd.db") as connection:
        connection.executescript("""
            CREATE TABLE text_cells (id TEXT PRIMARY KEY, island TEXT, bill_length_mm TEXT, bill_depth_mm TEXT,
                                     flipper_length_mm TEXT, body_mass_g TEXT, sex TEXT, year TEXT, note TEXT);
            INSERT INTO text_cells VALUES ('a', 'Torgersen', '39.1', '18.7', '181', '3750', 'male', '2007', 'x'),
                                          ('b', 'Torgersen', 'NA', '?', '', 'null', 'NA', '2007', NULL),
                                          ('mars', 'Mars', '39.1', '18.7', '181', '3750', 'male', '2007', NULL),
                                          ('noyear', 'Dream', '39.1', '18.7', '181', '3750', 'male', NULL, NULL),
                                          ('badnumber', 'Dream', 'long', '18.7', '181', '3750', 'male', '2007', NULL);
            CREATE TABLE no_year (id INTEGER PRIMARY KEY, island TEXT);
            INSERT INTO no_year VALUES (7, 'Biscoe');
            CREATE TABLE no_key (penguin TEXT, island TEXT, year INTEGER);
            INSERT INTO no_key VALUES ('p1', 'Biscoe', 2009);
        """)
    return url


def test_text_cells_are_read_as_csv_cells(card, types, predictor, odd_tables):
    with client(card, types, predictor, lookup_for(card, odd_tables, "text_cells")) as http:
        assert http.get("/entities/a/predict").status_code == 200
        assert predictor.records[-1] == row_record(card, types, 1)
        assert http.get("/entities/b/predict").status_code == 200
        assert predictor.records[-1] == row_record(card, types, 4)  # NA, ?, empty and null are missing, as in a CSV


@pytest.mark.parametrize(
    "table, entity, message, loc",
    [
        (
            "text_cells",
            "mars",
            "entity 'mars' cannot be scored: column 'island' of table 'text_cells' holds 'Mars': Input should be "
            "'Biscoe', 'Dream' or 'Torgersen'; fix the table, or give the value as a query parameter",
            "island",
        ),
        (
            "text_cells",
            "noyear",
            "entity 'noyear' cannot be scored: column 'year' of table 'text_cells' is empty (NULL), but the model "
            "requires a value; fix the table, or give the value as a query parameter",
            "year",
        ),
        (
            "text_cells",
            "badnumber",
            "entity 'badnumber' cannot be scored: column 'bill_length_mm' of table 'text_cells' holds 'long': "
            "Input should be a valid number",
            "bill_length_mm",
        ),
        (
            "no_year",
            "7",
            "entity '7' cannot be scored: table 'no_year' has no column 'year', a feature the model requires; fix the "
            "table, or give the value as a query parameter",
            "year",
        ),
    ],
)
def test_a_row_the_model_cannot_take_is_422_naming_entity_column_and_table(
    card, types, predictor, odd_tables, table, entity, message, loc
):
    with client(card, types, predictor, lookup_for(card, odd_tables, table)) as http:
        response = http.get(f"/entities/{entity}/predict")
        assert response.status_code == 422
        body = response.json()
        assert body["error"].startswith(message) and body["detail"][0]["loc"] == [loc], body
        fixed = http.get(f"/entities/{entity}/predict", params={loc: "Dream" if loc == "island" else "2008"})
        assert fixed.status_code == 200, fixed.text  # the caller can score it anyway


def test_id_column_by_setting_when_there_is_no_primary_key(card, types, predictor, odd_tables):
    with client(card, types, predictor, lookup_for(card, odd_tables, "no_key")) as http:
        response = http.get("/entities/p1/predict")
        assert response.status_code == 503
        assert response.json()["error"] == "table 'no_key' has no primary key: set FEATURE_ID_COLUMN to its id column"
    with client(card, types, predictor, lookup_for(card, odd_tables, "no_key", id_column="penguin")) as http:
        assert http.get("/entities/p1/predict").status_code == 200
        assert http.get("/entities/p2/predict").status_code == 404
    with client(card, types, predictor, lookup_for(card, odd_tables, "no_key", id_column="name")) as http:
        assert "has no column 'name' (FEATURE_ID_COLUMN)" in http.get("/entities/p1/predict").json()["error"]


def test_missing_table_or_database_is_503_with_the_load_command(card, types, predictor, sqlite_url, tmp_path):
    with client(card, types, predictor, lookup_for(card, sqlite_url, "nope")) as http:
        response = http.get("/entities/1/predict")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"] == (
        f"table 'nope' is not in the feature database ({sqlite_url}); fill it with: "
        f"python -m tabserve.serving.api.feature_table load data.csv --id-column ID --table nope --db <FEATURE_DB_URL>"
    )
    missing = tmp_path / "never.db"
    with client(card, types, predictor, lookup_for(card, f"sqlite:///{missing}")) as http:
        response = http.get("/entities/1/predict")
    assert (
        response.status_code == 503
        and "does not exist or cannot be opened; fill it with: python -m tabserve.serving.api.feature_table load"
        in response.json()["error"]
    )
    assert not missing.exists()  # a lookup opens the file read-only: it never makes an empty database


def test_the_table_loaded_after_a_failed_lookup_is_found(card, types, predictor, tmp_path):
    url = f"sqlite:///{tmp_path / 'later.db'}"
    with client(card, types, predictor, lookup_for(card, url)) as http:
        assert http.get("/entities/1/predict").status_code == 503
        features.load(PENGUINS_CSV, "penguin_id", "features", url, number_rows=True)
        assert http.get("/entities/1/predict").status_code == 200


@pytest.mark.timeout(120)
def test_a_stopped_postgres_is_503_then_found_again_after_restart(card, types, predictor, postgres):
    lookup = lookup_for(card, postgres.url, timeout_ms=2000, pool_size=2)
    errors_before = lookups("error") + lookups("timeout")
    with client(card, types, predictor, lookup) as http:
        assert http.get("/entities/1/predict").status_code == 200  # a pooled connection now exists
        postgres.stop()
        try:
            answers = [http.get(f"/entities/{n}/predict") for n in (1, 2, 3)]
        finally:
            postgres.start()
        assert [a.status_code for a in answers] == [503, 503, 503]
        assert all(
            a.json()["error"].startswith(
                (
                    "the feature database is unreachable (postgresql+psycopg://tabserve@127.0.0.1:",
                    "the feature database (postgresql+psycopg://",
                )
            )
            for a in answers
        ), [a.json() for a in answers]
        # The pool replaces its dead connections: found again once the restarted database takes connections.
        deadline = time.monotonic() + 15
        while (status := http.get("/entities/1/predict").status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
    assert lookups("error") + lookups("timeout") >= errors_before + 3


@pytest.mark.timeout(120)
def test_a_postgres_that_never_answers_is_a_timeout(card, types, predictor):
    """A port that accepts connections but never speaks: the connect itself would wait."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"postgresql+psycopg://x@127.0.0.1:{listener.getsockname()[1]}/x"
        before = lookups("timeout")
        with client(card, types, predictor, lookup_for(card, url, timeout_ms=300, pool_size=1)) as http:
            answers = [http.get(f"/entities/{n}/predict") for n in range(4)]
        assert [a.status_code for a in answers] == [503] * 4
        assert answers[0].json()["error"].startswith("the feature database (postgresql+psycopg://x@127.0.0.1:")
        assert "did not answer" in answers[0].json()["error"]
    assert lookups("timeout") == before + 4


@pytest.mark.timeout(180)
def test_a_slow_postgres_times_out_and_the_threads_are_freed(card, types, predictor, postgres):
    """Entity 2 of a view sleeps 60 s per read: lookups of it time out (503) while the statement timeout
    ends them in the database, so the lookup threads are free again for entity 1 at once."""
    engine = sa.create_engine(postgres.url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE OR REPLACE VIEW slow AS SELECT f.*, "
                "pg_sleep(CASE WHEN penguin_id = 2 THEN 60 ELSE 0 END)::text AS slept FROM features f"
            )
        )
    engine.dispose()
    lookup = lookup_for(card, postgres.url, "slow", id_column="penguin_id", timeout_ms=500, pool_size=2)
    before = lookups("timeout")

    async def burst():
        return await asyncio.gather(*(lookup.lookup("2") for _ in range(5)), return_exceptions=True)

    outcomes = asyncio.run(burst())
    assert all(isinstance(o, LookupFailed) and o.result == "timeout" for o in outcomes), outcomes
    assert "did not answer in time: canceling statement due to statement timeout" in str(outcomes[0])
    assert lookups("timeout") == before + 5
    found = asyncio.run(lookup.lookup("1"))  # within 500 ms: the slow statements were cancelled, not left running
    assert found.values["island"] == "Torgersen"
    lookup.close()


@pytest.mark.timeout(120)
def test_a_locked_sqlite_database_times_out(card, types, predictor, sqlite_url):
    path = sa.engine.make_url(sqlite_url).database
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing: readers wait on the lock
    try:
        with client(card, types, predictor, lookup_for(card, sqlite_url, timeout_ms=300, pool_size=1)) as http:
            answer = http.get("/entities/1/predict")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.status_code == 503 and "did not answer in time: database is locked" in answer.json()["error"]


def test_the_route_is_documented(card, types, predictor, sqlite_url):
    spec = TestClient(
        v1_app.create_app(
            card, types.record, types.prediction, {}, predictor=lambda: predictor, entities=lookup_for(card, sqlite_url)
        )
    ).app.openapi()
    operation = spec["paths"]["/entities/{id}/predict"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["id"]["in"] == "path" and set(parameters) == {"id", *card.schema.names}
    assert not any(p["required"] for p in parameters.values() if p["in"] == "query")
    assert "entity_id" in spec["components"]["schemas"]["EntityPrediction"]["properties"]


def test_without_a_lookup_there_is_no_route(card, types, predictor):
    with TestClient(v1_app.create_app(card, types.record, types.prediction, {}, predictor=lambda: predictor)) as http:
        assert http.get("/entities/1/predict").status_code == 404
        assert "/entities/{id}/predict" not in http.app.openapi()["paths"]


def test_a_bad_database_url_stops_the_server_with_one_line(card, monkeypatch):
    from tabserve.serving import settings as config

    monkeypatch.setattr(config, "FEATURE_DB_CONFIGURED", True)  # FEATURE_DB_URL set in the environment
    monkeypatch.setattr(config, "FEATURE_DB_URL", "nosuchdb://x")
    with pytest.raises(SystemExit) as stopped:
        EntityLookup.from_config(card.schema)
    assert str(stopped.value).startswith("error: FEATURE_DB_URL: cannot use nosuchdb://x: ")
    monkeypatch.setattr(config, "FEATURE_DB_URL", f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x")
    EntityLookup.from_config(card.schema).close()  # a database that is down is no reason not to start


def test_a_model_with_dates_is_looked_up_and_a_date_can_be_given(tmp_path):
    """Date and date-time features: the route builds (its optional query types keep the lax date parsing)
    and a row's dates reach the model as dates; a date given as a query parameter replaces the row's."""
    from tabserve.training import trainer

    model = trainer.train(DATA / "dates.csv", "visitors", name="entity_dates", choices=HGB_ONLY).model
    card = ModelCard.from_model(model)
    types = ApiTypes.from_card(card, max_records=10)
    url = f"sqlite:///{tmp_path / 'features.db'}"
    features.load(DATA / "dates.csv", "row", "features", url, number_rows=True)
    predictor = Predictor(model, card)
    http = client(card, types, predictor, lookup_for(card, url))
    answer = http.get("/entities/1/predict")
    assert answer.status_code == 200, answer.text
    assert predictor.records[-1]["day"] == datetime.date(2024, 11, 4)
    assert predictor.records[-1]["last_order_at"] == datetime.datetime(2024, 11, 4, 14, 20)
    answer = http.get("/entities/1/predict", params={"day": "2025-01-31"})
    assert answer.status_code == 200, answer.text
    assert predictor.records[-1]["day"] == datetime.date(2025, 1, 31)
    assert http.get("/entities/1/predict", params={"day": "31 January"}).status_code == 400


def test_unconfigured_is_501_saying_how_to_load_a_table_then_works_once_loaded(
    card, types, predictor, tmp_path, monkeypatch
):
    """FEATURE_DB_URL unset: the default sqlite:///features.db counts as configured only once a table was loaded
    into it. Before, nothing is down, so the route says how to turn it on (501), not "retry" (503)."""
    from tabserve.serving import settings as config

    monkeypatch.chdir(tmp_path)  # the default database file is relative to where the server runs
    monkeypatch.setattr(config, "FEATURE_DB_CONFIGURED", False)
    monkeypatch.setattr(config, "FEATURE_DB_URL", "sqlite:///features.db")
    lookup = EntityLookup.from_config(card.schema)
    with client(card, types, predictor, lookup) as http:
        response = http.get("/entities/1/predict")
        assert response.status_code == 501 and "Retry-After" not in response.headers
        assert response.json()["error"].startswith(
            "no feature table is configured: load one with `python -m tabserve.serving.api.feature_table load"
        )
        features.load(PENGUINS_CSV, "penguin_id", "features", "sqlite:///features.db", number_rows=True)
        assert http.get("/entities/1/predict").status_code == 200
    lookup.close()
