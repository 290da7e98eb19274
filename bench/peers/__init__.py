"""The peers: the servers a user would pick instead of this project, run by bench/run.py beside it.

- `mlserver`: Seldon MLServer 1.7 (V2 inference protocol), a custom runtime for the pipeline
  (bench/peers/mlserver/runtime.py), adaptive batching and 2 parallel inference workers;
- `litserve`: LitServe 0.2 with its batching, 1 inference worker and 2 HTTP server processes
  (bench/peers/litserve/server.py).
Their configurations, and the measurements that chose them, are in bench/README.md ("The peers").

Each lives in its own virtualenv (its pins may clash with the project's), created with `python -m venv`
and `pip install -r requirements.txt -c constraints.txt` from this folder. Both load the same fitted
pipeline file (pipeline.joblib in the model version's directory, tabserve/core/store.py) with joblib and
share bench/peers/common.py. This module runs in the bench's own interpreter: it installs, configures and
describes the peers, it imports nothing of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("mlserver", "litserve")
V2_MODEL = "penguins"  # bench/peers/mlserver/model-settings.json; bench/records.py sends to /v2/models/penguins/infer
PACKAGES = {  # versions recorded in results.json
    "mlserver": (
        "mlserver",
        "mlserver-sklearn",
        "scikit-learn",
        "pandas",
        "numpy",
        "joblib",
        "fastapi",
        "uvicorn",
        "uvloop",
    ),
    "litserve": ("litserve", "scikit-learn", "pandas", "numpy", "joblib", "fastapi", "uvicorn", "uvloop", "pyzmq"),
}
# What each server imports at start: imported once after the install (a check that the virtualenv works, and
# it writes their bytecode: pip runs with --no-compile, a minute less on 2 cores than compiling every
# module of every package, and the cold start is then measured with compiled modules, as in an image).
IMPORTS = {
    "mlserver": (
        "mlserver.cli.main",
        "mlserver.server",
        "mlserver.rest.app",
        "mlserver.grpc.server",
        "mlserver.parallel.pool",
        "mlserver.batching.adaptive",
        "mlserver.codecs",
        "mlserver.metrics",
        "mlserver_sklearn",
        "uvicorn",
        "uvloop",
    ),
    "litserve": (
        "litserve",
        "litserve.server",
        "litserve.loops",
        "litserve.transport",
        "zmq",
        "uvicorn",
        "uvloop",
        "httptools",
        "fastapi",
    ),
}
COMMON_IMPORTS = (
    "sklearn.ensemble",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.pipeline",
    "pandas",
    "joblib",
)
STAMP = ".bench-requirements.sha256"


@dataclass(frozen=True)
class PeerConfig:
    workers: int  # MLServer parallel_workers / LitServe workers_per_device
    max_batch_size: int = 64  # as the project's MAX_BATCH_SIZE
    batch_wait_s: float = 0.010  # MLServer max_batch_time / LitServe batch_timeout
    api_servers: int | None = None  # LitServe num_api_servers (None: as many as inference workers)

    @property
    def label(self) -> str:
        http = f" + {self.api_servers} HTTP processes" if self.api_servers else ""
        return (
            f"{self.workers} worker{'s' if self.workers > 1 else ''}{http}, batch <= {self.max_batch_size} / "
            f"{1000 * self.batch_wait_s:g} ms"
        )


# Each one's best measured configuration on these 2 cores (bench/README.md, "The peers").
DEFAULTS = {"mlserver": PeerConfig(workers=2), "litserve": PeerConfig(workers=1, api_servers=2)}


def requirement_files(name: str) -> tuple[Path, Path]:
    return HERE / name / "requirements.txt", HERE / name / "constraints.txt"


def _fingerprint(name: str) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in requirement_files(name):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def start_install(name: str, venv: Path, log: Path) -> subprocess.Popen | None:
    """Create the peer's virtualenv and pip-install its pins, in the background (its own process group);
    None when `venv` already holds exactly these pins (a kept --peer-venvs directory)."""
    stamp = venv / STAMP
    if stamp.exists() and stamp.read_text().strip() == _fingerprint(name) and venv_python(venv).exists():
        return None
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    requirements, constraints = requirement_files(name)
    python = venv_python(venv)
    script = (
        f'"{sys.executable}" -m venv "{venv}" && '
        f'"{python}" -m pip install --disable-pip-version-check --no-input --progress-bar off --no-compile '
        f'-r "{requirements}" -c "{constraints}"'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    handle = log.open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", script], env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    handle.close()
    return proc


def finish_install(name: str, venv: Path) -> dict:
    """After the install: import what the server imports (see IMPORTS), read the versions that matter, stamp it."""
    code = (
        f"import importlib, importlib.metadata as m, json\n"
        f"for module in {[*IMPORTS[name], *COMMON_IMPORTS]!r}: importlib.import_module(module)\n"
        f"print(json.dumps({{n: m.version(n) for n in {list(PACKAGES[name])!r}}}))"
    )
    out = subprocess.run([str(venv_python(venv)), "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the virtualenv does not import: {out.stderr[-2000:]}")
    (venv / STAMP).write_text(_fingerprint(name) + "\n")
    return json.loads(out.stdout.strip().splitlines()[-1])


def base_env(tmpdir: Path) -> dict:
    """A peer's environment: nothing of the project's (no BENTOML_*, PYTHONPATH, PROMETHEUS_MULTIPROC_DIR),
    one OpenMP thread per process as for the project and the FastAPI baseline."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "USER") if k in os.environ}
    return {**env, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def mlserver_command(
    venv: Path, repo: Path, pipeline: Path, port: int, grpc_port: int, metrics_port: int, config: PeerConfig
) -> tuple[list[str], dict]:
    """Write MLServer's model repository (settings.json, penguins/model-settings.json: the templates beside
    this file with the ports, the pipeline's path and the config filled in); its command and extra env."""
    settings = json.loads((HERE / "mlserver" / "settings.json").read_text())
    settings.update(http_port=port, grpc_port=grpc_port, metrics_port=metrics_port, parallel_workers=config.workers)
    model = json.loads((HERE / "mlserver" / "model-settings.json").read_text())
    model.update(max_batch_size=config.max_batch_size, max_batch_time=config.batch_wait_s)
    model["parameters"]["uri"] = str(pipeline)
    (repo / V2_MODEL).mkdir(parents=True, exist_ok=True)
    (repo / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (repo / V2_MODEL / "model-settings.json").write_text(json.dumps(model, indent=2) + "\n")
    # The runtime (runtime.PipelineRuntime) and common.py, for the main process and the spawned workers.
    env = {"PYTHONPATH": f"{HERE / 'mlserver'}{os.pathsep}{HERE}"}
    return [str(venv / "bin" / "mlserver"), "start", str(repo)], env


def litserve_command(venv: Path, pipeline: Path, port: int, config: PeerConfig) -> tuple[list[str], dict]:
    cmd = [
        str(venv_python(venv)),
        str(HERE / "litserve" / "server.py"),
        "--pipeline",
        str(pipeline),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(config.workers),
        "--max-batch-size",
        str(config.max_batch_size),
        "--batch-timeout",
        str(config.batch_wait_s),
    ]
    return cmd + (["--api-servers", str(config.api_servers)] if config.api_servers else []), {}
