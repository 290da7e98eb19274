"""Faults around the model itself: interrupted training leaves no partial version (no server), and a
server asked for a missing or damaged model, or given a bad setting, exits at once with one line naming
the problem and the fix (`served`: each starts a real `bentoml serve`)."""

import signal
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest

from tests.conftest import HGB_ONLY, ROOT, Server

# train.py's real main(), with the pipeline write slowed down so a signal lands mid-save.
SLOW_SAVE = """
import sys, time, joblib
real_dump = joblib.dump
def slow_dump(obj, path):
    real_dump(obj, path)
    print("SAVING", flush=True)
    time.sleep(60)
joblib.dump = slow_dump  # tabserve/core/store.py imports joblib when it saves, and gets this one
import train
sys.exit(train.main(["--name", "interrupted"]))
"""


def store_state(home: Path):
    return sorted(str(m.tag) for m in bentoml.models.list()), sorted(p.name for p in (home / "models").glob("*/*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_training_interrupted_mid_save_leaves_no_model(bentoml_home, penguins_model, sig):
    before = store_state(bentoml_home)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "SAVING"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted; no model was saved" in stderr and "Traceback" not in stderr
    assert store_state(bentoml_home) == before
    assert not (bentoml_home / "models" / "interrupted").exists() or not any(
        (bentoml_home / "models" / "interrupted").iterdir()
    )
    assert not any((bentoml_home / ".tabserve-staging").iterdir())


def serve_once(env: dict) -> tuple[int, list[str]]:
    """`bentoml serve` expected to refuse to start: its exit code and the lines it printed."""
    code, output = Server(env=env, name="refused").wait_exit(timeout=60)
    return code, [line for line in output.strip().splitlines() if line.strip()]


@pytest.mark.served
def test_missing_model_tag_exits_with_one_line(penguins_model):
    code, lines = serve_once({"MODEL_TAG": "no_such_model:latest"})
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith(
        "error: model 'no_such_model:latest' is not in the BentoML model store (it has: "
    )
    assert lines[0].endswith(
        "); train one with: .venv/bin/python train.py --data your.csv --target COLUMN --name no_such_model, "
        "or import yours with: .venv/bin/python import_model.py --model FILE --sample your.csv --name no_such_model"
    )


@pytest.mark.served
def test_damaged_model_file_exits_with_one_line(penguins_model):
    from tabserve.core.data import PENGUINS_CSV
    from tabserve.training import trainer as training

    model = training.train(PENGUINS_CSV, "species", name="damaged", choices=HGB_ONLY).model
    with open(model.path_of("pipeline.joblib"), "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 64)
    code, lines = serve_once({"MODEL_TAG": str(model.tag)})
    assert code != 0
    assert lines == [
        f"error: model {model.tag} is damaged (pipeline.joblib does not match its checksum); retrain with `make train`"
    ]


@pytest.mark.served
@pytest.mark.parametrize(
    "env, line",
    [
        ({"MAX_BATCH_SIZE": "lots"}, "error: MAX_BATCH_SIZE='lots' is not an integer"),
        ({"MODEL_WORKERS": "0"}, "error: MODEL_WORKERS=0 must be at least 1"),
        (
            {"REDIS_URL": "localhost:6379"},
            "error: REDIS_URL='localhost:6379' must start with redis://, rediss:// or unix:// (e.g. redis://localhost:6379/0)",
        ),
    ],
)
def test_bad_setting_exits_with_one_line(penguins_model, env, line):
    code, lines = serve_once(env)
    assert code != 0
    assert lines == [line]
