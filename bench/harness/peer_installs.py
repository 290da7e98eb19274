"""The peers' virtualenvs (bench/peers/ creates and checks one): all started in the background, in parallel,
while the model trains; then each one's versions and install time for results.json, or why it was left out
(the run goes on without it)."""

from __future__ import annotations

import time
from pathlib import Path

import peers

from harness import ROOT
from harness.processes import stop, supervise

PEER_INSTALL_TIMEOUT_S = 900


def start_peer_installs(names: list[str], args) -> dict:
    """Start creating each peer's virtualenv (in the background, in parallel); see bench/peers/__init__.py."""
    installs = {}
    for name in names:
        log = args.workdir / f"install_{name}.log"
        clock = time.perf_counter()
        proc = peers.start_install(name, args.peer_venvs / name, log)
        if proc is not None:
            supervise(proc)
            print(f"installing {name} into {args.peer_venvs / name} (log: {log})", flush=True)
        installs[name] = (proc, log, clock)
    return installs


def finish_peer_installs(installs: dict, args, started: float) -> dict:
    """Wait for the installs; per peer: versions and install seconds, or the error (the run goes on without it)."""
    info = {}
    for name, (proc, log, clock) in installs.items():
        venv = args.peer_venvs / name
        requirements = peers.requirement_files(name)[0]
        entry: dict = {
            "venv": str(venv),
            "requirements": str(requirements.relative_to(ROOT) if requirements.is_relative_to(ROOT) else requirements),
        }
        try:
            if proc is None:
                entry["install_s"] = 0.0
                entry["reused"] = True
            else:
                try:
                    returncode = proc.wait(timeout=max(60.0, PEER_INSTALL_TIMEOUT_S - (time.perf_counter() - clock)))
                finally:
                    stop(proc)
                if returncode != 0:
                    raise RuntimeError(f"pip exited with {returncode}: {log_tail(log)}")
            entry["versions"] = peers.finish_install(name, venv)
            if proc is not None:
                entry["install_s"] = round(time.perf_counter() - clock, 1)  # venv + pip + the import check
            print(
                f"  {name}: {entry['versions']} ({'reused' if proc is None else str(entry['install_s']) + ' s'})",
                flush=True,
            )
        except Exception as exc:  # noqa: BLE001 - any failure leaves this peer out, not the run
            entry["error"] = f"not installed: {exc}"[:4000]
            print(f"  WARNING: {name} left out, {str(exc)[:600]}", flush=True)
        info[name] = entry
    # From the run's start to the peers installed (they install while the model trains and the features load).
    args.peers_ready_after_s = round(time.perf_counter() - started, 1) if installs else None
    if installs:
        print(f"peers ready {args.peers_ready_after_s} s after the start", flush=True)
    return info


def log_tail(log: Path, lines: int = 12) -> str:
    """The last lines of an install log, without pip's notes about this machine's local indexes."""
    kept = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if line.strip() and "is ignored: it is neither a file nor a directory" not in line
    ]
    return " | ".join(kept[-lines:])
