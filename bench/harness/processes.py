"""The processes a run starts (servers, Locust, peer installs, batch scoring, py-spy): each in its own process
group, and every one still running killed on exit, on failure and on Ctrl-C (`kill_all_on_exit`)."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path

children: list[subprocess.Popen] = []  # started and not stopped yet


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)  # a group paused while idle (Server.pause_idle) must run to exit
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def kill_all() -> None:
    while children:
        kill_group(children.pop(), grace=5.0)


def _on_signal(signum, frame):  # noqa: ARG001
    kill_all()
    sys.exit(128 + signum)


def kill_all_on_exit() -> None:
    """Kill every process still running when this one exits, or on SIGTERM or Ctrl-C."""
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def supervise(proc: subprocess.Popen) -> subprocess.Popen:
    """Kill a process started elsewhere (in its own process group) with the rest."""
    children.append(proc)
    return proc


def spawn(cmd: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    children.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    kill_group(proc)
    if proc in children:
        children.remove(proc)


def pause(proc: subprocess.Popen, paused: bool) -> None:
    """Stop (SIGSTOP) or resume (SIGCONT) a process's whole group."""
    try:
        os.killpg(proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)
    except ProcessLookupError:
        pass
