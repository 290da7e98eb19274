"""The text the tests that run the documentation read: README.md and the pages of docs/ (the MkDocs site)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def page_names() -> list[str]:
    """Every page of the site: docs/*.md, by name."""
    return sorted(path.name for path in DOCS.glob("*.md"))


def page(name: str) -> str:
    """One page's Markdown, e.g. page("bring-your-own-model.md")."""
    return (DOCS / name).read_text()


def docs_text(*pages: str, exclude: tuple[str, ...] = ()) -> str:
    """README.md followed by the named pages (every page when none is named), less those in `exclude`, as one text."""
    names = [name for name in (pages or page_names()) if name not in exclude]
    return "\n".join([(ROOT / "README.md").read_text(), *(page(name) for name in names)])
