"""bench/run.py refuses malformed candidate options with one line naming the form (argparse's exit 2),
before it starts anything."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # defines the runner; starts nothing
    yield module
    sys.modules.pop("bench_run", None)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--candidate", "mine"], "--candidate takes NAME=DIR"),
        (["--candidate", f"mine={ROOT / 'no-such-dir'}"], "--candidate takes NAME=DIR"),
        (["--candidate", f"mine={ROOT}", "--candidate-env", "other:A=1"], "for a NAME given with --candidate ['mine']"),
        (["--candidate", f"mine={ROOT}", "--candidate-env", "mine:A"], "--candidate-env takes NAME:KEY=VALUE"),
    ],
)
def test_a_malformed_candidate_option_is_one_line_and_exit_2(run, args, fragment, capsys):
    with pytest.raises(SystemExit) as exited:
        run.parse_args(args)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and fragment in error and ": error: " in error.strip().splitlines()[-1]


def test_a_well_formed_candidate_is_taken(run):
    args = run.parse_args(["--candidate", f"mine={ROOT}", "--candidate-env", "mine:PYTHONPATH=/tmp/x"])
    assert args.candidate == [f"mine={ROOT}"] and args.candidate_env == ["mine:PYTHONPATH=/tmp/x"]
