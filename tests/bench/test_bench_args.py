"""bench/run.py's options: malformed candidate options are refused with one line naming the form (argparse's exit 2),
before it starts anything; the explained points' levels, and --explain-only, are derived as documented."""

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


def test_the_explained_points_are_at_1_user_the_focus_level_and_bulk(run):
    """Full run: ?explain=true at 1 and 32 users and in bulk beside the unexplained points; --smoke at its one level
    (16) and bulk, 1 s each; --no-explain none; --bulk-users 0 no bulk."""
    args = run.parse_args([])
    assert args.explain_levels == ["1", "32", "bulk"] and args.explain_seconds is None and not args.explain_only
    smoke = run.parse_args(["--smoke"])
    assert smoke.explain_levels == ["16", "bulk"] and smoke.explain_seconds == 1.0
    assert run.parse_args(["--no-explain"]).explain_levels == []
    assert run.parse_args(["--levels", "8,64", "--bulk-users", "0"]).explain_levels == ["64"]
    assert run.parse_args(["--scenario", "lightgbm"]).explain_levels == ["1", "32", "bulk"]


@pytest.mark.parametrize("scenario", [[], ["--scenario", "lightgbm"]])
def test_explain_only_is_the_shipped_server_at_1_and_32_users_and_bulk(run, scenario):
    args = run.parse_args([*scenario, "--explain-only"])
    assert args.servers == "shipped" and args.levels == [1, 32] and args.explain_levels == ["1", "32", "bulk"]
    assert args.byid_users == 0 and args.no_scoring and args.server_env == ["PREDICTION_CACHE_SIZE=0"]
    assert args.out == ROOT / "bench" / "results" / "explain" / ("lightgbm" if scenario else "penguins")
    assert run.parse_args(["--explain-only", "--server-env", "PREDICTION_CACHE_SIZE=9"]).server_env == [
        "PREDICTION_CACHE_SIZE=9"
    ]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--explain-only", "--servers", "shipped,fastapi"], "--explain-only measures the shipped server"),
        (["--explain-only", "--no-explain"], "--explain-only and --no-explain exclude each other"),
    ],
)
def test_a_contradictory_explain_option_is_one_line_and_exit_2(run, args, fragment, capsys):
    with pytest.raises(SystemExit) as exited:
        run.parse_args(args)
    assert exited.value.code == 2 and fragment in capsys.readouterr().err
