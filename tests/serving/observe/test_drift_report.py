"""python -m tabserve.serving.observe.drift_report: a payload log written by the real payload log module (the
penguins, a shifted copy of them) against the model's reference; the same numbers as tabserve/core/profile.py
gives /v1/drift for the same records; the exit-2 one-liners. (tests/served/test_payload_log_served.py renders
one from a real server's log, in Chromium.)"""

import base64
import re
import subprocess
import sys
import uuid

import bentoml
import pandas as pd
import pytest

from tabserve.core import pipeline, profile, store
from tabserve.core.card import ModelCard
from tabserve.core.data import PENGUINS_CSV
from tabserve.serving.api.contract import shape
from tabserve.serving.observe import drift_report
from tabserve.serving.observe.payload_log import PayloadLog
from tests.conftest import ROOT

FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
SHIFTED = {"island", "body_mass_g"}


def penguin_records() -> list[dict]:
    frame = pd.read_csv(PENGUINS_CSV)[FEATURES]
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [
        {k: (float(v) if k.endswith(("_mm", "_g")) and v is not None else v) for k, v in r.items()} for r in records
    ]


def shifted(records: list[dict]) -> list[dict]:
    return [
        {
            **r,
            "body_mass_g": None if r["body_mass_g"] is None else r["body_mass_g"] * 1.3,
            "island": "Biscoe" if r["island"] == "Torgersen" else r["island"],
        }
        for r in records
    ]


def write_log(directory, model, records, redact=(), tag=None) -> None:
    """Records predicted by the model's pipeline, written by the payload log as the service writes them."""
    card = ModelCard.from_model(model)
    results = pipeline.predict_records(store.load_pipeline(model), card.schema, records)
    answers = [shape(r, card.schema.out_of_range(v), tag or card.tag) for r, v in zip(results, records, strict=True)]
    log = PayloadLog(
        tag or card.tag,
        card.schema.names,
        directory,
        redact=redact,
        salt="s" if redact else "",
        name=f"r{uuid.uuid4().hex[:8]}",
    )
    for i in range(0, len(records), 50):
        log.observe(records[i : i + 50], answers[i : i + 50])
    assert log.flush(60)


