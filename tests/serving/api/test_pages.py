"""The /v1/form pages (tabserve/serving/api/pages.py and its Jinja2 templates), rendered from hand-made model
cards and read back with the standard library's HTML parser: autoescaping, one control per kind of
feature, the errors, the result's bars and its explanation chart; the form's route asking for the explanation (a
hand-made request path, then the real one in process). The browser test (tests/served/test_form_browser.py) drives
the same pages in Chromium."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tabserve.core.card import ModelCard
from tabserve.core.schema import BOOLEAN, CATEGORICAL, DATE, DATETIME, NUMERIC, Feature, FeatureSchema, label_text
from tabserve.explaining.explainers import NotExplainable
from tabserve.serving.api import pages, v1
from tabserve.serving.api.contract import ApiTypes
from tabserve.serving.rollout.versions import ModelVersions
from tests.conftest import PENGUIN, ROOT, in_process_service

XSS = "<script>alert(1)</script>"
VOID = {"meta", "input", "br", "img", "link", "hr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list = field(default_factory=list)  # Node or str

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children).strip()

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Descendants in document order with this tag and these attribute values (class_ matches one class)."""
        found = []
        for child in self.children:
            if isinstance(child, Node):
                classes = (child.attrs.get("class") or "").split()
                if (tag is None or child.tag == tag) and all(
                    (v in classes) if k == "class_" else child.attrs.get(k.replace("_", "-")) == v
                    for k, v in attrs.items()
                ):
                    found.append(child)
                found += child.all(tag, **attrs)
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


FEATURES = (
    Feature("island", CATEGORICAL, False, categories=["Biscoe", "Dream", "Torgersen"], example="Dream"),
    Feature("origin", CATEGORICAL, True, categories=[1, 2, 3], example=2),  # integer-coded categories
    Feature("member", BOOLEAN, False, example=False),
    Feature("promo", BOOLEAN, True, example=None),
    Feature("day", DATE, False, example="2024-01-31", first="2024-01-01", last="2024-12-31"),
    Feature(
        "seen_at",
        DATETIME,
        True,
        example="2024-01-31T10:30:00",
        first="2024-01-01T00:00:00",
        last="2024-12-31T23:00:00",
    ),
    Feature("mass", NUMERIC, False, min=2700.0, max=6300.0, integer=True, example=3750),
    Feature("ratio", NUMERIC, True, min=0.1, max=0.9, example=None),
)


def card_of(*features: Feature, target: str = "species", task: str = "classification", **extra) -> ModelCard:
    return ModelCard(
        task=task, target=target, schema=FeatureSchema(tuple(features)), classes=["a", "b"], tag="demo:v1", **extra
    )


@pytest.fixture(scope="module")
def form() -> Node:
    return parse(pages.form_page(card_of(*FEATURES)))


def options(select: Node) -> list[tuple[str, str, bool]]:
    return [(o.attrs["value"], o.text, "selected" in o.attrs) for o in select.all("option")]


def test_the_pages_come_from_autoescaping_templates():
    assert pages.ENVIRONMENT.autoescape is True
    assert sorted(p.name for p in pages.TEMPLATES.glob("*.html")) == ["base.html", "form.html", "result.html"]
    assert pages.TEMPLATES.is_relative_to(Path(pages.__file__).parent)


