"""The /v1/form page in a real headless Chromium (Debian's chromium + chromedriver, via Selenium):
fill the form, submit, read the result and its explanation chart, and keep screenshots in artifacts/
(docs/form.png, form-result.png and form-explanation.png are copies)."""

import pytest
import requests

from tests.conftest import ARTIFACTS, PENGUIN
from tests.served.chromium import headless_chromium

pytestmark = [pytest.mark.served, pytest.mark.browser]


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium("900,1000")


def wait_for(browser, selector):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )


def fill_and_submit(browser) -> None:
    """PENGUIN into the form on the page, submitted; returns when the answer is shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "island")).select_by_visible_text(PENGUIN["island"])
    Select(browser.find_element(By.ID, "sex")).select_by_visible_text(PENGUIN["sex"])
    for name in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"):
        field = browser.find_element(By.ID, name)
        field.clear()
        field.send_keys(str(PENGUIN[name]))
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, "#prediction")


def test_fill_submit_and_read_the_prediction(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{server.url}/v1/form")
    assert browser.title == "Predict species"
    assert browser.find_element(By.ID, "bill_length_mm").get_attribute("value") == "39.1"  # prefilled example
    assert [o.text for o in Select(browser.find_element(By.ID, "island")).options] == ["Biscoe", "Dream", "Torgersen"]
    browser.save_screenshot(str(ARTIFACTS / "form.png"))

    fill_and_submit(browser)
    expected = requests.post(f"{server.url}/predict", json=PENGUIN, timeout=30).json()
    assert browser.find_element(By.ID, "prediction").text == expected["prediction"] == "Gentoo"
    bars = browser.find_elements(By.CSS_SELECTOR, "#probabilities .bar")
    assert sorted(b.get_attribute("data-label") for b in bars) == ["Adelie", "Chinstrap", "Gentoo"]
    assert bars[0].get_attribute("data-label") == "Gentoo"  # sorted by probability
    browser.save_screenshot(str(ARTIFACTS / "form-result.png"))
    assert (ARTIFACTS / "form-result.png").stat().st_size > 1000


def test_the_answer_is_explained_by_a_bar_chart(server, browser):
    """Below the answer, each feature's contribution as a bar from the zero axis (right: raises the explained
    output, left: lowers it), the largest first, the same as GET /v1/predict?explain=true; its screenshot is
    docs/form-explanation.png's source."""
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{server.url}/v1/form")
    fill_and_submit(browser)
    chart = wait_for(browser, "#explanation")
    assert chart.is_displayed()

    explained = requests.get(f"{server.url}/v1/predict", params={**PENGUIN, "explain": "true"}, timeout=30).json()
    contributions = explained["explanation"]["contributions"]
    sentence = browser.find_element(By.ID, "explained").text
    assert sentence.startswith(f"Why {explained['prediction']}: each feature's contribution to the ")
    assert f"{explained['explanation']['output']} (method {explained['explanation']['method']})" in sentence

    bars = chart.find_elements(By.CSS_SELECTOR, ".contribution")
    features = [b.get_attribute("data-feature") for b in bars]
    assert features == sorted(contributions, key=lambda f: -abs(contributions[f])) and len(features) == len(PENGUIN)
    assert [float(b.get_attribute("data-contribution")) for b in bars] == [contributions[f] for f in features]
    assert all(b.is_displayed() for b in bars)
    # As drawn: bar lengths in the same order, each on its side of the axis, the largest half the track.
    drawn = []
    for bar, feature in zip(bars, features, strict=True):
        axis, push = bar.find_element(By.CLASS_NAME, "axis").rect, bar.find_element(By.CLASS_NAME, "push").rect
        middle = axis["x"] + axis["width"] / 2
        if contributions[feature] > 0:
            assert abs(push["x"] - middle) <= 1, (feature, push, axis)
        elif contributions[feature] < 0:
            assert abs(push["x"] + push["width"] - middle) <= 1, (feature, push, axis)
        drawn.append(push["width"])
        assert feature in bar.text and f"{contributions[feature]:+.2f}" in bar.text
    assert drawn == sorted(drawn, reverse=True) and abs(drawn[0] - axis["width"] / 2) <= 1, drawn
    browser.save_screenshot(str(ARTIFACTS / "form-explanation.png"))
    assert (ARTIFACTS / "form-explanation.png").stat().st_size > 1000


def test_invalid_form_input_is_shown_on_the_page(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/v1/form")
    year = browser.find_element(By.ID, "year")
    browser.execute_script("arguments[0].removeAttribute('required')", year)  # get past the browser's own check
    year.clear()
    browser.find_element(By.ID, "submit").click()
    alert = wait_for(browser, "[role=alert]")
    assert "year" in alert.text and "valid number" in alert.text
    assert browser.find_element(By.ID, "island").get_attribute("value") == "Torgersen"  # input kept


def test_the_training_report_of_the_served_version_in_chromium(server, browser):
    """GET /v1/models/{version}/report from the real server: every plot drawn (each image decoded by the
    browser), nothing fetched from elsewhere; its screenshot is docs/training-report.png's source."""
    from selenium.webdriver.common.by import By

    version = requests.get(f"{server.url}/v1/model", timeout=30).json()["tag"].split(":")[1]
    browser.set_window_size(1200, 1400)
    try:
        browser.get(f"{server.url}/v1/models/{version}/report")
        wait_for(browser, "figure.plot img")
        plots = {f.get_attribute("id"): f for f in browser.find_elements(By.CSS_SELECTOR, "figure.plot")}
        expected = ["confusion-matrix", "roc-curves", "precision-recall-curves", "calibration"]
        expected.append("permutation-importance")
        assert set(expected) <= set(plots)
        for name in expected:
            image = plots[name].find_element(By.TAG_NAME, "img")
            assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources == []  # self-contained: images are data URIs, no scripts, styles or fonts fetched
        rows = browser.find_elements(By.CSS_SELECTOR, "table tr")
        assert len(rows) >= 6  # the header and the five families of `--model auto`
        browser.save_screenshot(str(ARTIFACTS / "training-report.png"))
        assert (ARTIFACTS / "training-report.png").stat().st_size > 10_000
    finally:
        browser.set_window_size(900, 1000)
