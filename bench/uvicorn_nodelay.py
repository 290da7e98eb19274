"""Run an ASGI app in N uvicorn processes, each on its own SO_REUSEPORT listener with TCP_NODELAY.

    python bench/uvicorn_nodelay.py bench.baseline_fastapi:app --port 8000 --workers 2

Why not `uvicorn --workers N` (the FastAPI baseline's first configuration), two problems measured here:
- it binds the shared listener as socket(AF_INET) with protocol 0; accepted connections inherit it, and
  asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP. Nagle's algorithm then holds
  the body of each answer until the client's delayed ACK: +40 ms on every keep-alive request (uvicorn
  issue #3149; one worker is unaffected because asyncio binds that listener itself);
- the workers accept from one queue, so which one gets each keep-alive connection is a race: in one run
  a worker held most of the 32 connections and the baseline served half its throughput.
Here every worker binds its own listener with IPPROTO_TCP and SO_REUSEPORT, and the kernel spreads
the connections over them by hash.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def serve_one(app: str, host: str, port: int) -> None:
    import uvicorn

    sys.path.insert(0, str(Path.cwd()))  # import the app from the working directory, as uvicorn does
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        sys.exit(f"error: cannot listen on {host}:{port}: {exc.strerror}")
    config = uvicorn.Config(app, access_log=False, log_level="warning", backlog=2048)
    uvicorn.Server(config).run(sockets=[listener])


def main() -> None:
    parser = argparse.ArgumentParser(description="N uvicorn processes on SO_REUSEPORT listeners with TCP_NODELAY")
    parser.add_argument("app", help="module:attribute, e.g. bench.baseline_fastapi:app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a worker, started by the parent
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.one or args.workers == 1:
        serve_one(args.app, args.host, args.port)
        return

    cmd = [sys.executable, __file__, args.app, "--host", args.host, "--port", str(args.port), "--one"]
    workers = [subprocess.Popen(cmd) for _ in range(args.workers)]

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _, status = os.wait()  # the first worker to end (a signal, or a failure such as a taken port) ends all
    stop(signal.SIGTERM, None)
    codes = [worker.wait() for worker in workers]
    sys.exit(os.waitstatus_to_exitcode(status) or max(codes, key=abs))


if __name__ == "__main__":
    main()
