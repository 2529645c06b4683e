"""The settings reference (docs/settings.md), generated from the one definition of each settings
section and the CLI's own parser, so the documentation cannot drift from what the code accepts.

``python -m curation_assets.settings_doc [docs/settings.md]`` rewrites each table between its
``<!-- <block>:begin -->`` / ``<!-- <block>:end -->`` markers (:data:`BLOCKS`); a test fails when
the page differs from what this module writes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core import caption_settings
from .core.options import ENV_PREFIX, setting_fields
from .core.settings import Setting, base_type, bound_text, section_fields
from .packaging import settings as packaging_settings

DOC = Path("docs/settings.md")


def _flags() -> dict[str, list[str]]:
    """Each setting's flags on ``curation-assets run`` (read from the parser itself)."""
    from .cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    flags: dict[str, list[str]] = {}
    for action in sub.choices["run"]._actions:  # noqa: SLF001
        flags.setdefault(action.dest, []).extend(action.option_strings)
    return flags


def package_flags_in_parser() -> dict[str, list[str]]:
    """Each packaging setting's flags on ``curation-assets package <command>``, read from the parser
    itself (``package shards --max-shard-bytes``), so the table names what the CLI accepts."""
    from .cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    package = sub.choices["package"]
    commands = next(a for a in package._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    flags: dict[str, list[str]] = {}
    for command, command_parser in commands.choices.items():
        for action in command_parser._actions:  # noqa: SLF001
            if action.dest in packaging_settings.PackagingSection.model_fields:
                flags.setdefault(action.dest, []).append(f"package {command} {action.option_strings[0]}")
    return flags


def default_text(value: Any, kind: Any) -> str:
    """A default as this page and ``curation-assets package --help`` show it."""
    scalar, _ = base_type(kind)
    if value is None:
        return "off"
    if scalar is list:
        return ", ".join(str(v) for v in value)
    if scalar is bool:
        return "on" if value else "off"
    if value == "":
        return '""'
    return str(value)


def _bounds(setting: Setting) -> str:
    parts = []
    if setting.choices:
        parts.append(" / ".join(f"`{c}`" for c in setting.choices))
    for op, value in ((">=", setting.ge), (">", setting.gt), ("<=", setting.le)):
        if value is not None:
            parts.append(f"{op} {bound_text(value)}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_table() -> str:
    """The pipeline's table: setting, CLI flag, default, allowed values, meaning."""
    flags = _flags()
    rows = [f"| setting (`{ENV_PREFIX}<NAME>`) | CLI flag | default | allowed | meaning |", "|---|---|---|---|---|"]
    for name, kind, default, setting in setting_fields():
        if setting.location:
            flag = "(code location only)"
        else:
            flag = " ".join(f"`{f}`" for f in flags.get(name, [])) or "-"
        marks = []
        if not setting.hashed:
            marks.append("not in `settings_hash`")
        elif setting.recorded_when_set:
            marks.append("in `settings_hash` only when set")
        meaning = _cell(setting.help) + (f" ({'; '.join(marks)})" if marks else "")
        rows.append(f"| `{name}` | {flag} | {default_text(default, kind)} | {_bounds(setting)} | {meaning} |")
    return "\n".join(rows)


def section_table(section: Any, prefix: str, flags: dict[str, list[str]] | None = None) -> str:
    """A section's table: setting, (with ``flags``: its CLI flags,) default, allowed values, meaning."""
    head = f"| setting (`{prefix}<NAME>`) |" + (" CLI flag |" if flags is not None else "")
    rows = [f"{head} default | allowed | meaning |", "|---" * (head.count("|") + 2) + "|"]
    for name, kind, default, setting in section_fields(section):
        flag = "" if flags is None else " " + ("<br>".join(f"`{f}`" for f in flags.get(name, [])) or "-") + " |"
        rows.append(f"| `{name}` |{flag} {default_text(default, kind)} | {_bounds(setting)} | {_cell(setting.help)} |")
    return "\n".join(rows)


#: Each generated block of the page: its marker name and how it is made.
BLOCKS: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "packaging-settings": lambda: section_table(packaging_settings.PackagingSection, packaging_settings.ENV_PREFIX,
                                                package_flags_in_parser()),
    "caption-settings": lambda: section_table(caption_settings.CaptionSection, caption_settings.ENV_PREFIX),
}


def markers(block: str) -> tuple[str, str]:
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


def render(text: str) -> str:
    """``text`` with every block of :data:`BLOCKS` replaced by the generated table; each must be there."""
    for block, make in BLOCKS.items():
        begin, end = markers(block)
        try:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
        except ValueError:
            raise ValueError(f"the page has no {begin} ... {end} block") from None
        text = f"{head}{begin}\n{make()}\n{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DOC
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"{path}: settings tables written ({', '.join(BLOCKS)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
