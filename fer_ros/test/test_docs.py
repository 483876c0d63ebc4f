"""The repository's Markdown (README, docs/, each model's card): every relative link names a file or folder that
exists, so a reader following one from the README or a model card lands on a page."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                *(ROOT / "fer_ros" / "models").glob("*/MODEL_CARD.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    """The link targets in Markdown text that point into the repository (no scheme, no bare #anchor), without
    their #anchor."""
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_relative_links_are_found_in_link_text():
    text = "see [a](docs/a.md), [b](https://x.org/b), [c](#top), [d](../d.md#part) and [e](mailto:x@y)"
    assert relative_links(text) == ["docs/a.md", "../d.md"]


def test_the_pages_exist():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert "README.md" in names
    assert any(n.endswith("MODEL_CARD.md") for n in names)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path):
    missing = [t for t in relative_links(page.read_text(encoding="utf-8")) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to what does not exist: {missing}"
