"""Every touch of BentoML's internals (tabserve/bentoml_fixes.py): that each works, that the version
guard stops an unchecked BentoML at start (touchpoint 8 included), that TABSERVE_BENTOML_SPEEDUPS=0 leaves
out the speed-only ones (1, 2, 8) and only those, and for each touchpoint a test that fails when it can go
(upstream fixed what it works around, or moved what it reaches into): then re-measure and remove it.
tests/served/test_stock_bentoml.py runs the core contract on a server with the switch off."""

import asyncio
import inspect
import logging
import os
import shutil
import subprocess
import sys
from asyncio.selector_events import BaseSelectorEventLoop
from contextvars import ContextVar
from pathlib import Path

import bentoml
import pytest
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tabserve import bentoml_fixes
from tests.conftest import ROOT

bentoml_fixes.apply()
bentoml_fixes.apply()  # idempotent: service.py is imported in several processes and by the tests


async def answer_ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def call(middleware, scope=None, call_with=None):
    """One request through `middleware` (or `call_with(middleware, scope, receive, send)`); returns the
    statuses it sent, and the timers still pending."""
    scope = scope or {"type": "http", "method": "POST", "path": "/predict", "query_string": b"", "headers": []}

    async def scenario():
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message):
            sent.append(message)

        await (call_with(middleware, scope, receive, send) if call_with else middleware(scope, receive, send))
        pending = [h for h in asyncio.get_running_loop()._scheduled if not h.cancelled()]
        return [m["status"] for m in sent if m["type"] == "http.response.start"], pending

    return asyncio.run(scenario())


# --- the version guard --------------------------------------------------------------------------


def test_the_installed_bentoml_is_a_checked_one():
    """Upgrading the pin fails here first: read each touchpoint against the new version, then add it to CHECKED."""
    assert bentoml.__version__ in bentoml_fixes.CHECKED, (
        f"BentoML {bentoml.__version__} is not in bentoml_fixes.CHECKED {bentoml_fixes.CHECKED}: "
        "check every touchpoint against it"
    )


@pytest.mark.parametrize(
    "touchpoint",
    [
        bentoml_fixes.release_request_timers,
        bentoml_fixes.trace_requests_not_messages,
        bentoml_fixes.quiet_client_error_logs,
        bentoml_fixes.model_store_root,
        lambda: bentoml_fixes.atomic_model_version("guarded", labels={}, metadata={}).__enter__(),
        lambda: bentoml_fixes.consumer_in_access_log(ContextVar("consumer")),
        bentoml_fixes.monitor_record_vars,
        bentoml_fixes.request_ids,
        lambda: bentoml_fixes.template_endpoint_labels(lambda path: path),
        lambda: bentoml_fixes.accept_by_load(shared=lambda: True),
        bentoml_fixes.apply,
    ],
    ids=[
        "timer",
        "tracing",
        "log",
        "store-root",
        "atomic-save",
        "access-log",
        "monitor",
        "request-id",
        "metric-labels",
        "accept",
        "apply",
    ],
)
@pytest.mark.parametrize("speedups", [True, False], ids=["speedups-on", "speedups-off"])
def test_every_touchpoint_stops_on_an_unchecked_bentoml(monkeypatch, touchpoint, speedups):
    """The guard comes first, whether or not TABSERVE_BENTOML_SPEEDUPS leaves the touchpoint out."""
    monkeypatch.setattr(bentoml_fixes, "SPEEDUPS", speedups)
    monkeypatch.setattr(bentoml, "__version__", "1.5.0")
    monkeypatch.delenv(bentoml_fixes.ALLOW_UNCHECKED, raising=False)
    with pytest.raises(SystemExit) as stopped:
        touchpoint()
    message = str(stopped.value.code)
    assert "\n" not in message and message.startswith(
        "error: BentoML 1.5.0 is installed, but tabserve/bentoml_fixes.py was checked against BentoML 1.4.40"
    )
    assert bentoml_fixes.ALLOW_UNCHECKED in message


