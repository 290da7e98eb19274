"""The payload log in-process (tabserve/serving/observe/payload_log.py): the line's fields, sampling, redaction,
and writes that fail (a directory under a regular file, a full disk) without raising, counted and said once."""

import json
import logging
import os
import random
import time
import uuid
from pathlib import Path

import prometheus_client
import pytest
from bentoml._internal.context import trace_context

from tabserve.serving.observe import payload_log
from tabserve.serving.observe.payload_log import PayloadLog, PayloadLogError, redaction_hash

FEATURES = ["island", "bill_length_mm", "sex", "year"]
RECORD = {"island": "Biscoe", "bill_length_mm": 48.6, "sex": "male", "year": 2009}
ANSWER = {"prediction": "Gentoo", "probabilities": {"Adelie": 0.0, "Chinstrap": 0.0, "Gentoo": 1.0}, "warnings": []}
FIELDS = [
    "timestamp",
    "request_id",
    "trace_id",
    "model",
    "route",
    "latency_ms",
    "inputs",
    "prediction",
    "probabilities",
    "warnings",
    "redacted",
]


def new_log(directory, **options) -> PayloadLog:
    # bentoml.monitor keeps one monitor per name and process: a name per test keeps their directories apart
    return PayloadLog("penguins:v1", FEATURES, directory, name=f"t{uuid.uuid4().hex[:8]}", **options)


def lines(log: PayloadLog) -> list[dict]:
    assert log.flush(30)
    files = (
        sorted((log.directory / log.name / "data").glob("data.*.log")) if (log.directory / log.name).exists() else []
    )
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def errors(reason: str = "write") -> float:
    return prometheus_client.REGISTRY.get_sample_value("tabserve_payload_log_errors_total", {"reason": reason}) or 0.0


def test_a_line_per_record_with_the_documented_fields(tmp_path):
    log = new_log(tmp_path)
    token = payload_log._REQUEST.set(("/predict_batch", time.perf_counter() - 0.005))
    trace_context.request_id = 0x1234ABCD  # (the trace id comes from the current span: none here)
    try:
        log.observe([RECORD, {**RECORD, "year": 2008}], [ANSWER, {**ANSWER, "warnings": ["year below range"]}])
    finally:
        payload_log._REQUEST.reset(token)
        trace_context.request_id = None
    log.observe([RECORD], [ANSWER])  # outside a request
    found = lines(log)
    assert len(found) == 3 and all(list(line) == FIELDS for line in found), found[0]
    first, second, outside = found
    assert first["model"] == "penguins:v1" and first["route"] == "/predict_batch"
    assert first["request_id"] == "000000001234abcd" and first["trace_id"] is None
    assert first["latency_ms"] >= 5 and first["latency_ms"] == second["latency_ms"]  # the request's, per record
    assert first["inputs"] == RECORD and second["inputs"]["year"] == 2008
    assert first["prediction"] == "Gentoo" and first["probabilities"] == ANSWER["probabilities"]
    assert second["warnings"] == ["year below range"] and first["redacted"] == []
    assert first["timestamp"].endswith("+00:00")
    assert outside["route"] is None and outside["latency_ms"] is None and outside["request_id"] is None
    schema = (tmp_path / log.name / "schema" / "schema.0.log").read_text().splitlines()
    assert len(schema) == 1 and [c["name"] for c in json.loads(schema[0])["columns"]] == FIELDS


def test_sampling_keeps_none_all_or_about_the_share(tmp_path):
    records, answers = [RECORD] * 400, [ANSWER] * 400
    none = new_log(tmp_path / "none", sample=0.0)
    none.observe(records, answers)
    assert lines(none) == []
    every = new_log(tmp_path / "all", sample=1.0)
    for i in range(0, 400, 100):
        every.observe(records[i : i + 100], answers[i : i + 100])
    assert len(lines(every)) == 400
    half = new_log(tmp_path / "half", sample=0.5, rng=random.Random(7))
    for record, answer in zip(records, answers, strict=True):
        half.observe([record], [answer])  # per record, also one at a time
    kept = len(lines(half))
    assert 150 < kept < 250, kept
    again = new_log(tmp_path / "again", sample=0.5, rng=random.Random(7))
    again.observe(records, answers)
    assert len(lines(again)) == kept  # the same draws per record, whether records come alone or together
    with pytest.raises(PayloadLogError, match="between 0 and 1"):
        new_log(tmp_path, sample=1.5)


def test_redacted_features_are_keyed_hashes_the_same_per_value(tmp_path):
    log = new_log(tmp_path, redact=["sex", "bill_length_mm"], salt="deployment-secret")
    log.observe(
        [RECORD, {**RECORD, "island": "Dream"}, {**RECORD, "sex": "female", "bill_length_mm": None}], [ANSWER] * 3
    )
    first, second, third = lines(log)
    for line in (first, second, third):
        assert line["redacted"] == ["sex", "bill_length_mm"]
        assert (
            line["inputs"]["sex"].startswith("hmac-sha256:") and len(line["inputs"]["sex"]) == len("hmac-sha256:") + 16
        )
        assert "male" not in json.dumps(line["inputs"]) and "48.6" not in json.dumps(line["inputs"])
    assert first["inputs"]["island"] == "Biscoe" and second["inputs"]["island"] == "Dream"  # others as they are
    assert first["inputs"]["sex"] == second["inputs"]["sex"] != third["inputs"]["sex"]  # one value, one hash
    assert third["inputs"]["bill_length_mm"].startswith("hmac-sha256:")  # a missing value too
    assert (
        first["inputs"]["sex"]
        == redaction_hash("male", "deployment-secret")
        != redaction_hash("male", "another-secret")
    )