def run(*args: str) -> tuple[int, str, str]:
    """The CLI in-process (main), its exit code, stdout and stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = drift_report.main(list(args))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def shifted_log(penguins_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("payload-log")
    records = shifted(penguin_records())
    write_log(directory, penguins_model, records + records, redact=["sex"])  # 688 records: over DRIFT_MIN_RECORDS (500)
    return directory


def test_the_report_shows_the_shifted_features_worst_first(shifted_log, penguins_model, tmp_path):
    out = tmp_path / "report.html"
    code, printed, err = run("--log", str(shifted_log), "--out", str(out))
    assert code == 0, err
    tag = str(penguins_model.tag)
    assert printed.startswith(f"wrote {out}: {tag}, 688 records, ") and "status alert (drift in " in printed, printed
    page = out.read_text()
    assert re.search(r'id="status" class="status status-alert">alert<', page)
    assert f'<dd id="model">{tag}</dd>' in page and '<dd id="records">688</dd>' in page
    rows = re.findall(
        r'<tr data-feature="([^"]+)"><td>[^<]*</td><td><span class="status status-[a-z-]+">([a-z ]+)<', page
    )
    assert {name for name, status in rows[:2]} == SHIFTED and [status for _, status in rows[:2]] == [
        "alert",
        "alert",
    ], rows
    assert all(status == "ok" for _, status in rows[2:]) and "sex" not in dict(rows), rows
    assert "Redacted in the log (PAYLOAD_LOG_REDACT), left out: sex." in page
    charts = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(charts) == len(rows) + 1  # a chart per feature and the prediction
    assert all(base64.b64decode(c)[:8] == b"\x89PNG\r\n\x1a\n" for c in charts)
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained


def test_the_same_numbers_as_the_drift_code_gives_for_the_same_records(shifted_log, penguins_model):
    card = ModelCard.from_model(penguins_model)
    log = drift_report.read_log(shifted_log)
    report = drift_report.build(log, card.tag, card, profile.Thresholds())
    records = shifted(penguin_records()) * 2  # the typed records the service counted, before JSON
    predictions = [
        p["prediction"] for p in pipeline.predict_records(store.load_pipeline(penguins_model), card.schema, records)
    ]
    expected = profile.compare(
        card.reference, card.reference.count(records, predictions), profile.Thresholds(), card.schema
    )
    by_name = {f["name"]: f for f in expected["features"]}
    assert {f["name"] for f in report["features"]} == set(FEATURES) - {"sex"}
    for feature in report["features"]:
        assert feature["psi"] == by_name[feature["name"]]["psi"] and feature["bins"] == by_name[feature["name"]]["bins"]
    assert report["prediction"]["psi"] == expected["prediction"]["psi"]
    assert report["status"] == profile.ALERT and report["records"] == 688


def test_unshifted_traffic_reads_ok(penguins_model, tmp_path):
    write_log(tmp_path / "log", penguins_model, penguin_records() * 2)
    code, printed, err = run("--log", str(tmp_path / "log"), "--out", str(tmp_path / "r.html"))
    assert code == 0 and "status ok" in printed and "drift in" not in printed, (printed, err)


def test_bad_lines_are_counted_and_skipped(shifted_log, tmp_path):
    import shutil

    directory = tmp_path / "log"
    shutil.copytree(shifted_log, directory)
    data = next(directory.rglob("data.0.log"))
    data.write_text(data.read_text() + '{"cut": \n[1, 2]\nnot json\n')
    code, printed, err = run("--log", str(directory), "--out", str(tmp_path / "r.html"))
    assert code == 0 and err == f"warning: skipped 3 unreadable lines under {directory}\n", err
    assert "3 unreadable lines skipped." in (tmp_path / "r.html").read_text()


def one_line_error(code: int, err: str) -> str:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (code, err)
    return err[len("error: ") :].strip()


def test_problems_are_one_line_and_exit_2(shifted_log, penguins_model, tmp_path):
    out = str(tmp_path / "r.html")
    assert "no such directory" in one_line_error(*run("--log", str(tmp_path / "nowhere"), "--out", out)[::2])
    (tmp_path / "empty").mkdir()
    assert "no payload log lines" in one_line_error(*run("--log", str(tmp_path / "empty"), "--out", out)[::2])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.0.log").write_text('garbage\n{"a": 1}\n')
    assert one_line_error(*run("--log", str(tmp_path / "junk"), "--out", out)[::2]).endswith(
        "none of its 2 lines is a payload log record"
    )
    message = one_line_error(*run("--log", str(shifted_log), "--model", "penguins:nope", "--out", out)[::2])
    assert message == f"no lines for model penguins:nope in the log (it has: {penguins_model.tag} (688 lines))"
    assert not (tmp_path / "r.html").exists()


def test_several_models_need_model_and_a_model_must_be_in_the_store_with_a_reference(
    shifted_log, penguins_model, tmp_path
):
    import shutil

    directory = tmp_path / "log"
    shutil.copytree(shifted_log, directory)
    records = penguin_records()[:20]
    write_log(directory, penguins_model, records, tag="ghost:v1")
    message = one_line_error(*run("--log", str(directory), "--out", str(tmp_path / "r.html"))[::2])
    assert (
        message
        == f"the log holds 2 models: {penguins_model.tag} (688 lines), ghost:v1 (20 lines); pick one with --model"
    )
    code, printed, _ = run(
        "--log", str(directory), "--model", "penguins", "--out", str(tmp_path / "r.html")
    )  # a name picks its one version
    assert code == 0 and "688 records" in printed
    assert "The log also holds other models, not shown: ghost:v1." in (tmp_path / "r.html").read_text()
    message = one_line_error(
        *run("--log", str(directory), "--model", "ghost:v1", "--out", str(tmp_path / "r.html"))[::2]
    )
    assert message.startswith("model ghost:v1 is not in the BentoML model store (BENTOML_HOME=")

    card = ModelCard.from_model(penguins_model)
    meta = {**card.to_metadata()}
    meta.pop("reference")
    with bentoml.models.create("noref", metadata=meta) as old:
        pass
    write_log(directory, penguins_model, records, tag=str(old.tag))
    message = one_line_error(
        *run("--log", str(directory), "--model", str(old.tag), "--out", str(tmp_path / "r.html"))[::2]
    )
    assert (
        message
        == f"model {old.tag} has no drift reference: it was trained before train.py kept one; train it again to compare"
    )


def test_the_command_line_as_documented(shifted_log, tmp_path):
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "tabserve.serving.observe.drift_report", "--log", str(shifted_log), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.startswith(f"wrote {out}: ") and done.stderr == "", done.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "tabserve.serving.observe.drift_report", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and missing.stderr == "error: the following arguments are required: --log\n"
