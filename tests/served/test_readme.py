"""Every curl command in the README works as printed (against a test server instead of :3000)."""

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.served


def readme_commands(prefix: str) -> list[str]:
    return [line.strip() for line in (ROOT / "README.md").read_text().splitlines() if line.strip().startswith(prefix)]


def test_readme_curl_commands(server, tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data")
    commands = readme_commands("curl ")
    assert len(commands) >= 5
    outputs = {}
    for command in commands:
        runnable = command.replace("http://localhost:3000", server.url)
        result = subprocess.run(["bash", "-c", runnable], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        outputs[command] = result.stdout
    joined = "\n".join(outputs.values())
    assert '"prediction":"Gentoo"' in joined
    assert "invalid input: island: Input should be 'Biscoe', 'Dream' or 'Torgersen'" in joined
    assert "proba_Adelie" in joined and "Internal Server Error" not in joined
    # Run where a reader runs them (the work tree), they must leave nothing behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_readme_names_the_client_script():
    """The README's `python client.py` is run against a server by tests/served/test_client.py."""
    assert any("python client.py" in line for line in (ROOT / "README.md").read_text().splitlines())


def test_readme_train_commands_print_what_the_readme_shows(bentoml_home):
    """Each `train.py --data tests/data/...` command runs as printed; the summary lines the README
    quotes after it are what it prints."""
    import sys

    text = (ROOT / "README.md").read_text()
    commands = readme_commands(".venv/bin/python train.py --data tests/data/")
    assert len(commands) >= 2
    python = str(Path(sys.executable))
    for command in commands:
        result = subprocess.run(["bash", "-c", command.replace(".venv/bin/python", python, 1)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        after = text.split(command, 1)[1]
        after = after[after.index("```") + 3:]  # past the end of the command's block
        quoted = after[after.index("```\n") + 4:].split("```")[0]  # the next (output) block
        for line in quoted.strip().splitlines():
            assert line in result.stdout, f"{command}: the README shows {line!r}, the command printed:\n{result.stdout}"
