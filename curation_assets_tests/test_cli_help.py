"""Every command's ``--help`` renders: argparse %-formats help strings, so a setting whose help
or default holds a literal % (``transcode_x264_avx512``'s "7%") broke ``curation-assets run --help``
with a TypeError until the flags' help went through ``core.settings.flag_help``."""

from __future__ import annotations

import argparse

from curation_assets.cli import build_parser
from curation_assets.core.settings import flag_help


def _parsers(parser: argparse.ArgumentParser, path: str = "curation-assets"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_commands_help_renders():
    seen = {}
    for path, parser in _parsers(build_parser()):
        seen[path] = parser.format_help()  # raises on a stray % in any flag's help
    assert {"curation-assets run", "curation-assets demo", "curation-assets package"} <= set(seen)
    assert "about 7% less encode CPU" in seen["curation-assets run"]


def test_flag_help_keeps_the_text_argparse_shows():
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", help=flag_help("50% of 100%% (default: 5%)"))
    assert "50% of 100%% (default: 5%)" in parser.format_help().replace("\n", " ").replace("  ", " ")
