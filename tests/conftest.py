"""Shared fixtures. Every test session gets its own BentoML home (model store, bentos) in a temp dir,
so tests never touch ~/bentoml and always train the models they use.

Every test says what it needs with a marker (pyproject.toml, [tool.pytest.ini_options] markers):
`served` starts a real `bentoml serve`, `slow` builds a Bento, runs the notebook or runs for minutes,
`browser` drives Chromium. `make test-fast` runs `-m "not served and not slow"`: nothing that starts a
server or builds. Tests under tests/served/ and tests using the `server` fixture are marked `served`
here; and a test that starts `bentoml serve` (Server included) without `served`, or builds a Bento
without `slow`, fails at once saying so (see `_refuse_unmarked`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

# Before anything imports bentoml: it reads BENTOML_HOME once.
_HOME = tempfile.mkdtemp(prefix="tabserve-test-bentoml-")
os.environ["BENTOML_HOME"] = _HOME
os.environ.pop("MODEL_TAG", None)
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
# One OpenMP thread per test process (HistGradientBoosting, LightGBM, XGBoost): `make test` runs 3 processes on 2
# cores, and a fit's thousands of small parallel regions otherwise wait for threads that are not running
# (penguins' HistGradientBoosting took 30-45 s a fit instead of 1). Servers set it themselves (service.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402

from tabserve.training.trainer import Choices  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
DATA = ROOT / "tests" / "data"  # small CSVs made for the cases users meet (tests/data/README.md)
PENGUIN = {
    "island": "Biscoe",
    "bill_length_mm": 48.6,
    "bill_depth_mm": 16.0,
    "flipper_length_mm": 230,
    "body_mass_g": 5800,
    "sex": "male",
    "year": 2009,
}

# Tests about something other than choosing the model train one family (a second's work, not all five
# cross-validated): choosing is tested in tests/training/test_selection.py, and by the README's commands.
HGB_ONLY = Choices(model="hgb")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


# --- Markers: what each test needs -------------------------------------------------------------

SERVED_DIR = ROOT / "tests" / "served"


# --- Parallel runs: `make test` runs pytest-xdist (-n 3 --dist loadscope --no-loadscope-reorder) ---------------
# A file's tests stay on one worker, so its module-scoped servers start once; files sharing an expensive session
# fixture form one unit (one worker), so it is made once. The longest units start first (largest first keeps the
# workers busy to the end); the rest follow in file order. (xdist's own `xdist_group` mark does not group under
# pytest 9, whose node ids xdist can no longer suffix: the scheduler below groups instead.)
SHARED_UNITS = {
    # the models of every family built with their own libraries (`built_models`, `imported_models`)
    "built-models": (
        "tests/importing/test_import_model.py",
        "tests/importing/test_store_models.py",
        "tests/served/test_imported_served.py",
        "tests/scoring/test_score_imported.py",
    ),
}
LONGEST_FIRST = (
    "tests/bench/test_bench_smoke.py",
    "built-models",
    "tests/bento/test_bento.py",
    "tests/scoring/test_score_spark.py",
    "tests/served/test_any_csv.py",
    "tests/reliability/test_soak.py",
    "tests/served/test_versions_served.py",
    "tests/reliability/test_faults.py",
    "tests/notebooks/test_quickstart.py",
    "tests/served/test_readme.py",
    "tests/served/test_readme_byom.py",
)


def unit_of(path: str) -> str:
    """The unit of work a test file belongs to: the file, or the shared unit naming it."""
    return next((unit for unit, files in SHARED_UNITS.items() if path in files), path)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid.split("::", 1)[0])

    return ByUnit(config, log)


def pytest_collection_modifyitems(config, items):
    """tests/served/ is the folder of tests against a real server; the `server` fixture is one."""
    for item in items:
        if item.get_closest_marker("served") is None and (
            SERVED_DIR in Path(item.path).parents or "server" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.served)
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(unit_of(str(Path(item.path).relative_to(ROOT))), len(rank)))  # stable


# (marker, what it means, commands that need it): a subprocess matching the pattern may only start
# in a test carrying the marker. `make serve|build|...` counts too: its recipe runs `bentoml`.
_NEEDS = [
    (
        "served",
        "starts a real `bentoml serve`",
        re.compile(
            r"\bbentoml\s+(serve|start-[\w-]+)\b|\bbench/run\.py\b|\bmake\b.*\s(serve|container-test|bench|bench-smoke)(\s|$)"
        ),
    ),
    (
        "slow",
        "builds a Bento or an image",
        re.compile(r"\bbentoml\s+(build|containerize)\b|\bmake\b.*\s(build|containerize|container-test)(\s|$)"),
    ),
]
_running: pytest.Item | None = None  # the test being set up, run or torn down


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _running
    _running = item
    try:
        return (yield)
    finally:
        _running = None


def _refuse_unmarked(event: str, args: tuple) -> None:
    """An audit hook: every subprocess start (subprocess.run, Popen, Server) passes here."""
    if event != "subprocess.Popen" or _running is None:
        return
    command = args[1]
    text = os.fsdecode(command) if isinstance(command, (str, bytes)) else " ".join(os.fsdecode(str(a)) for a in command)
    for marker, meaning, pattern in _NEEDS:
        if pattern.search(text) and _running.get_closest_marker(marker) is None:
            pytest.fail(
                f"{_running.nodeid} {meaning} ({text[:120]!r}) but is not marked `{marker}`: add "
                f"@pytest.mark.{marker} (`make test-fast` must start no server and build nothing)",
                pytrace=False,
            )


sys.addaudithook(_refuse_unmarked)


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return Path(_HOME)


@pytest.fixture(scope="session")
def penguins_model(bentoml_home):
    """The default model as `make train` makes it (--model auto: the best family by cross-validation), trained
    once per session into the temp store."""
    from tabserve.core.data import PENGUINS_CSV
    from tabserve.training import trainer as training

    return training.train(PENGUINS_CSV, "species", name="penguins").model


@pytest.fixture(scope="session")
def regression_csv(tmp_path_factory) -> Path:
    """A synthetic regression CSV: y = 3a - 2b + category effect + noise; some missing values."""
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "a": rng.normal(10, 2, n).round(3),
            "b": rng.uniform(0, 5, n).round(3),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    effect = frame["colour"].map({"red": 5.0, "green": 0.0, "blue": -5.0})
    frame["price"] = (3 * frame["a"] - 2 * frame["b"] + effect + rng.normal(0, 0.5, n)).round(3)
    frame.loc[::17, "b"] = np.nan
    path = tmp_path_factory.mktemp("data") / "house prices.csv"
    frame.to_csv(path, index=False)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real `bentoml serve` process on a free port, stopped (and its log kept) on exit. One entry worker unless
    `env` says API_WORKERS: a worker's start costs ~5 s of CPU, and most tests follow one worker; those about
    several workers (kills, layouts, the stock-BentoML run, the soak, cross-worker counting) ask for them."""

    def __init__(
        self, target: str = "service:PredictionService", env: dict | None = None, cwd: Path = ROOT, name: str = "server"
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ARTIFACTS / f"{name}-{self.port}.log"
        ARTIFACTS.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")
        # BentoML keeps its Prometheus files in BENTOML_HOME and clears them when a server starts, so
        # each server gets a home of its own that shares the session's model store and Bentos.
        self.home = Path(tempfile.mkdtemp(prefix="tabserve-server-home-"))
        for shared in ("models", "bentos"):
            (Path(_HOME) / shared).mkdir(exist_ok=True)
            (self.home / shared).symlink_to(Path(_HOME) / shared)
        command = [
            str(Path(sys.executable).parent / "bentoml"),
            "serve",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        try:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env={**os.environ, "BENTOML_HOME": str(self.home), "API_WORKERS": "1", **(env or {})},
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:  # e.g. refused in a test not marked `served`
            self._log.close()
            self.log_path.unlink(missing_ok=True)
            shutil.rmtree(self.home, ignore_errors=True)
            raise

    def wait_ready(self, timeout: float = 90) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def wait_exit(self, timeout: float = 60) -> tuple[int, str]:
        """For a server expected to refuse to start: its exit code and everything it printed."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"server still running after {timeout}s:\n{self.log()}") from None
        self.stop()
        return code, self.log_path.read_text()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self._log.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def feature_db(tmp_path_factory) -> str:
    """A feature table of the penguins data (ids 1-344), loaded as the README loads it, for predict by id."""
    from tabserve.core.data import PENGUINS_CSV
    from tabserve.serving.api import feature_table as features

    url = f"sqlite:///{tmp_path_factory.mktemp('feature-db') / 'features.db'}"
    features.load(PENGUINS_CSV, "penguin_id", "features", url, number_rows=True)
    return url


@pytest.fixture(scope="session")
def server(shared_server):
    return shared_server


@pytest.fixture(scope="session")
def shared_server(penguins_model, feature_db):
    """The project served as `make serve` does, shared by the served tests. Pinned to the session's
    model: other tests train newer "penguins" versions while it runs. Its feature table holds the
    penguins (GET /v1/entities/{1..344}/predict)."""
    # One entry worker: tests read its in-process cache (X-Cache) request after request.
    with Server(
        env={"MODEL_TAG": str(penguins_model.tag), "FEATURE_DB_URL": feature_db, "API_WORKERS": "1"}, name="served"
    ) as running:
        yield running


LAYOUTS = ("monolith", "services")  # SERVICE_LAYOUT; the first is the default


@pytest.fixture(scope="session", params=LAYOUTS)
def layout_server(request, penguins_model, feature_db):
    """The project served in each layout: the shared `server` for the default one, and a server with
    SERVICE_LAYOUT set for the other. The endpoint, error-contract and batching tests run on both."""
    if request.param == LAYOUTS[0]:
        yield request.getfixturevalue("shared_server")
        return
    env = {"MODEL_TAG": str(penguins_model.tag), "FEATURE_DB_URL": feature_db, "SERVICE_LAYOUT": request.param}
    with Server(env=env, name=f"served-{request.param}") as running:
        yield running


@pytest.fixture(scope="session")
def built_models(tmp_path_factory):
    """Real models of every family the import takes, built once per session (tests/importing/models.py)."""
    from tests.importing.models import build_all

    return build_all(tmp_path_factory.mktemp("models-from-elsewhere"))


@pytest.fixture(scope="session")
def imported_models(built_models, bentoml_home):
    """Each of them imported into the session's store with the CLI as the README prints it: {case: tag}."""
    import bentoml

    import import_model

    tags = {}
    for name, built in built_models.items():
        assert import_model.main(built.command()) == 0, name
        tags[name] = str(bentoml.models.get(f"{built.name}:latest").tag)
    return tags


class Client:
    """A served app called by path, the same way whether it runs in a real server (`Client.of(server)`: requests
    on its URL) or in process (a test client): `.get(path, ...)`, `.post(path, ...)`, `.url`."""

    def __init__(self, session, url: str = ""):
        self.session, self.url = session, url

    @classmethod
    def of(cls, server: Server) -> Client:
        return cls(requests.Session(), server.url)

    def get(self, path: str, **kwargs):
        return self.session.get(f"{self.url}{path}", **self._timeout(kwargs))

    def post(self, path: str, **kwargs):
        return self.session.post(f"{self.url}{path}", **self._timeout(kwargs))

    def _timeout(self, kwargs: dict) -> dict:
        if self.url:  # requests waits forever by default
            return {"timeout": 120, **kwargs}
        return {k: v for k, v in kwargs.items() if k != "timeout"}


@contextlib.contextmanager
def in_process_service(model_tag: str):
    """service.py serving `model_tag` in this process: its PredictionService as the ASGI app BentoML builds
    (the public `Service.to_asgi()`: the same routes, middleware, types and request path) under a test client.
    For what needs no server process: no workers, signals or process-wide metrics."""
    import importlib

    from starlette.testclient import TestClient

    from tabserve.core import config

    before = config.MODEL_TAG
    config.MODEL_TAG = model_tag
    try:
        import service

        importlib.reload(service)  # its types are made at import from the served model's schema
        with TestClient(service.PredictionService.to_asgi()) as client:
            yield Client(client)
    finally:
        config.MODEL_TAG = before
        _forget_bentoml_request_metrics()


def _forget_bentoml_request_metrics() -> None:
    """BentoML registers its request metrics when it makes a service's app; the next app registers them again.
    (In a server, each worker makes one app.)"""
    from prometheus_client import REGISTRY

    for collector in {c for name, c in REGISTRY._names_to_collectors.items() if name.startswith("bentoml_")}:
        REGISTRY.unregister(collector)


def train_main(*argv: str) -> tuple[int, str, str]:
    """train.py's main() with these arguments, as the command line runs it: (exit code, stdout, stderr).
    With `--model hgb` unless the arguments name a model (see HGB_ONLY)."""
    if not any(a == "--model" or a.startswith("--model=") for a in argv):
        argv = (*argv, "--model", "hgb")
    import io
    import signal

    import train

    out, err = io.StringIO(), io.StringIO()
    handler = signal.getsignal(signal.SIGTERM)  # train.py's run takes SIGTERM over; give it back after
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = train.main(list(argv))
    finally:
        signal.signal(signal.SIGTERM, handler)
    return code, out.getvalue(), err.getvalue()