def test_the_escape_hatch_runs_an_unchecked_bentoml_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(bentoml, "__version__", "1.5.0")
    monkeypatch.setenv(bentoml_fixes.ALLOW_UNCHECKED, "1")
    monkeypatch.setattr(bentoml_fixes, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="tabserve"):
        bentoml_fixes.require_checked_bentoml()
        bentoml_fixes.require_checked_bentoml()
    assert [r.getMessage() for r in caplog.records if "running anyway" in r.getMessage()] == [
        "BentoML 1.5.0 is not one tabserve/bentoml_fixes.py was checked against (1.4.40); "
        "running anyway (TABSERVE_ALLOW_UNCHECKED_BENTOML=1)"
    ]


@pytest.mark.parametrize("entry", ["train", "service"])
def test_train_and_serve_stop_at_start_on_an_unchecked_bentoml(entry):
    """At import, before any training or model loading: one line, no traceback."""
    code = f"import bentoml; bentoml.__version__ = '1.5.0'; import {entry}"
    env = {k: v for k, v in os.environ.items() if k != bentoml_fixes.ALLOW_UNCHECKED}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: BentoML 1.5.0 is installed"), (
        result
    )


# --- the switch: TABSERVE_BENTOML_SPEEDUPS=0 leaves the speed-only touchpoints out -------------------------------


def unpatched(monkeypatch, owner, attribute):
    """BentoML's (or asyncio's) own `owner.attribute` back in place for one test (monkeypatch puts the patch
    back after it); returns it."""
    current = getattr(owner, attribute)
    monkeypatch.setattr(owner, attribute, getattr(current, bentoml_fixes._REPLACED, current))
    return getattr(owner, attribute)


SPEED_ONLY = {  # touchpoint number: (apply it, what it replaces)
    1: (bentoml_fixes.release_request_timers, TimeoutMiddleware, "__call__"),
    2: (bentoml_fixes.trace_requests_not_messages, OpenTelemetryMiddleware, "__init__"),
    8: (lambda: bentoml_fixes.accept_by_load(shared=lambda: True), BaseSelectorEventLoop, "_accept_connection"),
}


@pytest.mark.parametrize("number", sorted(SPEED_ONLY))
@pytest.mark.parametrize("speedups", [False, True], ids=["speedups-off", "speedups-on"])
def test_a_speed_only_touchpoint_is_applied_only_with_speedups_on(monkeypatch, number, speedups):
    touchpoint, owner, attribute = SPEED_ONLY[number]
    original = unpatched(monkeypatch, owner, attribute)
    monkeypatch.setattr(bentoml_fixes, "SPEEDUPS", speedups)
    touchpoint()
    touchpoint()  # idempotent either way
    now = getattr(owner, attribute)
    if speedups:
        assert now is not original and getattr(now, bentoml_fixes._REPLACED) is original
    else:
        assert now is original, f"touchpoint {number} was applied with {bentoml_fixes.SPEEDUPS_SETTING}=0"


