"""Every link in README.md and docs/*.md resolves: a relative link names a file (or folder) that
exists, and its ``#anchor`` a heading of the target, slugged as GitHub slugs headings. External
http(s) links are listed, not fetched (the tests run offline). Links inside code (fenced blocks,
inline code spans) are text, not links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target up to the first space or closing parenthesis
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def _prose_lines(text: str):
    """(line number, line) outside fenced code blocks, inline code spans blanked."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (links as their text, code without its
    backticks, emphasis marks dropped) lower-cased, every character that is not a letter, digit,
    space, hyphen or underscore removed, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a page offers: its headings' slugs (a repeated slug gets -1, -2, ...) and
    explicit HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = page.read_text(encoding="utf-8")
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    found.update(HTML_ANCHOR.findall(text))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    return [(number, m.group(1)) for number, line in _prose_lines(page.read_text(encoding="utf-8"))
            for m in LINK.finditer(line)]


def external(page: Path) -> list[str]:
    """The page's links with a scheme (http:, https:, mailto:, ...): listed, never fetched."""
    return [target for _, target in links(page) if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I)]


def broken(page: Path) -> list[str]:
    """What is wrong with each relative link of ``page``, as 'file:line: target: why'."""
    problems = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and (dest.suffix != ".md" or unquote(anchor) not in anchors(dest)):
            problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return problems


def test_the_pages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/running.md", "docs/performance.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert broken(page) == []
    print(f"{page.relative_to(ROOT)}: external links, not fetched: {external(page) or 'none'}")


def test_github_slugs():
    assert github_slug("Cutting without re-encoding (`--transcode-encoder copy`)") == \
        "cutting-without-re-encoding---transcode-encoder-copy"
    assert github_slug("Where the output differs from NeMo Curator's") == "where-the-output-differs-from-nemo-curators"
    assert github_slug("`s3://` input and output") == "s3-input-and-output"
    assert github_slug("Python API (what the Dagster assets call)") == "python-api-what-the-dagster-assets-call"
    assert github_slug("A million videos and Dagster's partitions") == "a-million-videos-and-dagsters-partitions"
    assert github_slug("metas_v0 and [the spec](x.md)") == "metas_v0-and-the-spec"


def test_a_broken_link_and_a_missing_anchor_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B page\n\n## Two words\n\n## Two words\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text("\n".join([
        "[ok](docs/b.md#two-words) [ok too](docs/b.md#two-words-1) [self](#top) [web](https://example.com/x)",
        "# Top",
        "[gone](docs/missing.md) [no anchor](docs/b.md#three-words)",
        "`[in code](docs/nowhere.md)`",
        "```", "[in a fence](docs/nowhere.md)", "```"]), encoding="utf-8")
    assert broken(page) == ["README.md:3: docs/missing.md: no such file docs/missing.md",
                            "README.md:3: docs/b.md#three-words: no heading #three-words in docs/b.md"]
    assert external(page) == ["https://example.com/x"]
