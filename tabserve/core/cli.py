"""What the `python -m tabserve.<tool>` commands share: bad usage and bad input end in one line
`error: ...` on stderr and exit code 2, never argparse's usage dump or a traceback."""

from __future__ import annotations

import argparse
import sys


def fail(message: str) -> int:
    """Print the one line; the exit code to return."""
    print(f"error: {message}", file=sys.stderr)
    return 2


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print the usage too
        raise SystemExit(fail(message))


SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}  # --sep's names


def column_list(value: str) -> tuple[str, ...]:
    """A --option COL[,COL] value as names."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so a staged model version is cleaned up
