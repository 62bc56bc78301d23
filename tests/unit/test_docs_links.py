"""Every relative link of the project's Markdown resolves: the file it names exists in the repository,
and its ``#anchor`` is a heading of that file as GitHub names headings. A link that leads nowhere is
what a reader meets first when a page is moved or a section renamed.

External links (``https:``, ``mailto:``) are not followed: the tests make no network request.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Not the project's pages: virtual environments, caches, build output and git's own files.
_SKIPPED_PARTS = {"build", "node_modules", "dist"}

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")  # GitHub's anchors into a file that is not Markdown


def markdown_files(root: Path) -> list[Path]:
    """The project's Markdown pages: every ``*.md`` outside hidden folders, build output and eggs."""
    found = []
    for path in sorted(root.rglob("*.md")):
        parts = path.relative_to(root).parts[:-1]
        if any(p.startswith(".") or p in _SKIPPED_PARTS or p.endswith(".egg-info") for p in parts):
            continue
        found.append(path)
    return found


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1: what a renderer reads as Markdown."""
    lines = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)[0] * len(opening.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            continue
        lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text in lower case, every character that is not a
    letter, digit, space, ``-`` or ``_`` dropped, each space a ``-`` (so ``A & B`` is ``a--b``)."""
    text = _CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page: one per heading, repeats numbered ``-1``, ``-2``… as GitHub numbers them."""
    seen: Counter[str] = Counter()
    found = set()
    for _, line in _prose_lines(text):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    for explicit in re.findall(r"<a\s[^>]*\b(?:name|id)=\"([^\"]+)\"", text, re.IGNORECASE):
        found.add(explicit)
    return found


@dataclass(frozen=True, slots=True)
class Link:
    line: int
    target: str


def links(text: str) -> list[Link]:
    """Every link target of a page outside code: inline links and images, reference definitions and
    HTML ``<a href>``/``<img src>``."""
    found = []
    for number, line in _prose_lines(text):
        definition = _REFERENCE_DEFINITION.match(line)
        if definition:
            found.append(Link(number, definition.group(1)))
            continue
        prose = _CODE_SPAN.sub("", line)
        found += [Link(number, target) for target in _INLINE_LINK.findall(prose)]
        found += [Link(number, target) for target in _HTML_LINK.findall(prose)]
    return found


def broken_links(page: Path, root: Path) -> list[str]:
    """What is wrong with each relative link of ``page``, as ``page:line: target: why``."""
    problems = []
    where = page.relative_to(root)
    for link in links(page.read_text(encoding="utf-8")):
        if _SCHEME.match(link.target):
            continue  # external: not followed
        path_part, _, anchor = link.target.partition("#")
        target = page if not path_part else (page.parent / path_part).resolve()
        problem = None
        if not target.is_relative_to(root):
            problem = "leads outside the repository"
        elif not target.exists():
            problem = f"{target.relative_to(root)} does not exist"
        elif anchor and target.suffix == ".md":
            if anchor not in anchors(target.read_text(encoding="utf-8")):
                problem = f"{target.relative_to(root)} has no heading with the anchor #{anchor}"
        elif anchor and not _LINE_ANCHOR.match(anchor):
            problem = f"#{anchor} points into {target.relative_to(root)}, which has no headings"
        if problem:
            problems.append(f"{where}:{link.line}: {link.target}: {problem}")
    return problems


# --- the project's pages ------------------------------------------------------------------------------

PAGES = markdown_files(ROOT)


def test_the_pages_the_project_promises_are_all_checked() -> None:
    """The check covers at least the README, CONTRIBUTING.md, docs/, the bench and the chart READMEs."""
    checked = {page.relative_to(ROOT).as_posix() for page in PAGES}
    promised = {"README.md", "CONTRIBUTING.md", "bench/README.md"}
    promised |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    promised |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "charts").glob("*/README.md")}
    assert len(promised) > 5
    assert promised <= checked, sorted(promised - checked)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page, ROOT) == []


# --- the checker itself ---------------------------------------------------------------------------------


def test_slugs_follow_githubs_rule() -> None:
    assert slug("Moving from the Go version") == "moving-from-the-go-version"
    assert slug("2b. Advisory events (Spot rebalance recommendations)") == (
        "2b-advisory-events-spot-rebalance-recommendations"
    )
    assert slug("The linux/arm64 image, under emulation") == "the-linuxarm64-image-under-emulation"
    assert (
        slug("`make demo`: watch the handler drain a Spot node")
        == "make-demo-watch-the-handler-drain-a-spot-node"
    )
    assert slug("Approval (`-approveEvents`)") == "approval--approveevents"
    assert slug("Budgets (DESIGN §6)") == "budgets-design-6"
    assert slug("A & B") == "a--b"
    assert slug("`last_resort` stops") == "last_resort-stops"


def test_repeated_headings_get_numbered_anchors_and_code_blocks_have_no_headings() -> None:
    text = "# Top\n## Install\n```sh\n# not a heading\n```\n## Install\n~~~\n## inside tildes\n~~~\n"
    assert anchors(text) == {"top", "install", "install-1"}


def test_links_in_code_are_not_links() -> None:
    text = 'see [a](a.md) and `[b](b.md)`\n```\n[c](c.md)\n```\n[ref]: d.md\n<a href="e.md#x">e</a>\n'
    assert [link.target for link in links(text)] == ["a.md", "d.md", "e.md#x"]


def _repo(tmp_path: Path, page: str) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "flags.md").write_text("# Flags\n## Web/metrics\n", encoding="utf-8")
    (tmp_path / "src.py").write_text("", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(page, encoding="utf-8")
    return readme


def test_links_that_resolve_are_accepted(tmp_path: Path) -> None:
    readme = _repo(
        tmp_path,
        "# Title\n## Usage\n[flags](docs/flags.md#webmetrics) [up](#usage) [code](src.py#L3-L5) "
        "[docs](docs) [site](https://example.com/x#y) [mail](mailto:a@example.com)\n",
    )
    assert broken_links(readme, tmp_path) == []


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ("[x](docs/missing.md)", "docs/missing.md does not exist"),
        ("[x](docs/flags.md#web-metrics)", "docs/flags.md has no heading with the anchor #web-metrics"),
        ("[x](#nowhere)", "README.md has no heading with the anchor #nowhere"),
        ("[x](src.py#main)", "#main points into src.py, which has no headings"),
        ("[x](../outside.md)", "leads outside the repository"),
        ("![x](docs/missing.png)", "docs/missing.png does not exist"),
        ('<a href="docs/flags.md#nope">x</a>', "docs/flags.md has no heading with the anchor #nope"),
        ("[x]: docs/gone.md", "docs/gone.md does not exist"),
    ],
)
def test_a_broken_link_is_reported_with_its_line_and_why(tmp_path: Path, link: str, problem: str) -> None:
    readme = _repo(tmp_path, f"# Title\n\n{link}\n")
    target = re.search(r"\(([^)]+)\)|href=\"([^\"]+)\"|\]: (\S+)", link)
    assert target is not None
    written = next(group for group in target.groups() if group)
    assert broken_links(readme, tmp_path) == [f"README.md:3: {written}: {problem}"]
