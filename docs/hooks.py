"""MkDocs hooks (mkdocs.yml `hooks:`): the configuration page's tables come from the code.

docs/configuration.md holds the marker line `<!-- settings -->`; it is replaced with
`tabserve.serving.settings.settings_markdown()`, the tables of every environment variable the code declares
(name, default, meaning) in the registry of tabserve/core/config.py, so the page cannot drift from the settings.
"""

from __future__ import annotations

MARKER = "<!-- settings -->"
PAGE = "configuration.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if markdown.count(MARKER) != 1:
        raise ValueError(f"docs/{PAGE} must hold the line {MARKER!r} exactly once")
    from tabserve.serving.settings import settings_markdown

    return markdown.replace(MARKER, settings_markdown())
