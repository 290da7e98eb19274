"""The LightGBM scenario's peer: Seldon MLServer 1.7.1 with its stock LightGBM runtime (`mlserver-lightgbm`),
serving the booster's text file (bench/peers/mlserver_lightgbm/: pins, settings.json, model-settings.json).

Installed as the other peers are (bench/peers/__init__.py's `start_install`: `python -m venv`, then
`pip install --no-compile -r requirements.txt -c constraints.txt` in the background while the model trains),
checked and stamped here. Runs in the bench's own interpreter; imports nothing of MLServer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
import peers  # noqa: E402 - bench/peers/__init__.py: start_install, base_env, PeerConfig

NAME = "mlserver_lightgbm"
HERE = peers.HERE / NAME
V2_MODEL = "lightgbm"  # model-settings.json's name; bench/lightgbm/locustfile.py sends to /v2/models/lightgbm/infer
PACKAGES = ("mlserver", "mlserver-lightgbm", "lightgbm", "numpy", "pandas", "fastapi", "uvicorn", "uvloop")
# What the server imports at start (imported once after the install: a check, and their bytecode is written,
# so the cold start is measured with compiled modules; pip runs with --no-compile, as for the other peers).
IMPORTS = (
    "mlserver.cli.main",
    "mlserver.server",
    "mlserver.rest.app",
    "mlserver.grpc.server",
    "mlserver.parallel.pool",
    "mlserver.batching.adaptive",
    "mlserver.codecs",
    "mlserver.metrics",
    "mlserver_lightgbm",
    "lightgbm",
    "uvicorn",
    "uvloop",
)
DEFAULT = peers.PeerConfig(workers=2)  # as bench/peers/mlserver: 2 parallel workers, batch <= 64 / 10 ms


def start_install(venv: Path, log: Path) -> subprocess.Popen | None:
    return peers.start_install(NAME, venv, log)


def finish_install(venv: Path) -> dict:
    """Import what the server imports, read the versions that matter, stamp the virtualenv with its pins' hash."""
    code = (
        f"import importlib, importlib.metadata as m, json\n"
        f"for module in {list(IMPORTS)!r}: importlib.import_module(module)\n"
        f"print(json.dumps({{n: m.version(n) for n in {list(PACKAGES)!r}}}))"
    )
    out = subprocess.run([str(peers.venv_python(venv)), "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the virtualenv does not import: {out.stderr[-2000:]}")
    (venv / peers.STAMP).write_text(peers._fingerprint(NAME) + "\n")
    return json.loads(out.stdout.strip().splitlines()[-1])


def command(
    venv: Path,
    repo: Path,
    model_file: Path,
    port: int,
    grpc_port: int,
    metrics_port: int,
    config: peers.PeerConfig = DEFAULT,
) -> tuple[list[str], dict]:
    """Write MLServer's model repository (settings.json and lightgbm/model-settings.json: the templates with the
    ports, the booster's path and the config filled in); its command and extra environment (none: the stock
    runtime is in the virtualenv)."""
    settings = json.loads((HERE / "settings.json").read_text())
    settings.update(http_port=port, grpc_port=grpc_port, metrics_port=metrics_port, parallel_workers=config.workers)
    model = json.loads((HERE / "model-settings.json").read_text())
    model.update(max_batch_size=config.max_batch_size, max_batch_time=config.batch_wait_s)
    model["parameters"]["uri"] = str(model_file)
    (repo / V2_MODEL).mkdir(parents=True, exist_ok=True)
    (repo / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (repo / V2_MODEL / "model-settings.json").write_text(json.dumps(model, indent=2) + "\n")
    return [str(venv / "bin" / "mlserver"), "start", str(repo)], {}


def base_env(tmpdir: Path) -> dict:
    return peers.base_env(tmpdir)
