"""One settings definition per section (pipeline, training packages, caption service): the Dagster
resources subclass it and restate nothing, the launchpad shows its defaults and help, one reader
applies the environment to all three, and nothing in Dagster is patched to make them cheap."""

from __future__ import annotations

import argparse

import dagster as dg
import pytest

from curation_assets.core.caption_settings import CaptionSection
from curation_assets.core.options import DEFAULTS, PipelineOptions, PipelineSection, options_from_env
from curation_assets.core.settings import read_env, setting_of
from curation_assets.defs.shared.resources import (
    CaptionService,
    CurationSettings,
    PackagingSettings,
    caption_service_from_env,
    packaging_settings_from_env,
)
from curation_assets.packaging.settings import PackagingSection

PAIRS = [(CurationSettings, PipelineSection), (PackagingSettings, PackagingSection), (CaptionService, CaptionSection)]


@pytest.mark.parametrize(("resource", "section"), PAIRS)
def test_each_resource_is_its_section_and_restates_no_field(resource, section):
    assert issubclass(resource, section) and issubclass(resource, dg.ConfigurableResource)
    assert list(resource.model_fields) == list(section.model_fields)
    # one type widened for Dagster only (a String field refuses the launchpad's `true`): same field otherwise
    widened = {"generate_embeddings"} if resource is CurationSettings else set()
    assert set(vars(resource).get("__annotations__", {})) & set(section.model_fields) == widened
    for name, info in section.model_fields.items():
        assert resource.model_fields[name].default == info.default
        assert setting_of(info).help, f"{section.__name__}.{name} has no help text"


@pytest.mark.parametrize(("resource", "section"), PAIRS)
def test_the_launchpad_shows_each_settings_default_and_help(resource, section):
    fields = resource().to_config_schema().as_field().config_type.fields
    assert set(fields) == set(section.model_fields)
    for name, info in section.model_fields.items():
        assert fields[name].description == setting_of(info).help
        assert fields[name].default_provided and fields[name].default_value == info.default, name


def test_a_settings_resource_gives_the_options_it_was_configured_with():
    settings = CurationSettings(limit_clips=3, caption_models=["other"])
    options = settings.options()
    assert options.limit_clips == 3 and options.caption_models == ("other",)
    assert settings.options() is options  # made once per resource instance
    assert CurationSettings(limit_clips=4).options().limit_clips == 4  # another instance, its own


def test_options_are_validated_with_every_problem_named():
    with pytest.raises(ValueError, match=r"max_workers=0 is out of bounds \(allowed: 1 to 256\)") as raised:
        PipelineOptions(max_workers=0, motion_filter="sometimes")
    assert "motion_filter='sometimes' (choose one of disable, enable, score-only)" in str(raised.value)
    with pytest.raises(ValueError, match="limit_clips='3' \\(expected a whole number\\)"):
        PipelineOptions(limit_clips="3")
    with pytest.raises(TypeError, match="unknown settings: typo"):
        PipelineOptions(typo=1)
    with pytest.raises(ValueError, match="invalid settings: max_workers=0"):
        CurationSettings(max_workers=0).options()


def test_combinations_are_judged_once_each_field_is_fine_and_some_always():
    """One message names every problem: a cron or caption problem beside a field's own, but a
    combination (a minimum above the stride) only when every field is fine."""
    with pytest.raises(ValueError, match=r"max_workers=0 is out of bounds .*; backfill_cron='x' \(five cron"):
        PipelineOptions(max_workers=0, backfill_cron="x")
    with pytest.raises(ValueError, match=r"limit_clips='a' \(expected a whole number\); caption_models / "
                                         r"enhanced_caption_models name a model twice"):
        PipelineOptions(limit_clips="a", caption_models=["a", "a"])
    with pytest.raises(ValueError, match=r"^invalid settings: max_workers=0 is out of bounds \(allowed: 1 to 256\)$"):
        PipelineOptions(fixed_stride_min_clip_length_s=20.0, max_workers=0)
    with pytest.raises(ValueError, match="fixed_stride_min_clip_length_s=20 is above fixed_stride_split_duration=10"):
        PipelineOptions(fixed_stride_min_clip_length_s=20.0)


def test_options_keep_lists_as_tuples_and_are_immutable():
    options = PipelineOptions(video_extensions=[".mp4"], caption_models=["a"])
    assert options.video_extensions == (".mp4",) and options.caption_models == ("a",)
    assert options == PipelineOptions(video_extensions=(".mp4",), caption_models=("a",))
    assert hash(options) == hash(PipelineOptions(video_extensions=(".mp4",), caption_models=("a",)))
    with pytest.raises(ValueError, match="frozen"):
        options.limit_clips = 5  # type: ignore[misc]
    assert options.replace(limit_clips=5).limit_clips == 5 and options.limit_clips == 0


def test_the_declared_defaults_are_the_options_defaults():
    options = PipelineOptions()
    for name in PipelineSection.model_fields:
        if not setting_of(PipelineSection.model_fields[name]).path:  # paths are made absolute
            assert getattr(options, name) == (tuple(v) if isinstance(v := getattr(DEFAULTS, name), list) else v), name


