"""Matplotlib figures for the pages the tools write (the drift report, the training report), as PNG data URIs:
a page that carries its own images opens anywhere, with no other files and no scripts.

matplotlib is a dev dependency (not in the Bento), so it is imported only when a page is drawn, with the Agg
backend: no display needed, and the same pixels on every machine.
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def subplots(*args: Any, **options: Any) -> Iterator[tuple[Any, Any]]:
    """plt.subplots(...), closed however the drawing ends (pyplot keeps every figure it made until closed)."""
    plt = pyplot()
    fig, axes = plt.subplots(*args, **options)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def png_data_uri(fig: Any) -> str:
    """The figure as `data:image/png;base64,...`, for an <img src>; the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