def test_settings_it_cannot_use_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(PayloadLogError) as unknown:
        new_log(tmp_path, redact=["sex", "colour"], salt="s")
    assert str(unknown.value) == (
        "PAYLOAD_LOG_REDACT names 'colour', not a feature of model penguins:v1; "
        "its features: island, bill_length_mm, sex, year"
    )
    with pytest.raises(PayloadLogError, match="needs PAYLOAD_LOG_SALT"):
        new_log(tmp_path, redact=["sex"])

    from tabserve.serving import settings as config

    class Card:  # what install reads of the served ModelCard
        tag = "penguins:v1"
        schema = type("Schema", (), {"names": FEATURES})()

    class Service:
        middlewares: list = []

        @classmethod
        def add_asgi_middleware(cls, middleware, **options):
            cls.middlewares.append(middleware)

    monkeypatch.setattr(payload_log, "_log", None)
    monkeypatch.setattr(config, "PAYLOAD_LOG", True)
    monkeypatch.setattr(config, "PAYLOAD_LOG_DIR", str(tmp_path))
    monkeypatch.setattr(config, "PAYLOAD_LOG_REDACT", ["colour"])
    with pytest.raises(SystemExit) as stopped:
        payload_log.install(Service, Card)
    assert str(stopped.value).startswith("error: PAYLOAD_LOG_REDACT names 'colour'") and "\n" not in str(stopped.value)
    assert Service.middlewares == []
    monkeypatch.setattr(config, "PAYLOAD_LOG_REDACT", [])
    installed = payload_log.install(Service, Card)
    assert installed is payload_log._log and Service.middlewares == [payload_log.RequestStamp]
    monkeypatch.setattr(config, "PAYLOAD_LOG", False)
    assert payload_log.install(Service, Card) is None


def failing_writes(log: PayloadLog, caplog, capfd, times: int = 3) -> tuple[float, list[str]]:
    before = errors()
    with caplog.at_level(logging.INFO, logger="tabserve"):
        for _ in range(times):
            log.observe([RECORD, RECORD], [ANSWER, ANSWER])  # never raises
            assert log.flush(30)
    said = [r.getMessage() for r in caplog.records if r.name == "tabserve"]
    assert capfd.readouterr().err == ""  # no traceback from logging's handleError
    return errors() - before, said


def test_a_directory_that_cannot_be_made_never_fails_a_prediction(tmp_path, caplog, capfd):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    log = new_log(blocker / "payload")  # its parent is a regular file: even root cannot create it
    counted, said = failing_writes(log, caplog, capfd)
    assert counted == 6
    assert (
        len(said) == 1 and said[0].startswith(f"payload log: cannot write to {log.directory}: ") and "\n" not in said[0]
    ), said
    assert "tabserve_payload_log_errors_total" in said[0]


@pytest.mark.skipif(not os.access("/dev/full", os.W_OK), reason="no writable /dev/full to stand in for a full disk")
def test_a_full_disk_never_fails_a_prediction_and_writing_resumes(tmp_path, caplog, capfd):
    log = new_log(tmp_path)
    data = tmp_path / log.name / "data"
    data.mkdir(parents=True)
    (data / "data.0.log").symlink_to("/dev/full")  # every write: ENOSPC, "No space left on device"
    counted, said = failing_writes(log, caplog, capfd)
    assert counted == 6 and len(said) == 1 and "No space left on device" in said[0], said
    (data / "data.0.log").unlink()  # space again
    with caplog.at_level(logging.INFO, logger="tabserve"):
        log.observe([RECORD], [ANSWER])
        assert log.flush(30)
    assert [r.getMessage() for r in caplog.records if r.name == "tabserve"][
        -1
    ] == f"payload log: writing to {log.directory} again"
    assert [line["inputs"] for line in lines(log)] == [RECORD]


def test_a_backlog_beyond_the_queue_is_dropped_and_counted(tmp_path):
    log = new_log(tmp_path, queue_size=1)
    log._thread = object()  # no writer: the queue fills
    before = errors("backlog")
    log.observe([RECORD], [ANSWER])
    log.observe([RECORD, RECORD], [ANSWER, ANSWER])
    assert errors("backlog") - before == 2 and log.queue.qsize() == 1


def test_the_bentoml_internals_it_adjusts_are_still_there():
    """payload_log.PayloadMonitor overrides these; on a new BentoML, read them again."""
    import inspect

    from bentoml._internal.monitoring import base
    from bentoml.monitoring import DefaultMonitor

    assert "dictConfig" in inspect.getsource(DefaultMonitor._init_logger)  # why: it closes every handler of the process
    assert "str(trace_context.request_id)" in inspect.getsource(
        DefaultMonitor.export_data
    )  # why: decimal, not the header's hex
    assert isinstance(base.MON_DATAS_VAR.get(), type(None)) and base.MON_COLUMN_VAR.get() is None
    assert Path(inspect.getsourcefile(DefaultMonitor)).name == "default.py"
