"""Every curl command in the README works as printed (against a test server instead of :3000)."""

import subprocess

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
