"""``curation-assets package`` options come from one definition (``packaging/settings.py``): every
option of every subcommand has help and shows its default (or that it is required), each setting's
flag carries the setting's own default and help, and docs/settings.md names the flags the parser
has."""

from __future__ import annotations

import argparse

import pytest

from curation_assets import settings_doc
from curation_assets.cli import build_parser
from curation_assets.core.settings import section_fields
from curation_assets.packaging import cli
from curation_assets.packaging.settings import PackagingSection, package_flags

COMMANDS = ("manifest", "shards", "dedup")


def _sub(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def package_commands() -> dict[str, argparse.ArgumentParser]:
    return dict(_sub(_sub(build_parser()).choices["package"]).choices)


def option_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Options without help, or whose help shows neither a default nor that they are required."""
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0] if action.option_strings else action.dest
        if not action.help:
            problems.append(f"{flag}: no help")
        elif "(default: " not in action.help and not (action.required and "(required)" in action.help):
            problems.append(f"{flag}: help shows no default")
    return problems


def test_every_package_option_has_help_and_a_default():
    commands = package_commands()
    assert set(commands) == set(COMMANDS)
    for name, parser in commands.items():
        assert option_problems(parser) == [], name


def test_the_check_finds_a_flag_without_help_or_default():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a")
    parser.add_argument("--b", type=int, default=3, help="bees")
    parser.add_argument("--c", required=True, help="cees (required)")
    assert option_problems(parser) == ["--a: no help", "--b: help shows no default"]


def test_each_setting_is_a_flag_with_its_default_and_help():
    commands = package_commands()
    for name, kind, default, meta in section_fields(PackagingSection):
        flags = package_flags(name)
        assert flags, name
        for command, flag in flags:
            action = next((a for a in commands[command]._actions if flag in a.option_strings), None)
            assert action is not None, f"package {command} {flag}"
            assert action.dest == name
            assert action.default == (tuple(default) if isinstance(default, list) else default)
            assert action.help == f"{meta.help} (default: {settings_doc.default_text(default, kind)})"


def test_flags_give_the_settings_the_core_uses():
    args = build_parser().parse_args([
        "package", "shards", "--output-path", "/x", "--num-groups", "3", "--length-edges-s", "1,4.5",
        "--min-motion-global-mean", "0.2", "--include-filtered", "--force", "--dedup-eps", "0.05"])
    section = cli.section_from_args(args)
    settings = section.shard_settings()
    assert settings.num_groups == 3 and settings.length_edges_s == (1.0, 4.5)
    assert settings.selection.min_motion_global_mean == 0.2 and settings.selection.include_filtered
    assert section.force_rebuild and section.dedup_eps == 0.05
    assert section.max_shard_bytes == PackagingSection().max_shard_bytes  # left out: the definition's
    d = build_parser().parse_args(["package", "dedup", "--output-path", "/x", "--eps", "0.2", "--seed", "7"])
    dedup_settings = cli.section_from_args(d).dedup_settings()
    assert dedup_settings.eps == 0.2 and dedup_settings.random_state == 7
    with pytest.raises(SystemExit):
        build_parser().parse_args(["package", "shards", "--output-path", "/x", "--num-groups", "many"])


def test_the_settings_page_names_the_parsers_flags():
    flags = settings_doc.package_flags_in_parser()
    assert set(flags) == set(PackagingSection.model_fields)
    table = settings_doc.BLOCKS["packaging-settings"]()
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines()[2:]}
    for name in PackagingSection.model_fields:
        for command, flag in package_flags(name):
            assert f"`package {command} {flag}`" in rows[name]
    assert "`package shards --dedup-eps`<br>`package dedup --eps`" in rows["dedup_eps"]
