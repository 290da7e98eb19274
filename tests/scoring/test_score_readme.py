"""The score.py commands of the README and the docs run as printed (in a scratch directory holding the
repository's data/), on the session's penguins model, and print the summary the docs show (version and time
are theirs)."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.docs.pages import docs_text

COMMANDS = [line.strip() for line in docs_text().splitlines() if line.strip().startswith(".venv/bin/python score.py")]


def test_the_readme_shows_both_engines():
    assert len(COMMANDS) == 2 and "--engine local" in COMMANDS[1] and "--engine" not in COMMANDS[0]


@pytest.mark.slow  # the first command starts Spark
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_score_commands_run_as_printed(command, penguins_model, tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data")
    runnable = command.replace(".venv/bin/python score.py", f"{sys.executable} {ROOT / 'score.py'}", 1)
    result = subprocess.run(["bash", "-c", runnable], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^model +penguins:\w+$", out, re.M), (
        out
    )  # penguins:latest: other tests may have saved a newer one
    assert re.search(r"^read +344 +<- data/penguins\.csv$", out, re.M), out
    target = command.split("--out ", 1)[1].split()[0]
    assert re.search(rf"^scored +344 +-> {re.escape(target)}$", out, re.M) and re.search(r"^rejected +0$", out, re.M), (
        out
    )
    scored = pd.read_parquet(tmp_path / target) if target.endswith(".parquet") else pd.read_csv(tmp_path / target)
    assert len(scored) == 344 and {"prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"} <= set(
        scored.columns
    )
    if "--explain 2" in command:  # each row's two largest contributions, after the prediction columns
        assert list(scored.columns[-2:]) == ["reason_1", "reason_2"]
        assert scored["reason_1"].str.fullmatch(r"\w+=[^ ]+ \([+-][\d.e+-]+\)").all()