def test_apply_with_speedups_off_leaves_bentoml_as_it_comes(monkeypatch, caplog):
    """What stock BentoML then does: the request's timer stays pending, every ASGI message gets a span."""
    original_call = unpatched(monkeypatch, TimeoutMiddleware, "__call__")
    unpatched(monkeypatch, OpenTelemetryMiddleware, "__init__")
    monkeypatch.setattr(bentoml_fixes, "SPEEDUPS", False)
    monkeypatch.setattr(bentoml_fixes, "_said_stock", False)
    with caplog.at_level(logging.INFO, logger="tabserve"):
        bentoml_fixes.apply()
        bentoml_fixes.apply()
    assert TimeoutMiddleware.__call__ is original_call
    assert len(call(TimeoutMiddleware(answer_ok, timeout=60))[1]) == 1
    statuses, spans = traced(lambda provider: OpenTelemetryMiddleware(answer_ok, tracer_provider=provider))
    assert statuses == [200] and len(spans) > 1
    said = [r.getMessage() for r in caplog.records if bentoml_fixes.SPEEDUPS_SETTING in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("TABSERVE_BENTOML_SPEEDUPS=0: "), said


def always_applied(monkeypatch, tmp_path, number):
    """Put touchpoint `number` (a correctness one) out, apply it with speedups off; whether it is in place."""
    if number == 3:
        log = logging.getLogger(bentoml_fixes.HTTP_APP_LOGGER)
        monkeypatch.setattr(log, "filters", [])
        bentoml_fixes.apply()
        return any(isinstance(f, bentoml_fixes._ClientErrorsInOneLine) for f in log.filters)
    if number == 4:
        store = tmp_path / "models"
        with bentoml_fixes.atomic_model_version("switched", labels={}, metadata={}, store_root=store) as model:
            Path(model.path_of("pipeline.joblib")).write_bytes(b"saved")
        return (store / "switched" / "latest").read_text() == model.tag.version
    if number == 5:
        log = logging.getLogger(bentoml_fixes.ACCESS_LOGGER)
        monkeypatch.setattr(log, "filters", [])
        bentoml_fixes.consumer_in_access_log(ContextVar("consumer"))
        return any(isinstance(f, bentoml_fixes._ConsumerInAccessLog) for f in log.filters)
    if number == 6:
        from bentoml._internal.monitoring.base import MON_COLUMN_VAR, MON_DATAS_VAR

        return bentoml_fixes.monitor_record_vars() == (MON_COLUMN_VAR, MON_DATAS_VAR)
    if number == 7:
        original = unpatched(monkeypatch, RunnerTrafficMetricsMiddleware, "_setup")
        bentoml_fixes.template_endpoint_labels(lambda path: path)
        return getattr(RunnerTrafficMetricsMiddleware._setup, bentoml_fixes._REPLACED, None) is original
    raise AssertionError(number)


@pytest.mark.parametrize("number", [3, 4, 5, 6, 7])
def test_a_correctness_touchpoint_is_applied_with_speedups_off(monkeypatch, tmp_path, number):
    monkeypatch.setattr(bentoml_fixes, "SPEEDUPS", False)
    assert always_applied(monkeypatch, tmp_path, number)


@pytest.mark.parametrize("value, speedups", [("0", False), ("1", True)])
def test_the_switch_is_read_from_the_environment(value, speedups):
    code = "from tabserve import bentoml_fixes; print(bentoml_fixes.SPEEDUPS)"
    env = {**os.environ, bentoml_fixes.SPEEDUPS_SETTING: value}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == str(speedups), result


def test_a_bad_switch_value_stops_with_one_line():
    env = {**os.environ, bentoml_fixes.SPEEDUPS_SETTING: "yes"}
    code = "import tabserve.bentoml_fixes"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert result.stderr.strip() == "error: TABSERVE_BENTOML_SPEEDUPS='yes' is not an integer"


def test_both_settings_are_on_the_docs_configuration_page():
    from tabserve.serving.settings import settings_markdown

    page = settings_markdown()
    section = page[page.index("### BentoML and the machine") :]
    for name in (bentoml_fixes.SPEEDUPS_SETTING, bentoml_fixes.ALLOW_UNCHECKED):
        assert f"| `{name}` |" in section, name
    assert "| `TABSERVE_BENTOML_SPEEDUPS` | `1` | `0` leaves out" in section


# --- 1. the request timer -----------------------------------------------------------------------


def test_the_request_timer_is_released_when_the_request_ends():
    """Unpatched, a 60 s timer per request kept the request's context (and tracing span) alive."""
    statuses, pending = call(TimeoutMiddleware(answer_ok, timeout=60))
    assert statuses == [200] and pending == []


def test_a_slow_request_still_gets_504():
    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    assert call(TimeoutMiddleware(slow_app, timeout=0.05))[0] == [504]


def test_upstream_still_leaks_the_request_timer():
    """BentoML's own TimeoutMiddleware.__call__ (bentoml/_internal/server/http/traffic.py) leaves its
    call_later timer pending after the request ends (no upstream issue found for it as of 1.4.40).
    When this fails, BentoML cancels it itself: `release_request_timers` can go."""
    original = getattr(TimeoutMiddleware.__call__, bentoml_fixes._REPLACED)
    statuses, pending = call(TimeoutMiddleware(answer_ok, timeout=60), call_with=lambda mw, *args: original(mw, *args))
    assert statuses == [200] and len(pending) == 1, (
        "BentoML now releases the request timer: drop release_request_timers"
    )


# --- 2. one span per request --------------------------------------------------------------------


def traced(middleware_factory):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    statuses, _ = call(middleware_factory(provider))
    return statuses, exporter.get_finished_spans()


def test_a_request_is_traced_as_one_span_not_one_per_message():
    statuses, spans = traced(lambda provider: OpenTelemetryMiddleware(answer_ok, tracer_provider=provider))
    assert statuses == [200]
    assert len(spans) == 1 and spans[0].name.startswith("POST"), [s.name for s in spans]
    assert spans[0].attributes.get("http.status_code", spans[0].attributes.get("http.response.status_code")) == 200


def test_upstream_still_traces_every_asgi_message():
    """OpenTelemetry's ASGI middleware records a span per ASGI message unless given `exclude_spans`,
    and BentoML (_bentoml_impl/server/app.py, `middlewares`) does not pass it. When this fails, one of
    them changed: `trace_requests_not_messages` can go."""
    from _bentoml_impl.server.app import ServiceAppFactory

    original = getattr(OpenTelemetryMiddleware.__init__, bentoml_fixes._REPLACED)

    def unpatched(provider):
        middleware = OpenTelemetryMiddleware.__new__(OpenTelemetryMiddleware)
        original(middleware, answer_ok, tracer_provider=provider)
        return middleware

    _, spans = traced(unpatched)
    assert len(spans) > 1, (
        "OpenTelemetry no longer records per-message spans by default: drop trace_requests_not_messages"
    )
    assert "exclude_spans" not in inspect.getsource(ServiceAppFactory.middlewares.fget), (
        "BentoML now sets exclude_spans itself"
    )


# --- 3. invalid requests logged in one line ---------------------------------------------------


def test_a_validation_error_logged_by_bentoml_is_one_warning_line():
    """BentoML's app logs a request's exception with `log_exception` on the private logger
    `bentoml._internal.server.http_app`: for a pydantic ValidationError that is one WARNING line here.
    When this fails on a new version, the logger moved (the filter then does nothing): follow it."""
    from _bentoml_impl.server import app as bentoml_app
    from bentoml._internal.server import http_app
    from pydantic import BaseModel

    assert bentoml_app.log_exception is http_app.log_exception and http_app.logger.name == bentoml_fixes.HTTP_APP_LOGGER

    class Input(BaseModel):
        year: int

    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(logging.Formatter("%(levelname)s %(message)s").format(record))

    handler = Collect()
    http_app.logger.addHandler(handler)
    try:
        request = type("Request", (), {"url": type("URL", (), {"path": "/predict"})(), "method": "POST"})()
        try:
            Input.model_validate({"year": "soon"})
        except Exception:
            http_app.log_exception(request)
    finally:
        http_app.logger.removeHandler(handler)
    assert lines == [
        "WARNING Exception on /predict [POST]: invalid input answered 400 "
        "(year: Input should be a valid integer, unable to parse string as an integer)"
    ]


# --- 4. the model store: atomic saves -----------------------------------------------------------


def interrupt_copies_into(monkeypatch, folder: Path):
    """Ctrl-C (train.py turns SIGTERM into the same) right after the first file is copied into `folder`."""
    real_copyfile = shutil.copyfile

    def copy_then_interrupt(src, dst, *args, **kwargs):
        result = real_copyfile(src, dst, *args, **kwargs)
        if Path(dst).resolve().is_relative_to(folder.resolve()):
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(shutil, "copyfile", copy_then_interrupt)


def test_upstream_create_alone_leaves_a_partial_version_when_interrupted(tmp_path, monkeypatch):
    """Why the staging exists. `bentoml.models.create` writes the version in a temporary folder, then
    `Model.save` copies it into the store file by file; `ModelStore.register` removes the partial copy
    only on an Exception, not on KeyboardInterrupt. Measured with train.py and real SIGINT/SIGTERM: a
    version holding model.yaml alone, listed by `bentoml.models.list()`, resolved by `name:latest`.
    (Upstream: bentoml/BentoML pull request #4078, closed, proposed removing it on KeyboardInterrupt.)
    When this fails, measure again: if an interrupted save leaves nothing, `atomic_model_version` can
    become `bentoml.models.create`."""
    from bentoml._internal.models import ModelStore

    store = tmp_path / "models"
    store.mkdir()
    interrupt_copies_into(monkeypatch, store)
    with pytest.raises(KeyboardInterrupt):
        with bentoml.models.create("partial", _model_store=ModelStore(store)) as model:
            Path(model.path_of("pipeline.joblib")).write_bytes(b"x" * 1000)
    assert [p.name for p in (store / "partial").iterdir()] == [model.tag.version], (
        "BentoML no longer leaves a partial version"
    )


def test_an_interrupted_save_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    store = tmp_path / "models"
    with bentoml_fixes.atomic_model_version("kept", labels={}, metadata={}, store_root=store) as model:
        Path(model.path_of("pipeline.joblib")).write_bytes(b"first")
    before = sorted(str(p.relative_to(store)) for p in store.rglob("*"))

    interrupt_copies_into(monkeypatch, tmp_path)  # the copy into the staging store, beside `store`
    with pytest.raises(KeyboardInterrupt):
        with bentoml_fixes.atomic_model_version("kept", labels={}, metadata={}, store_root=store) as model:
            Path(model.path_of("pipeline.joblib")).write_bytes(b"second")
    assert sorted(str(p.relative_to(store)) for p in store.rglob("*")) == before
    assert list((tmp_path / bentoml_fixes.STAGING_DIR).iterdir()) == []


def test_a_saved_version_is_in_the_layout_bentoml_reads(tmp_path):
    """The hand-written publish (<store>/<name>/<version>/, then `latest`) is what BentoML's own store reads."""
    from bentoml._internal.models import ModelStore

    store = tmp_path / "models"
    tags = []
    for content in (b"one", b"two"):
        with bentoml_fixes.atomic_model_version(
            "laid_out", labels={"a": "b"}, metadata={"n": 1}, store_root=store
        ) as model:
            Path(model.path_of("pipeline.joblib")).write_bytes(content)
        tags.append(model.tag)
    bentoml_store = ModelStore(store)
    assert sorted(str(m.tag) for m in bentoml_store.list()) == sorted(str(t) for t in tags)
    latest = bentoml_store.get("laid_out:latest")
    assert latest.tag == tags[-1] and latest.info.labels == {"a": "b"} and latest.info.metadata == {"n": 1}
    assert Path(latest.path_of("pipeline.joblib")).read_bytes() == b"two"
    assert list((tmp_path / bentoml_fixes.STAGING_DIR).iterdir()) == []


def test_the_store_folder_is_bentomls(bentoml_home):
    assert bentoml_fixes.model_store_root() == bentoml_home / "models"


def test_the_request_metrics_labelled_by_path_are_still_set_up_in_one_place():
    """Touchpoint 7 wraps the three metrics RunnerTrafficMetricsMiddleware._setup makes and labels by endpoint."""
    import inspect

    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    source = inspect.getsource(RunnerTrafficMetricsMiddleware)
    for name in ("metrics_request_total", "metrics_request_duration", "metrics_request_in_progress"):
        assert f"self.{name} = " in source and f"self.{name}.labels(" in source
    assert 'endpoint = scope["path"]' in source  # the raw path it labels with


# --- 8. connections shared by load --------------------------------------------------------------


class Holding:
    """Stands in for the asyncio server of a worker that holds `connections` open connections."""

    def __init__(self, connections: int) -> None:
        self._active_count = connections

    def is_serving(self) -> bool:
        return True

    def _attach(self) -> None:
        self._active_count += 1

    def _detach(self) -> None:
        self._active_count -= 1


def accepted(accept, server) -> tuple[int, list[float], tuple[int, bool]]:
    """Three clients wait in a listening socket's queue. One wake-up of the loop's accept handler
    (`accept(loop, factory, listener, server)`): how many it took at once; the delays of what it put off
    (call_later, captured); and how many it had taken once those ran, with the socket listened to again."""
    import socket

    class Kept(asyncio.Protocol):
        def connection_made(self, transport):
            transports.append(transport)

    transports: list = []
    put_off: list = []
    loop = asyncio.new_event_loop()
    loop.call_later = lambda delay, callback, *args, **kw: put_off.append((delay, callback, args))  # run by hand below
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(3)]
    try:
        accept(loop, Kept, listener, server)
        loop.run_until_complete(asyncio.sleep(0))  # the accepted connections' set-up
        at_once = len(transports)
        for _, callback, args in put_off:
            callback(*args)
        loop.run_until_complete(asyncio.sleep(0))
        listening = loop._selector.get_map().get(listener.fileno()) is not None
        loop.remove_reader(listener.fileno()) if listening else None
        return at_once, [delay for delay, _, _ in put_off], (len(transports), listening)
    finally:
        for transport in transports:
            transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        listener.close()
        for client in clients:
            client.close()


