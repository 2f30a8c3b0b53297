"""Every relative link in the README and ``docs/`` points at a file that exists and, with ``#heading``, at a heading
that file has.

The docs quote measured figures under dated headings and link to them from the README; a heading edited to correct
a time or a session breaks every link to it, silently on GitHub. Anchors are made the way GitHub makes them: the
heading in lower case, punctuation but hyphens dropped, spaces as hyphens, ``-1``, ``-2``... on repeats. Links
inside fenced code blocks are not links and are skipped.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _lines(path: Path):
    """(number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    out: set[str] = set()
    repeats: dict[str, int] = {}
    for _, line in _lines(path):
        if match := HEADING.match(line):
            slug = _slug(match.group(2))
            n = repeats.get(slug, 0)
            repeats[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(out)


def broken_links(files: list[Path], root: Path = REPO) -> list[str]:
    broken = []
    for path in files:
        for number, line in _lines(path):
            for target in LINK.findall(line):
                if target.startswith(("http://", "https://", "mailto:")):
                    continue
                file_part, _, fragment = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(root)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                    broken.append(f"{where} (no such heading in {dest.name})")
    return broken


def test_every_relative_link_in_readme_and_docs_resolves():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert len(files) > 5
    assert broken_links(files) == []


def test_a_renamed_heading_or_a_missing_file_is_reported(tmp_path):
    target = tmp_path / "target.md"
    target.write_text("# Runs (2026-12-01, 14:03-14:12 UTC)\n\n## Notes\n\n## Notes\n")
    source = tmp_path / "source.md"
    source.write_text("\n".join([
        "[ok](target.md#runs-2026-12-01-1403-1412-utc)",
        "[repeat](target.md#notes-1)",
        "[same file](#top)",
        "[old time](target.md#runs-2026-12-01-1403-1413-utc)",
        "[gone](missing.md)",
        "```",
        "[in code](nowhere.md)",
        "```",
        "# Top",
    ]))
    assert broken_links([source], root=tmp_path) == [
        "source.md:4: target.md#runs-2026-12-01-1403-1413-utc (no such heading in target.md)",
        "source.md:5: missing.md (no such file)",
    ]
