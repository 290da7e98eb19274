"""The peers: the servers a user would pick instead of this project, run by bench/run.py beside it.

- `mlserver`: Seldon MLServer 1.7 (V2 inference protocol), a custom runtime for the pipeline
  (bench/peers/mlserver/runtime.py), adaptive batching and 2 parallel inference workers;
- `litserve`: LitServe 0.2 with its batching, 2 inference workers (bench/peers/litserve/server.py).

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
    "mlserver": ("mlserver", "mlserver-sklearn", "scikit-learn", "pandas", "numpy", "joblib", "fastapi", "uvicorn", "uvloop"),
    "litserve": ("litserve", "scikit-learn", "pandas", "numpy", "joblib", "fastapi", "uvicorn", "uvloop", "pyzmq"),
}
STAMP = ".bench-requirements.sha256"


@dataclass(frozen=True)
class PeerConfig:
    workers: int = 2  # MLServer parallel_workers / LitServe workers_per_device
    max_batch_size: int = 64  # as the project's MAX_BATCH_SIZE
    batch_wait_s: float = 0.005  # MLServer max_batch_time / LitServe batch_timeout


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
    script = (f'"{sys.executable}" -m venv "{venv}" && '
              f'"{python}" -m pip install --disable-pip-version-check --no-input --progress-bar off '
              f'-r "{requirements}" -c "{constraints}"')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    handle = log.open("wb")
    proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    handle.close()
    return proc


def finish_install(name: str, venv: Path) -> dict:
    """After a successful install: stamp it and read the versions that matter."""
    (venv / STAMP).write_text(_fingerprint(name) + "\n")
    code = ("import importlib.metadata as m, json, sys; "
            f"print(json.dumps({{n: m.version(n) for n in {list(PACKAGES[name])!r}}}))")
    out = subprocess.run([str(venv_python(venv)), "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def base_env(tmpdir: Path) -> dict:
    """A peer's environment: nothing of the project's (no BENTOML_*, PYTHONPATH, PROMETHEUS_MULTIPROC_DIR),
    one OpenMP thread per process as for the project and the FastAPI baseline."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "USER") if k in os.environ}
    return {**env, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def mlserver_command(venv: Path, repo: Path, pipeline: Path, port: int, grpc_port: int, metrics_port: int,
                     config: PeerConfig) -> tuple[list[str], dict]:
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
    return [str(venv_python(venv)), str(HERE / "litserve" / "server.py"), "--pipeline", str(pipeline),
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(config.workers),
            "--max-batch-size", str(config.max_batch_size), "--batch-timeout", str(config.batch_wait_s)], {}
