"""Every curl command in the README works as printed (against a test server instead of :3000)."""

import re
import subprocess
import sys

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


def test_readme_client_script(server):
    assert any("python client.py" in line for line in (ROOT / "README.md").read_text().splitlines())
    result = subprocess.run([sys.executable, "client.py", "--url", server.url], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"one: .*'prediction': 'Gentoo'", result.stdout) and "proba_Gentoo" in result.stdout