def test_names_categories_and_messages_are_escaped():
    hostile = card_of(
        Feature("a&b", CATEGORICAL, False, categories=[XSS, "x&y", 'say "hi"'], example=XSS),
        Feature('q"><b>', NUMERIC, True, min=0, max=1, example=None),
        target=XSS,
    )
    values = {"a&b": XSS, 'q"><b>': '" onfocus="alert(1)'}
    html = pages.form_page(hostile, values, errors=[f"a&b: {XSS} is not allowed"])
    assert "<script>" not in html and "<b>" not in html and 'onfocus="' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a&amp;b" in html and "x&amp;y" in html

    page = parse(html)
    assert page.one("title").text == f"Predict {XSS}" and page.one("h1").text == f"Predict {XSS}"
    select = page.one("select")
    assert select.attrs == {"id": "a&b", "name": "a&b"}
    assert options(select) == [(XSS, XSS, True), ("x&y", "x&y", False), ('say "hi"', 'say "hi"', False)]
    number = page.one("input")
    assert (
        number.attrs["id"] == 'q"><b>'
        and number.attrs["value"] == '" onfocus="alert(1)'
        and "onfocus" not in number.attrs
    )
    assert page.one(class_="errors").one("li").text == f"a&b: {XSS} is not allowed"

    result = pages.result_page(
        hostile, {"prediction": XSS, "probabilities": {XSS: 0.75, "a&b": 0.25}, "warnings": [f"x={XSS}"]}
    )
    assert "<script>" not in result and "&lt;script&gt;" in result and "a&amp;b" in result
    page = parse(result)
    assert page.one(id="prediction").text == XSS and page.one("title").text == f"Predicted {XSS}"
    assert [b.attrs["data-label"] for b in page.all(class_="bar")] == [XSS, "a&b"]
    assert page.one(class_="warn").text == f"x={XSS}"

    explained = {
        "prediction": XSS,
        "probabilities": None,
        "explanation": {
            "method": XSS,
            "output": f"softmax logit of {XSS!r}",
            "base": 0.0,
            "value": 1.0,
            "contributions": {"a&b": 1.5, 'q"><b>': -0.5},
        },
    }
    result = pages.result_page(hostile, explained, {"a&b": XSS, 'q"><b>': None})
    assert "<script>" not in result and "<b>" not in result
    page = parse(result)
    assert [b.attrs["data-feature"] for b in page.all(class_="contribution")] == ["a&b", 'q"><b>']
    assert [b.one(class_="feature").text for b in page.all(class_="contribution")] == [
        f"a&b = {XSS}",
        'q"><b> = missing',
    ]
    assert page.one(id="explained").text.startswith(f"Why {XSS}: each feature's contribution to the softmax logit of")


@pytest.mark.parametrize(
    "name, choices",
    [
        ("island", [("Biscoe", False), ("Dream", True), ("Torgersen", False)]),  # required: no (missing)
        ("origin", [("", False), ("1", False), ("2", True), ("3", False)]),  # coded categories, nullable
        ("member", [("true", False), ("false", True)]),  # boolean, required
        ("promo", [("", False), ("true", False), ("false", False)]),  # boolean, nullable, no example
    ],
)
def test_categories_and_booleans_are_selects(form, name, choices):
    select = form.one("select", id=name)
    assert select.attrs["name"] == name and "required" not in select.attrs
    assert [(value, selected) for value, _, selected in options(select)] == choices
    texts = [text for _, text, _ in options(select)]
    assert texts == ["(missing)" if value == "" else value for value, _ in choices]
    assert form.one("label", **{"for": name}).text == name


@pytest.mark.parametrize(
    "name, type_, step, value, required",
    [
        ("day", "date", None, "2024-01-31", True),
        ("seen_at", "datetime-local", "1", "2024-01-31T10:30:00", False),
        ("mass", "number", "any", "3750", True),
        ("ratio", "number", "any", "", False),
    ],
)
def test_dates_and_numbers_are_typed_inputs(form, name, type_, step, value, required):
    control = form.one("input", id=name)
    assert control.attrs["name"] == name and control.attrs["type"] == type_ and control.attrs["value"] == value
    assert control.attrs.get("step") == step
    assert ("required" in control.attrs) == required
    assert not form.all("select", id=name)


def test_every_feature_has_a_label_a_control_and_a_hint_in_schema_order(form):
    fields = form.one("form", method="post", action="form")
    assert [label.attrs["for"] for label in fields.all("label")] == [f.name for f in FEATURES]
    assert [c.attrs["id"] for c in fields.all() if c.tag in ("input", "select")] == [f.name for f in FEATURES]
    assert [hint.text for hint in fields.all(class_="hint")] == [f.description for f in FEATURES]
    assert fields.one("button", id="submit").attrs["type"] == "submit"
    assert not form.all(class_="errors")


