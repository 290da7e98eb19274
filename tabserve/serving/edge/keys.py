"""Manage the API keys file (API_KEYS_FILE): a key per consumer (team), stored as its SHA-256 only.

    python -m tabserve.serving.edge.keys add fraud-team --rps 5 --burst 10 --records-per-minute 6000 \\
        --routes /predict,/v1
    python -m tabserve.serving.edge.keys list
    python -m tabserve.serving.edge.keys remove fraud-team

`add` makes a random key (32 bytes, URL-safe), writes its hash and limits, and prints the key once, alone
on the last line: it is kept nowhere else. A running server picks the change up within a second or so.
Bad input prints one line (`error: ...`) and exits with code 2. The format and the matching:
tabserve/serving/edge/consumers.py.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from tabserve.core.cli import OneLineParser, fail
from tabserve.serving.edge.consumers import (
    Consumer,
    KeysFileError,
    check_name,
    consumer_from,
    hash_key,
    read_keys_file,
    write_keys_file,
)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m tabserve.serving.edge.keys",
        description="Manage the API keys file: one key per consumer (team), stored as a hash.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add = commands.add_parser("add", help="make a key for a team and print it once")
    add.add_argument("team")
    add.add_argument("--rps", type=float, help="requests per second (per entry worker)")
    add.add_argument("--burst", type=int, help="requests allowed at once above the rate (default: rps rounded up)")
    add.add_argument("--records-per-minute", type=int, help="records scored per minute (per entry worker)")
    add.add_argument(
        "--routes", help="comma-separated path prefixes the team may call, e.g. /predict,/v1 (default: all)"
    )
    listing = commands.add_parser("list", help="the teams and their limits (no keys, hash prefixes only)")
    remove = commands.add_parser("remove", help="remove a team's key")
    remove.add_argument("team")
    for command in (add, listing, remove):
        command.add_argument("--file", help="the keys file (default: API_KEYS_FILE)")
    return parser


def _keys_file(given: str | None) -> Path:
    from tabserve.serving import settings

    path = given or settings.API_KEYS_FILE
    if not path:
        raise KeysFileError("no keys file: pass --file PATH or set API_KEYS_FILE")
    return Path(path)


def _read(path: Path, missing_ok: bool) -> dict[str, Consumer]:
    if missing_ok and not path.exists():
        return {}
    return read_keys_file(path)


def _limits(consumer: Consumer) -> str:
    parts = []
    if consumer.rps is not None:
        parts.append(f"rps {consumer.rps:g}, burst {consumer.bucket_size}")
    if consumer.records_per_minute is not None:
        parts.append(f"{consumer.records_per_minute} records/min")
    parts.append(f"routes {','.join(consumer.routes)}" if consumer.routes else "all routes")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        path = _keys_file(args.file)
        if args.command == "add":
            consumers = _read(path, missing_ok=True)
            check_name(args.team)
            if args.team in consumers:
                raise KeysFileError(
                    f"consumer {args.team!r} already has a key in {path}; remove it first to replace it"
                )
            key = secrets.token_urlsafe(32)
            entry = {
                "key_sha256": hash_key(key),
                "rps": args.rps,
                "burst": args.burst,
                "records_per_minute": args.records_per_minute,
                "routes": [r for r in args.routes.split(",") if r.strip()] if args.routes is not None else None,
            }
            consumer = consumer_from(args.team, {k: v for k, v in entry.items() if v is not None})
            write_keys_file(path, {**consumers, consumer.name: consumer})
            print(f"added {consumer.name} to {path} ({_limits(consumer)}); its key, shown only now:")
            print(key)
        elif args.command == "list":
            consumers = _read(path, missing_ok=False)
            if not consumers:
                print(f"no consumers in {path}")
            for consumer in sorted(consumers.values(), key=lambda c: c.name):
                print(f"{consumer.name}  sha256:{consumer.key_sha256[:8]}…  {_limits(consumer)}")
        else:
            consumers = _read(path, missing_ok=False)
            if args.team not in consumers:
                raise KeysFileError(
                    f"no consumer {args.team!r} in {path} (it has: {', '.join(sorted(consumers)) or 'none'})"
                )
            write_keys_file(path, {name: c for name, c in consumers.items() if name != args.team})
            print(f"removed {args.team} from {path}")
    except KeysFileError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or path}: {exc.strerror}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
