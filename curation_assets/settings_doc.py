"""The README's settings table, generated from the one settings definition (``core.options``) and
the CLI's own parser, so the documentation cannot drift from what the code accepts.

``python -m curation_assets.settings_doc README.md`` rewrites the table between the README's
``<!-- settings:begin -->`` / ``<!-- settings:end -->`` markers; a test fails when they differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .core.options import ENV_PREFIX, base_type, bound_text, setting_fields

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def _flags() -> dict[str, list[str]]:
    """Each setting's flags on ``curation-assets run`` (read from the parser itself)."""
    from .cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    flags: dict[str, list[str]] = {}
    for action in sub.choices["run"]._actions:  # noqa: SLF001
        flags.setdefault(action.dest, []).extend(action.option_strings)
    return flags


def _default(value: Any, kind: Any) -> str:
    scalar, _ = base_type(kind)
    if value is None:
        return "off"
    if scalar is tuple:
        return ", ".join(value)
    if scalar is bool:
        return "on" if value else "off"
    if value == "":
        return '""'
    return str(value)


def _bounds(setting: Any) -> str:
    parts = []
    if setting.choices:
        parts.append(" / ".join(f"`{c}`" for c in setting.choices))
    for op, value in ((">=", setting.ge), (">", setting.gt), ("<=", setting.le)):
        if value is not None:
            parts.append(f"{op} {bound_text(value)}")
    return "; ".join(parts)


def settings_table() -> str:
    """The markdown table: setting, CLI flag, default, allowed values, meaning."""
    flags = _flags()
    rows = ["| setting (`CURATION_<NAME>`) | CLI flag | default | allowed | meaning |", "|---|---|---|---|---|"]
    for name, kind, default, setting in setting_fields():
        if setting.location:
            flag = "(code location only)"
        else:
            flag = " ".join(f"`{f}`" for f in flags.get(name, [])) or "-"
        marks = []
        if not setting.hashed:
            marks.append("not in `settings_hash`")
        meaning = setting.help.replace("|", "\\|") + (f" ({'; '.join(marks)})" if marks else "")
        rows.append(f"| `{name}` | {flag} | {_default(default, kind)} | {_bounds(setting)} | {meaning} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    """``readme`` with its settings table replaced by the generated one."""
    try:
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"the README has no {BEGIN} ... {END} block") from None
    return f"{head}{BEGIN}\n{settings_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "README.md")
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"{path}: settings table written ({ENV_PREFIX}<NAME> variables, CLI flags, defaults)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