def test_submitted_values_are_kept_and_errors_listed():
    submitted = {
        "island": "Torgersen",
        "origin": "3",
        "member": "true",
        "promo": "",
        "day": "31.01.2024",
        "seen_at": "",
        "mass": "heavy",
        "ratio": "0.5",
    }
    errors = ["mass: Input should be a valid number", "day: '31.01.2024' is not a date"]
    page = parse(pages.form_page(card_of(*FEATURES), submitted, errors))
    alert = page.one(role="alert")
    assert "errors" in alert.attrs["class"].split() and "Please fix" in alert.text
    assert [li.text for li in alert.all("li")] == errors
    assert [v for v, _, s in options(page.one("select", id="island")) if s] == ["Torgersen"]
    assert [v for v, _, s in options(page.one("select", id="origin")) if s] == ["3"]
    assert [v for v, _, s in options(page.one("select", id="member")) if s] == ["true"]
    assert [v for v, _, s in options(page.one("select", id="promo")) if s] == []  # (missing), the first option
    assert (
        page.one("input", id="mass").attrs["value"] == "heavy"
        and page.one("input", id="day").attrs["value"] == "31.01.2024"
    )


def test_result_bars_are_sorted_by_probability():
    item = {"prediction": "Gentoo", "probabilities": {"Adelie": 0.1, "Gentoo": 0.7, "Chinstrap": 0.2}, "warnings": []}
    page = parse(pages.result_page(card_of(*FEATURES), item))
    assert page.one("p", id="prediction").text == "Gentoo" and "answer" in page.one(id="prediction").attrs["class"]
    bars = page.one(id="probabilities").all(class_="bar")
    assert [b.attrs["data-label"] for b in bars] == ["Gentoo", "Chinstrap", "Adelie"]
    assert [b.one(class_="fill").attrs["style"] for b in bars] == ["width:70.0%", "width:20.0%", "width:10.0%"]
    assert [b.all("span")[-1].text for b in bars] == ["70.0%", "20.0%", "10.0%"]
    assert [b.all("span")[0].text for b in bars] == ["Gentoo", "Chinstrap", "Adelie"]
    assert not page.all(class_="warn")
    assert page.one("a").attrs["href"] == "form"
    assert not page.all(id="explanation") and not page.all(class_="contribution")  # no explanation: no chart


def test_result_of_a_regression_and_of_a_boolean_label():
    warning = "mass=9000 is outside the training range [2700, 6300]"
    item = {"prediction": 12.5, "probabilities": None, "warnings": [warning]}
    regression = parse(pages.result_page(card_of(*FEATURES, target="price", task="regression"), item))
    assert regression.one(id="prediction").text == "12.5" and regression.one(id="probabilities").all() == []
    assert regression.one(class_="warn").text == warning
    boolean = parse(
        pages.result_page(card_of(*FEATURES), {"prediction": True, "probabilities": {"false": 0.4, "true": 0.6}})
    )
    assert boolean.one(id="prediction").text == "true"
    assert [b.attrs["data-label"] for b in boolean.all(class_="bar")] == ["true", "false"]


EXAMPLE = {f.name: f.example for f in FEATURES}
CONTRIBUTIONS = {  # in the schema's order, as the model side gives them
    "island": 2.31,
    "origin": -0.5,
    "member": 0.0,
    "promo": 0.1,
    "day": -3.2,
    "seen_at": 0.02,
    "mass": 1.0,
    "ratio": -0.004,
}


def explained_item(contributions: dict[str, float] = CONTRIBUTIONS, base: float = 0.12, **explanation) -> dict:
    return {
        "prediction": "a",
        "probabilities": {"a": 0.8, "b": 0.2},
        "warnings": [],
        "explanation": {
            "method": "tree_shap",
            "output": "softmax logit of 'a'",
            "base": base,
            "value": base + sum(contributions.values()),
            "contributions": contributions,
            **explanation,
        },
    }


