"""Real engines for the tests, each started in a temporary directory on a free port and stopped after:
Redis (the shared prediction cache), PostgreSQL (the feature table), Prometheus (monitoring).

Debian's packages (`make engines`, part of `make test`) provide the binaries. Each class is a context
manager; `stop()` and `start()` may also be called mid-test to take the engine down and bring it back
on the same port and data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def _wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{process.args[0]} not listening on {port} after {timeout}s:\n{log.read_text()[-3000:]}")


class _Engine:
    """A server process on a fixed free port; start/stop may repeat (the data directory stays)."""

    name = "engine"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"tabserve-{self.name}-"))
        os.chmod(self.dir, 0o777)  # PostgreSQL runs as its own user when the tests run as root
        self.log_path = self.dir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> _Engine:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self.popen_options(),
        )
        log.close()
        _wait_port(self.port, self.process, self.log_path)
        return self

    def popen_options(self) -> dict:
        return {}

    stop_signal = signal.SIGTERM

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis(_Engine):
    name = "redis"

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Postgres(_Engine):
    """PostgreSQL refuses to run as root: as root, the server runs as Debian's `postgres` user."""

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: SIGTERM waits for every pooled client to disconnect

    def __init__(self) -> None:
        super().__init__()
        self.data = self.dir / "data"
        self._as_user = self._user()
        subprocess.run(
            self._prefix()
            + [str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "tabserve", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            cwd=self.dir,
            **self.popen_options(),
        )

    @staticmethod
    def _user() -> pwd.struct_passwd | None:
        return pwd.getpwnam("postgres") if os.getuid() == 0 else None

    def _prefix(self) -> list[str]:
        return []

    def popen_options(self) -> dict:
        if self._as_user is None:
            return {}
        return {"user": self._as_user.pw_uid, "group": self._as_user.pw_gid, "extra_groups": []}

    def command(self) -> list[str]:
        return [
            str(POSTGRES_BIN / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ]

    @property
    def url(self) -> str:
        """A SQLAlchemy URL (psycopg 3) for the `postgres` database as the `tabserve` superuser."""
        return f"postgresql+psycopg://tabserve@127.0.0.1:{self.port}/postgres"


class Prometheus(_Engine):
    """Started with a config file the test writes (`config`: the YAML text)."""

    name = "prometheus"

    def __init__(self, config: str) -> None:
        super().__init__()
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(config)

    def command(self) -> list[str]:
        return [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
