"""Every place this project touches BentoML's internals (private modules, attributes, logger names,
the model store's layout), each behind one version guard, and which of them stock BentoML can do without.

The guard: each touchpoint was read and tested against the BentoML versions in CHECKED. On any other
version `require_checked_bentoml()` stops the process at start with one line (service.py calls it
through `apply()`, train.py through importing tabserve/core/store.py; every touchpoint, 8 included, calls it
too), instead of a patch silently replacing code that has changed. To upgrade BentoML: run
tests/test_bentoml_fixes.py against it, read each touchpoint's code again, then add the version to CHECKED.
TABSERVE_ALLOW_UNCHECKED_BENTOML=1 runs on an unchecked version anyway, with a warning (for trying an
upgrade, not for production).

The switch: a touchpoint marked "speed" below changes no answer, no stored model, no metric and no log
line, only memory, CPU or how connections spread over workers. TABSERVE_BENTOML_SPEEDUPS=0 (default 1)
leaves them out: there the server runs on BentoML's and asyncio's own code, e.g. to tell whether a problem is
ours or theirs. tests/served/test_stock_bentoml.py runs the core contract (endpoints, error shape, batching,
versions) on a server started so. A touchpoint marked "correctness" is always applied: without it an
interrupted save, /metrics, a log line or the payload log would be wrong.

Reviewed against BentoML 1.4.40's public API and configuration (service config `logging`, `metrics`,
`tracing`, `traffic`, `runner_connection`, `bentoml.monitor`, `bentoml.server_context`): none of the eight
has a public replacement yet, so none was removed; the reason is given per touchpoint. Where public
configuration does the job it is used instead, outside this file: `runner_connection` on ModelService
(service.py) keeps one connection pool, against the ServerDisconnected errors of bentoml/BentoML#4238; and
tabserve/serving/observe/metrics.py reads the worker index from `bentoml.server_context`, not
bentoml._internal. Upstream issues were searched for in BentoML's tracker (and OpenTelemetry's, for 2).

    #  touchpoint                   kind         upstream issue
    1  release_request_timers       speed        no upstream issue found
    2  trace_requests_not_messages  speed        open-telemetry/opentelemetry-python-contrib#2802 (open)
    3  quiet_client_error_logs      correctness  no upstream issue found
    4  atomic_model_version         correctness  bentoml/BentoML#4078 (pull request, closed unmerged)
    5  consumer_in_access_log       correctness  no upstream issue found
    6  the payload log's monitor    correctness  bentoml/BentoML#4770 (open; related)
    7  template_endpoint_labels     correctness  no upstream issue found
    8  accept_by_load               speed        bentoml/BentoML#5426 (open); pull request #5557 (closed)

Each has a test in tests/test_bentoml_fixes.py that fails when it can go; in detail:

1. `release_request_timers`, speed (memory and tail latency; measured profiling the benchmark, bench/README.md
   "Findings" 5). Patches TimeoutMiddleware.__call__ (bentoml._internal.server.http.traffic): it schedules
   `loop.call_later(timeout, ...)` for every request and never cancels it, so each request's waiter and
   context (its tracing span and all they reference) stay alive for the whole traffic timeout, 60 s. Under
   load that was ~300 MB of extra memory in the entry worker and a full garbage collection of 100-250 ms
   every second or so (with gc.freeze() at start, it took p99 300 -> 70 ms, 714 -> 860 req/s). Bounded
   (timeout x request rate): no answer changes without it. The replacement is the same code plus the cancel.
   No public alternative: `traffic.timeout` must be > 0 and the middleware cannot be left out. No upstream
   issue found
   (bentoml/BentoML#4760 reports memory growth under load since 1.2 without a cause; not confirmed the same).
2. `trace_requests_not_messages`, speed (CPU). Patches OpenTelemetryMiddleware.__init__ (OpenTelemetry's, as
   BentoML sets it up in _bentoml_impl/server/app.py): it records a child span for every ASGI message
   (request body received, response start, response body) beside the request's own span, about a quarter
   of the entry worker's CPU at 32 clients (680-690 -> 800-944 req/s, "Findings" 6). The request span and
   its trace id (in the access log) stay; the per-message spans go (`exclude_spans`). No public
   alternative: BentoML passes no `exclude_spans` and has no setting for it; `tracing.excluded_urls` drops
   the request span too (and with it the X-BentoML-Request-ID the payload log records). Upstream:
   open-telemetry/opentelemetry-python-contrib#2802 (open: environment variables to leave those spans out)
   and #3725 (the same for Starlette); no BentoML issue found.
3. `quiet_client_error_logs`, correctness (of the logs). BentoML logs every invalid request as an ERROR
   with a full traceback (`log_exception`, through the private logger `bentoml._internal.server.http_app`);
   it is the client's mistake, already answered 400, so here it is one WARNING line naming the first
   problem, and an operator's ERROR alert means a server fault. No public alternative: BentoML's `logging`
   config covers the access log only. No upstream issue found.
4. `atomic_model_version`, correctness (the model store). BentoML copies a new version into the store file
   by file and cleans up only on an Exception, so a SIGINT/SIGTERM (KeyboardInterrupt) mid-copy leaves a
   partial version that `bentoml.models.list()` shows and `name:latest` resolves to (measured with
   bentoml.models.create alone). Here the version is saved into a staging store beside the real one
   (private: BentoMLContainer, ModelStore, its `_path`, `create(_model_store=...)`) and published by one
   rename into the store's layout (<store>/<name>/<version>/, then the `latest` file). No public
   alternative: `bentoml.models.create` takes no store and has no atomic mode. Upstream:
   bentoml/BentoML#4078 (pull request, closed unmerged, proposed cleaning up on KeyboardInterrupt).
5. `consumer_in_access_log`, correctness (a feature: who made each request). The consumer (team) whose key a
   request carried, in BentoML's access log line (`... 3.1ms (consumer=fraud-team) (trace=...)`). BentoML
   writes that line through the logger `bentoml.access` (bentoml._internal.server.http.access
   .AccessLogMiddleware, format "%s (%s) (%s) %.3fms"); a filter on that logger appends the consumer the gate
   put in a context variable. One line per request, as before, rather than a second line of our own per
   request. No public alternative: `logging.access` only switches BentoML's own fields on and off and
   formats its trace ids. No upstream issue found.
6. The payload log's monitor (`PayloadMonitor` in tabserve/serving/observe/payload_monitor.py, a `bentoml.monitor`
   class), correctness: it overrides DefaultMonitor's private `_init_logger` (BentoML's runs
   `logging.config.dictConfig`, which closes every logging handler of the process, and prints a traceback
   per failed write) and fills the record being built through the context variables of
   bentoml._internal.monitoring.base (`monitor_record_vars`); each line carries the request id BentoML's
   `X-BentoML-Request-ID` header shows, from bentoml._internal.context (`request_ids`; not in
   `bentoml.server_context`). Upstream: bentoml/BentoML#4770 (open: logging set up around a monitor does not
   apply; related). Tested in tests/serving/observe/test_payload_log.py.
7. `template_endpoint_labels`, correctness (/metrics). BentoML's HTTP metrics
   (bentoml._internal.server.http.instruments, RunnerTrafficMetricsMiddleware, which 1.4 services use) label
   every request with its raw path, so each entity id (/v1/entities/42/predict), feature name or random 404
   path became series of its own on /metrics, without bound, and a path with a control character broke the
   exposition for Prometheus' parser. Here the three metrics it labels are wrapped so `endpoint` is the route
   template (or "other"). No public alternative: `metrics` config sets the namespace and buckets only, and
   `metrics.enabled=false` drops /metrics. No upstream issue found.
8. `accept_by_load`, speed (throughput; measured on bulk calls, bench/README.md "Findings" 14): the workers of
   `bentoml serve` share one listening socket (the arbiter's, passed to each by its descriptor); a new
   connection wakes every worker's event loop and the same one tends to win the accept(), however many
   connections it holds. With 4 keep-alive clients, one worker held all 4 in 3 runs of 4
   (`tabserve_worker_requests_total` showed one worker) and served half the rows/s of an even split. Here a
   worker holding k open connections (the asyncio server's `_active_count`) waits k ms before it takes one,
   so the worker with the fewest takes it first; a service with one worker accepts as asyncio does
   (service.py says which service this worker serves, from `bentoml.server_context`). (Python's asyncio, not
   BentoML: `BaseSelectorEventLoop._accept_connection`, `Server._active_count`; behind the same guard, since
   it answers how `bentoml serve` shares the socket.) No public alternative: BentoML has no per-worker
   `SO_REUSEPORT`. Upstream: bentoml/BentoML#5426 (open: uneven request distribution across workers) and
   pull request #5557 (closed: SO_REUSEPORT per worker). tests/served/test_layouts.py checks four keep-alive
   clients reach both workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import bentoml

from tabserve.core.config import declare, integer
from tabserve.core.errors import pydantic_detail

CHECKED = ("1.4.40",)  # the BentoML versions every touchpoint below was read and tested against
SECTION = "BentoML and the machine"  # where the docs' configuration page lists the settings below
ALLOW_UNCHECKED = "TABSERVE_ALLOW_UNCHECKED_BENTOML"  # read when the guard runs (require_checked_bentoml)
declare(
    ALLOW_UNCHECKED, "unset", section=SECTION,
    meaning="`1` runs on a BentoML version tabserve/bentoml_fixes.py was not checked against, with a warning"
    " (for trying an upgrade, not for production); otherwise such a version stops train.py and the server at start",
)  # fmt: skip
SPEEDUPS_SETTING = "TABSERVE_BENTOML_SPEEDUPS"
# Read once, at import (as every setting is); the speed-only touchpoints look at it when they are applied.
SPEEDUPS: bool = integer(
    SPEEDUPS_SETTING, 1, section=SECTION,
    meaning="`0` leaves out the patches of BentoML and asyncio that only save memory or CPU or spread connections"
    " over workers (touchpoints 1, 2 and 8 of tabserve/bentoml_fixes.py): BentoML as it comes there, e.g. to tell"
    " whether a problem is ours or BentoML's. Those needed for correct answers, the model store, logs and"
    " `/metrics` stay",
) > 0  # fmt: skip
HTTP_APP_LOGGER = "bentoml._internal.server.http_app"  # where BentoML logs a request's exception
ACCESS_LOGGER = "bentoml.access"  # where BentoML's AccessLogMiddleware writes one line per request
STAGING_DIR = ".tabserve-staging"  # beside the model store folder: same filesystem, so one rename publishes

_APPLIED = "_tabserve_patched"
_REPLACED = (
    "_tabserve_replaces"  # the patched function keeps the original: the tests check upstream still needs the patch
)
_warned = False
_said_stock = False  # apply() says once per process that the speed-only touchpoints are off
logger = logging.getLogger("tabserve")


def require_checked_bentoml() -> None:
    """SystemExit with one line unless the installed BentoML is one the touchpoints were checked against."""
    global _warned
    version = bentoml.__version__
    if version in CHECKED:
        return
    if os.environ.get(ALLOW_UNCHECKED) == "1":
        if not _warned:
            _warned = True
            logger.warning(
                "BentoML %s is not one tabserve/bentoml_fixes.py was checked against (%s); running anyway (%s=1)",
                version,
                ", ".join(CHECKED),
                ALLOW_UNCHECKED,
            )
        return
    raise SystemExit(
        f"error: BentoML {version} is installed, but tabserve/bentoml_fixes.py was checked against BentoML "
        f"{', '.join(CHECKED)} only: install that version, or run tests/test_bentoml_fixes.py against {version} "
        f"and add it to CHECKED ({ALLOW_UNCHECKED}=1 runs anyway)"
    )


def apply() -> None:
    """Apply the HTTP-stack touchpoints (service.py, in every worker; accept_by_load is applied there too, with
    the worker counts); idempotent. With TABSERVE_BENTOML_SPEEDUPS=0 the speed-only ones are left out."""
    require_checked_bentoml()
    release_request_timers()
    trace_requests_not_messages()
    quiet_client_error_logs()
    global _said_stock
    if not SPEEDUPS and not _said_stock:
        _said_stock = True
        logger.warning(
            "%s=0: BentoML's request timer, per-message tracing spans and asyncio's accept run unpatched "
            "(tabserve/bentoml_fixes.py, touchpoints 1, 2 and 8): more memory and CPU per request under load",
            SPEEDUPS_SETTING,
        )


ACCEPT_STEP_S = 0.001  # accept_by_load: the pause per connection a worker holds (at most 20 of them)
_accepting: dict[str, Callable[[], bool]] = {}  # accept_by_load's `shared`, set by its latest call


def open_connections(server: Any) -> int:
    """The connections an asyncio server holds now (its private count of attached transports)."""
    return getattr(server, "_active_count", 0) or 0


def accept_by_load(shared: Callable[[], bool] = lambda: True) -> None:
    """Each wake-up of the listening socket: a worker holding k open connections waits k * ACCEPT_STEP_S (k at
    most 20), then takes one connection (if another worker has not); one holding none takes one at once
    (touchpoint 8, speed). Where `shared()` is false (a service with one worker: nobody else to take it), asyncio's
    own accept runs. Patches once; a later call changes only `shared`. Behind the version guard like the rest (it
    answers how `bentoml serve` shares its socket); not applied with TABSERVE_BENTOML_SPEEDUPS=0."""
    require_checked_bentoml()
    if not SPEEDUPS:
        return
    from asyncio.selector_events import BaseSelectorEventLoop

    _accepting["shared"] = shared
    original = BaseSelectorEventLoop._accept_connection
    if getattr(original, _APPLIED, False):
        return

    def _accept_connection(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100, *args):
        if not _accepting["shared"]():
            return original(self, protocol_factory, sock, sslcontext, server, backlog, *args)
        busy = open_connections(server)
        if not busy:
            return original(self, protocol_factory, sock, sslcontext, server, 1, *args)
        if not self._remove_reader(sock.fileno()):
            return None

        def take_one_then_listen() -> None:
            if sock.fileno() == -1 or (server is not None and not server.is_serving()):
                return  # the server closed meanwhile (shutdown): nothing to resume
            original(self, protocol_factory, sock, sslcontext, server, 1, *args)
            self._start_serving(protocol_factory, sock, sslcontext, server, backlog, *args)

        self.call_later(min(busy, 20) * ACCEPT_STEP_S, take_one_then_listen)
        return None

    setattr(_accept_connection, _APPLIED, True)
    setattr(_accept_connection, _REPLACED, original)
    BaseSelectorEventLoop._accept_connection = _accept_connection


def release_request_timers() -> None:
    """Cancel each request's timeout timer when the request ends (touchpoint 1, speed: memory and tail latency);
    idempotent; not applied with TABSERVE_BENTOML_SPEEDUPS=0."""
    require_checked_bentoml()
    if not SPEEDUPS:
        return
    from bentoml._internal.server.http.traffic import TimeoutMiddleware
    from starlette.responses import JSONResponse

    if getattr(TimeoutMiddleware.__call__, _APPLIED, False):
        return

    async def __call__(self: Any, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: dict) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send))
        try:
            await waiter
        except TimeoutError:
            if task.cancel():
                answer = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(answer, status_code=504)(scope, receive, send)
        else:
            await task
        finally:
            timer.cancel()

    setattr(__call__, _APPLIED, True)
    setattr(__call__, _REPLACED, TimeoutMiddleware.__call__)
    TimeoutMiddleware.__call__ = __call__


def trace_requests_not_messages() -> None:
    """One span per request, none per ASGI message (touchpoint 2, speed: CPU); idempotent; not applied with
    TABSERVE_BENTOML_SPEEDUPS=0."""
    require_checked_bentoml()
    if not SPEEDUPS:
        return
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    original = OpenTelemetryMiddleware.__init__
    if getattr(original, _APPLIED, False):
        return

    def __init__(self: Any, app: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exclude_spans", ["receive", "send"])
        original(self, app, *args, **kwargs)

    setattr(__init__, _APPLIED, True)
    setattr(__init__, _REPLACED, original)
    OpenTelemetryMiddleware.__init__ = __init__


class _ClientErrorsInOneLine(logging.Filter):
    """BentoML logs every invalid request as an ERROR with a full traceback; it is the client's
    mistake, already answered 400, so it becomes one WARNING line naming the first problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            first = (pydantic_detail(error.errors(include_url=False)) or [{}])[0]
            where = ".".join(map(str, first.get("loc", ())))
            record.msg = f"{record.getMessage()}: invalid input answered 400 ({where}: {first.get('msg', '')})"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_client_error_logs() -> None:
    """Invalid requests logged in one WARNING line (touchpoint 3, correctness: always applied); idempotent."""
    require_checked_bentoml()
    http_app_logger = logging.getLogger(HTTP_APP_LOGGER)
    if not any(isinstance(f, _ClientErrorsInOneLine) for f in http_app_logger.filters):
        http_app_logger.addFilter(_ClientErrorsInOneLine())