def test_the_explanation_is_one_bar_per_feature_largest_contribution_first():
    page = parse(pages.result_page(card_of(*FEATURES), explained_item(), EXAMPLE))
    assert [b.attrs["data-label"] for b in page.one(id="probabilities").all(class_="bar")] == ["a", "b"]  # still there
    chart = page.one(id="explanation")
    assert chart.one(id="explained").text == (
        "Why a: each feature's contribution to the softmax logit of 'a' (method tree_shap), "
        "from the average of 0.12 to -0.15 for this record."
    )
    bars = chart.all(class_="contribution")
    assert [b.attrs["data-feature"] for b in bars] == [
        "day",
        "island",
        "mass",
        "origin",
        "promo",
        "seen_at",
        "ratio",
        "member",
    ]
    assert [float(b.attrs["data-contribution"]) for b in bars] == [-3.2, 2.31, 1.0, -0.5, 0.1, 0.02, -0.004, 0.0]
    # right of the axis (up) raises the output, left (down) lowers it; a zero contribution has no side
    assert [b.attrs["class"].split()[1] for b in bars] == ["down", "up", "up", "down", "up", "up", "down", "none"]
    assert [b.one(class_="amount").text for b in bars] == [
        "-3.20",
        "+2.31",
        "+1.00",
        "-0.50",
        "+0.10",
        "+0.02",
        "-0.00",
        "+0.00",
    ]
    assert [b.one(class_="feature").text for b in bars] == [
        "day = 2024-01-31",
        "island = Dream",
        "mass = 3750",
        "origin = 2",
        "promo = missing",
        "seen_at = 2024-01-31T10:30:00",
        "ratio = missing",
        "member = false",
    ]
    # half the track for the largest |contribution| (the axis is in the middle), the others in proportion
    widths = [b.one(class_="push").attrs["style"] for b in bars]
    assert widths == [f"width:{w}%" for w in ("50.0", "36.1", "15.6", "7.8", "1.6", "0.3", "0.1", "0.0")]


def test_a_regression_explanation_and_small_contributions():
    item = explained_item(
        {"mass": 0.0123, "ratio": -0.0456}, output="the predicted value", method="linear", base=3.5
    ) | {"prediction": 3.4667, "probabilities": None}
    page = parse(pages.result_page(card_of(*FEATURES, target="price", task="regression"), item))
    assert page.one(id="explained").text == (
        "Why 3.4667: each feature's contribution to the predicted value (method linear), "
        "from the average of 3.5000 to 3.4667 for this record."
    )
    bars = page.all(class_="contribution")
    assert [b.one(class_="amount").text for b in bars] == ["-0.0456", "+0.0123"]  # three significant digits
    assert [b.one(class_="feature").text for b in bars] == ["ratio", "mass"]  # no record given: names alone


@pytest.mark.parametrize(
    "explanation",
    [
        None,
        {},
        {"method": "tree_shap"},
        {"contributions": {"mass": "heavy"}},
        {"contributions": {"mass": float("nan")}},
    ],
)
def test_no_chart_without_a_readable_explanation(explanation):
    item = {"prediction": "a", "probabilities": {"a": 1.0}, "explanation": explanation}
    page = parse(pages.result_page(card_of(*FEATURES), item, EXAMPLE))
    assert page.one(id="prediction").text == "a" and not page.all(id="explanation")


class Answering:
    """The request path's predict_one for the form's route: the answer, explained when asked unless `refuse` (the
    model side could not explain after all); notes the explain option of every call."""

    def __init__(self, card: ModelCard, refuse: bool = False):
        self.versions, self.refuse, self.asked = ModelVersions(card), refuse, []

    async def predict_one(self, record, card=None, explain=(None, None)):
        self.asked.append(explain)
        item = {"prediction": "a", "probabilities": {"a": 0.8, "b": 0.2}, "warnings": [], "model": "demo:v1"}
        if explain == (None, None):
            return item, False
        if self.refuse:
            raise NotExplainable("hgb", "the explainer failed its check")
        return explained_item() | {"model": "demo:v1"}, False


