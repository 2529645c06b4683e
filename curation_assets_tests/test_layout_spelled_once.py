"""The layout's file names are spelled in ``core/layout.py`` only (issue 22): every other module of
the package builds a layout path with its ``*_path`` functions and directory constants.

The package's sources are parsed (docstrings, which name files for people, are left out) and each
string is searched for a layout path: a literal that starts with a layout directory and ``/``, an
f-string that puts a directory constant before ``/``, or one that builds a layout file name from a
clip or chunk id (``f"{uid}.mp4"``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import curation_assets
from curation_assets.core import layout

PACKAGE = Path(curation_assets.__file__).parent
LAYOUT_MODULE = PACKAGE / "core" / "layout.py"

#: A literal (or an f-string's literal part) that starts with a layout directory and "/".
_DIRECTORY_PATH = re.compile("^(?:" + "|".join(map(re.escape, sorted(layout.ALL_DIRECTORIES, key=len, reverse=True)))
                             + ")/")
#: The names the layout's directory constants have (``layout.CLIPS``, ``METAS``, ...).
_DIRECTORY_CONSTANTS = {name for name, value in vars(layout).items()
                        if name.isupper() and isinstance(value, str) and value in layout.ALL_DIRECTORIES}
#: Suffixes only layout files have; .json and .parquet count when the name is built from an id.
_LAYOUT_ONLY_SUFFIXES = (layout.CLIP_SUFFIX, layout.PREVIEW_SUFFIX, layout.EMBEDDING_SUFFIX)
_ID_SUFFIXES = (layout.DOCUMENT_SUFFIX, layout.PARQUET_SUFFIX)
_ID_NAME = re.compile(r"uid|uuid|chunk", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _names_in(node: ast.AST) -> str:
    return " ".join(n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
                    if isinstance(n, (ast.Name, ast.Attribute)))


def _fstring_findings(node: ast.JoinedStr) -> list[str]:
    out = []
    for value, after in zip(node.values, node.values[1:]):
        if not (isinstance(value, ast.FormattedValue) and isinstance(after, ast.Constant) and isinstance(after.value, str)):
            continue
        names = _names_in(value.value)
        if after.value.startswith("/") and set(names.split()) & _DIRECTORY_CONSTANTS:
            out.append("a layout directory constant before '/'")
        if after.value.startswith(_LAYOUT_ONLY_SUFFIXES) or (after.value.startswith(_ID_SUFFIXES) and _ID_NAME.search(names)):
            out.append(f"a layout file name built from {names or 'a value'!r}")
    return out


def layout_spellings(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for each layout path a module's source spells."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):  # an f-string's literal parts are visited as constants too
        if isinstance(node, ast.JoinedStr):
            found += [(node.lineno, why) for why in _fstring_findings(node)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if _DIRECTORY_PATH.match(node.value):
                found.append((node.lineno, f"the path {node.value[:40]!r}"))
    return found


def test_no_layout_path_is_spelled_outside_the_layout_module():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == LAYOUT_MODULE:
            continue
        for line, what in layout_spellings(path.read_text()):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not found, "layout paths spelled outside core/layout.py (use its *_path functions):\n" + "\n".join(found)


def test_the_scan_finds_each_kind_of_spelling():
    """The scanner itself: each way of re-typing a layout path is found; docstrings and the
    ``*_path`` calls are not."""
    spelled = {
        'rel = f"{layout.CLIPS}/{uid}.mp4"': 2,
        'url = join(out, "previews", uid, f"{s}_{e}.webp")': 1,
        'rel = f"{METAS}/{clip.uuid}.json"': 2,
        'rel = "metas/v0/" + uid': 1,
        'rel = f"processed_videos/{rel_path}"': 1,
        'name = f"{chunk_id}.parquet"': 1,
    }
    for source, count in spelled.items():
        assert len(layout_spellings(source)) == count, (source, layout_spellings(source))
    clean = ('"""Writes ``clips/<uuid>.mp4`` and ``metas/v0/<uuid>.json``."""\n'
             'rel = layout.clip_path(uid)\nname = f"{fragment_name(rel)}.parquet"\nwhy = "its metas/v0 document"\n')
    assert layout_spellings(clean) == []