def test_one_reader_applies_the_environment_to_every_section():
    environ = {"CURATION_LIMIT_CLIPS": "2", "CURATION_CAPTION_MODELS": "mine",
               "CURATION_PACKAGE_LENGTH_EDGES_S": "1, 2.5", "CURATION_PACKAGE_MIN_AESTHETIC_SCORE": "none",
               "CURATION_PACKAGE_NUM_GROUPS": "25e1",
               "CURATION_CAPTION_MODEL": "served", "CURATION_CAPTION_TIMEOUT_S": "5",
               "CURATION_CAPTION_ENHANCE_API_KEY_ENV": "OTHER_KEY", "CURATION_UNKNOWN": "ignored"}
    options = options_from_env(environ)
    assert options.limit_clips == 2 and options.caption_models == ("mine",)
    packaging = packaging_settings_from_env(environ)
    assert packaging.length_edges_s == [1.0, 2.5] and packaging.num_groups == 250
    assert packaging.min_aesthetic_score is None
    service = caption_service_from_env(environ)
    assert service.model == "served" and service.timeout_s == 5.0 and service.enhance_api_key_env == "OTHER_KEY"
    assert read_env(CaptionSection, "CURATION_CAPTION_", {"CURATION_CAPTION_MODELS": "x"}) == {}
    assert packaging_settings_from_env({}) == PackagingSettings() and caption_service_from_env({}) == CaptionService()


@pytest.mark.parametrize(("read", "environ", "named"), [
    (packaging_settings_from_env, {"CURATION_PACKAGE_NUM_GROUPS": "many"}, "CURATION_PACKAGE_NUM_GROUPS: not a whole number"),
    (packaging_settings_from_env, {"CURATION_PACKAGE_LENGTH_EDGES_S": "1,x"}, "CURATION_PACKAGE_LENGTH_EDGES_S: not a number"),
    (caption_service_from_env, {"CURATION_CAPTION_MAX_RETRIES": "3.5"}, "CURATION_CAPTION_MAX_RETRIES: not a whole number"),
    (options_from_env, {"CURATION_GENERATE_PREVIEWS": "maybe"}, "CURATION_GENERATE_PREVIEWS: not a boolean"),
])
def test_a_bad_variable_is_named(read, environ, named):
    with pytest.raises(ValueError, match=named):
        read(environ)


def test_nothing_in_dagster_is_patched_for_the_settings():
    """The resources' config schemas come from Dagster's own function (the memo that patched it
    is gone; benchmarks/resource_copy.py measures the cost)."""
    from dagster._config.pythonic_config import config, resource

    import curation_assets.definitions  # noqa: F401  (everything a code location imports)

    assert resource.infer_schema_from_config_class is config.infer_schema_from_config_class
    assert resource.infer_schema_from_config_class.__module__ == "dagster._config.pythonic_config.config"


def test_the_package_commands_flag_defaults_are_the_packaging_settings():
    from curation_assets.packaging.cli import add_package_parser

    parser = argparse.ArgumentParser()
    add_package_parser(parser.add_subparsers(dest="command"))
    shards = vars(parser.parse_args(["package", "shards", "--output-path", "x"]))
    dedup = vars(parser.parse_args(["package", "dedup", "--output-path", "x"]))
    section = PackagingSection()
    assert {k: shards[k] for k in ("name", "max_shard_bytes", "max_shard_samples", "num_groups", "val_fraction",
                                   "bucket_by", "energon_workers")} == \
        section.model_dump(include={"name", "max_shard_bytes", "max_shard_samples", "num_groups", "val_fraction",
                                    "bucket_by", "energon_workers"})
    assert shards["length_edges_s"] == tuple(section.length_edges_s)
    assert (dedup["dedup_n_clusters"], dedup["dedup_eps"], dedup["dedup_which_to_keep"], dedup["dedup_max_iter"],
            dedup["dedup_device"], dedup["dedup_seed"]) == (section.dedup_n_clusters, section.dedup_eps, section.dedup_which_to_keep,
                               section.dedup_max_iter, section.dedup_device, section.dedup_seed)


def test_the_cli_caption_flags_go_over_the_caption_variables(monkeypatch):
    from curation_assets.cli import build_parser
    from curation_assets.cli.arguments import caption_service_from_args

    monkeypatch.setenv("CURATION_CAPTION_TIMEOUT_S", "7")
    monkeypatch.setenv("CURATION_CAPTION_BASE_URL", "http://from-env:1/v1")
    monkeypatch.setenv("CURATION_CAPTION_MODEL", "env-model")
    args = build_parser().parse_args(["run", "--video-dir", "in", "--output-path", "out",
                                      "--caption-endpoint", "http://flag:2/v1"])
    service = caption_service_from_args(args)
    assert isinstance(service, CaptionService)
    assert (service.base_url, service.model, service.timeout_s) == ("http://flag:2/v1", "env-model", 7.0)
    assert service.enhance_model == CaptionSection().enhance_model