@pytest.mark.parametrize(
    "explanation, refuse, asked, chart",
    [
        ({}, False, [(None, None)], False),  # a version without explanations: predicted as before
        ({"method": "tree_shap"}, False, [("true", None)], True),
        ({"method": "tree_shap"}, True, [("true", None), (None, None)], False),  # refused: the answer alone, no 500
    ],
)
def test_the_form_asks_for_an_explanation_when_the_version_has_them(explanation, refuse, asked, chart):
    card = card_of(*FEATURES, explanation=explanation)
    types = ApiTypes.from_card(card, max_records=10)
    answering = Answering(card, refuse)
    app = v1.create_app(card, types.record, types.prediction, {}, predictor=lambda: answering)
    with TestClient(app) as http:
        form = {name: "" if value is None else label_text(value) for name, value in EXAMPLE.items()}
        answer = http.post("/form", data=form)
    assert answer.status_code == 200, answer.text
    assert answering.asked == asked
    page = parse(answer.text)
    assert page.one(id="prediction").text == "a"
    assert bool(page.all(id="explanation")) == chart
    if chart:  # labelled with the submitted record's values
        assert page.all(class_="contribution")[1].one(class_="feature").text == "island = Dream"


def test_the_served_form_explains_its_answer(penguins_model):
    """The real request path in process: the form's chart is the explanation GET /v1/predict?explain=true gives."""
    with in_process_service(str(penguins_model.tag)) as client:
        explanation = client.get("/v1/model").json()["explanation"]
        assert explanation, "the penguins model is explained"
        page = parse(client.post("/v1/form", data=PENGUIN).text)
        query = "&".join(f"{k}={v}" for k, v in PENGUIN.items())
        expected = client.get(f"/v1/predict?{query}&explain=true").json()
    assert page.one(id="prediction").text == expected["prediction"] == "Gentoo"
    contributions = expected["explanation"]["contributions"]
    bars = page.one(id="explanation").all(class_="contribution")
    assert [b.attrs["data-feature"] for b in bars] == sorted(contributions, key=lambda f: -abs(contributions[f]))
    assert {b.attrs["data-feature"]: float(b.attrs["data-contribution"]) for b in bars} == contributions
    assert sorted(contributions) == sorted(PENGUIN)  # one bar per input feature
    assert {b.one(class_="feature").text for b in bars} == {  # the record's values (numbers are floats in it)
        "island = Biscoe",
        "bill_length_mm = 48.6",
        "bill_depth_mm = 16",
        "flipper_length_mm = 230",
        "body_mass_g = 5800",
        "sex = male",
        "year = 2009",
    }
    sentence = page.one(id="explained").text
    assert sentence.startswith("Why Gentoo: each feature's contribution to the ")
    assert expected["explanation"]["output"] in sentence and expected["explanation"]["method"] in sentence


def test_the_bento_packs_the_templates():
    """`bentoml build`'s own include/exclude rules, from the build options it reads, keep every template."""
    from bentoml._internal.bento.bento import DEFAULT_BENTO_BUILD_FILES
    from bentoml._internal.bento.build_config import BentoBuildConfig, BentoPathSpec

    build_file = next(ROOT / name for name in DEFAULT_BENTO_BUILD_FILES if (ROOT / name).is_file())
    config = BentoBuildConfig.from_file(str(build_file)).with_defaults()
    spec = BentoPathSpec(config.include, config.exclude, str(ROOT))
    templates = sorted(str(p.relative_to(ROOT)) for p in pages.TEMPLATES.glob("*.html"))
    assert len(templates) == 3 and all(spec.includes(t) for t in templates), templates
    assert spec.includes("tabserve/serving/api/pages.py") and not spec.includes("tabserve/training/trainer.py")
