"""The README's and docs' relative links lead to files (and anchors) that exist, and no file
points to a design document outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
SCHEMES = ("http://", "https://", "mailto:")


def anchors(page: Path) -> set[str]:
    """Explicit `<a id="...">` anchors and GitHub's heading anchors of a markdown page."""
    text = page.read_text(encoding="utf-8")
    found = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [link for link in LINK.findall(text) if not link.startswith(SCHEMES)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_exist(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_design_pointers_lead_to_sections() -> None:
    """Every `docs/design.md#anchor` named in the code exists in docs/design.md."""
    design = anchors(ROOT / "docs" / "design.md")
    missing = []
    for source in sorted(ROOT.glob("avatarpose_ns/**/*.py")):
        for anchor in re.findall(r"docs/design\.md#([\w\-]+)", source.read_text(encoding="utf-8")):
            if anchor not in design:
                missing.append(f"{source.relative_to(ROOT)}: #{anchor}")
    assert not missing, missing


def test_no_file_points_to_an_outside_design_brief() -> None:
    """The repository speaks only of itself: its design lives in docs/design.md."""
    offenders = []
    for folder in ("avatarpose_ns", "benchmarks", "scripts", "tests", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path == Path(__file__).resolve():
                continue
            data = path.read_bytes()
            if b"\0" not in data and b"DESIGN.md" in data:  # every text file: code, docs, logs, json
                offenders.append(str(path.relative_to(ROOT)))
    if "DESIGN.md" in (ROOT / "README.md").read_text(encoding="utf-8"):
        offenders.append("README.md")
    assert not offenders, offenders


def test_file_paths_named_in_docs_exist() -> None:
    """Paths such as `tests/models/test_deformer.py` or `scripts/demo.sh` named in the pages exist,
    so moving a file cannot leave the docs pointing at nothing."""
    pattern = re.compile(r"`((?:avatarpose_ns|tests|scripts|benchmarks|docs)/[\w\-./]+\.(?:py|sh|md|json|png))`")
    missing = []
    for page in [*PAGES, ROOT / "benchmarks" / "RESULTS.md"]:
        for name in pattern.findall(page.read_text(encoding="utf-8")):
            if not (ROOT / name).exists():
                missing.append(f"{page.relative_to(ROOT)}: {name}")
    assert not missing, missing