class _ConsumerInAccessLog(logging.Filter):
    """Appends "(consumer=<name>)" to BentoML's access log line when the request had one."""

    def __init__(self, current: ContextVar[str]):
        super().__init__()
        self.current = current

    def filter(self, record: logging.LogRecord) -> bool:
        name = self.current.get(None)
        if name is not None and isinstance(record.args, tuple) and record.msg == "%s (%s) (%s) %.3fms":
            record.msg = "%s (%s) (%s) %.3fms (consumer=%s)"
            record.args = (*record.args, name)
        return True


def consumer_in_access_log(current: ContextVar[str]) -> None:
    """Name the consumer in each access log line, read from `current` (set by the gate) (touchpoint 5,
    correctness: always applied); idempotent."""
    require_checked_bentoml()
    access_logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, _ConsumerInAccessLog) for f in access_logger.filters):
        access_logger.addFilter(_ConsumerInAccessLog(current))


def model_store_root() -> Path:
    """The folder of BentoML's model store (BentoML has no public accessor for it)."""
    require_checked_bentoml()
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.model_store.get()._path)


@contextmanager
def atomic_model_version(
    name: str, *, labels: dict[str, str], metadata: dict[str, Any], store_root: Path | None = None
) -> Iterator[bentoml.Model]:
    """`bentoml.models.create`, but the store gets all of the version or none of it.

    Write the version's files into the model it gives (`model.path_of(...)`), as with `create`. On a
    clean exit the version is saved into a staging store beside the real one (same filesystem) and
    published with one rename; "latest" moves after that, also by a rename. On an exception or an
    interruption (KeyboardInterrupt: train.py turns SIGTERM into one) the staging is removed and the
    store is as it was. `store_root` (default: BentoML's model store) is for tests. (Touchpoint 4,
    correctness: always applied.)
    """
    require_checked_bentoml()
    from bentoml._internal.models import ModelStore

    root = Path(store_root) if store_root is not None else model_store_root()
    staging_root = root.parent / STAGING_DIR
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=staging_root))
    try:
        with bentoml.models.create(name, labels=labels, metadata=metadata, _model_store=ModelStore(staging)) as model:
            yield model
        tag = model.tag
        final = root / tag.name / tag.version
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging / tag.name / tag.version, final)  # the one step that publishes the version
        latest = final.parent / f".latest-{tag.version}"
        latest.write_text(tag.version)
        os.replace(latest, final.parent / "latest")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def monitor_record_vars() -> tuple[ContextVar, ContextVar]:
    """The context variables `bentoml.monitor` builds a record in: (column schema, column values) (touchpoint 6,
    correctness)."""
    require_checked_bentoml()
    from bentoml._internal.monitoring.base import MON_COLUMN_VAR, MON_DATAS_VAR

    return MON_COLUMN_VAR, MON_DATAS_VAR


