"""The Jinja2 environment every HTML page is rendered with (the form, the drift report, the training report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def environment(templates: Path) -> Any:
    """Templates from `templates`. autoescape=True: every template is HTML, and names, labels and reasons come
    from the user's files. StrictUndefined: a misspelt variable fails loudly instead of rendering as nothing."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(templates),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
