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