def request_ids() -> tuple[Any, Any]:
    """The current request's (request id, trace id), as BentoML's tracing context holds them (touchpoint 6,
    correctness; `bentoml.server_context` has neither)."""
    require_checked_bentoml()
    from bentoml._internal.context import trace_context

    return trace_context.request_id, trace_context.trace_id


class _TemplatedEndpoint:
    """A metric whose `labels(endpoint=path, ...)` records `template(path)` instead."""

    def __init__(self, metric: Any, template: Callable[[str], str]) -> None:
        self._metric, self._template = metric, template

    def labels(self, *args: Any, **labels: Any) -> Any:
        if "endpoint" in labels:
            labels["endpoint"] = self._template(labels["endpoint"])
        return self._metric.labels(*args, **labels)


def template_endpoint_labels(template: Callable[[str], str]) -> None:
    """Label BentoML's request metrics with `template(path)`, not the raw path (touchpoint 7, correctness: always
    applied); idempotent."""
    require_checked_bentoml()
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware as Middleware

    original = Middleware._setup
    if getattr(original, _APPLIED, False):
        return

    def _setup(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for name in ("metrics_request_total", "metrics_request_duration", "metrics_request_in_progress"):
            setattr(self, name, _TemplatedEndpoint(getattr(self, name), template))

    setattr(_setup, _APPLIED, True)
    setattr(_setup, _REPLACED, original)
    Middleware._setup = _setup