def test_a_worker_holding_no_connection_takes_one_at_once():
    bentoml_fixes.accept_by_load(shared=lambda: True)
    assert accepted(
        lambda loop, factory, sock, server: loop._accept_connection(factory, sock, None, server), Holding(0)
    ) == (1, [], (1, False))


def test_a_worker_holding_connections_takes_one_only_after_a_pause():
    """k connections held: k ms for another worker (on the same socket) to take it first, then one; listened to
    again, the socket still has two waiting, so the next is put off by k + 1 ms."""
    bentoml_fixes.accept_by_load(shared=lambda: True)

    def wake(loop, factory, sock, server):
        loop._add_reader(sock.fileno(), loop._accept_connection, factory, sock, None, server, 100)  # as serving does
        loop._accept_connection(factory, sock, None, server)

    assert accepted(wake, Holding(3)) == (0, [0.003, 0.004], (1, False))


def test_a_service_with_one_worker_accepts_as_asyncio_does():
    """Nobody else listens on its socket: no pause, every waiting connection at once."""
    bentoml_fixes.accept_by_load(shared=lambda: False)
    try:
        assert accepted(
            lambda loop, factory, sock, server: loop._accept_connection(factory, sock, None, server), Holding(3)
        ) == (3, [], (3, False))
    finally:
        bentoml_fixes.accept_by_load(shared=lambda: True)


def test_upstream_asyncio_still_takes_every_waiting_connection_at_once():
    """asyncio's own _accept_connection takes up to `backlog` (100) connections per wake-up, whatever the worker
    holds. When this fails, asyncio shares them itself: `accept_by_load` can go."""
    bentoml_fixes.accept_by_load(shared=lambda: True)
    original = getattr(BaseSelectorEventLoop._accept_connection, bentoml_fixes._REPLACED)
    assert accepted(lambda loop, factory, sock, server: original(loop, factory, sock, None, server), Holding(3)) == (
        3,
        [],
        (3, False),
    )
