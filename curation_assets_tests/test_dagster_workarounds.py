"""The Dagster behaviour that ``defs/shared/dagster_workarounds.py`` relies on, and that each workaround
still has its effect: a Dagster upgrade that changes either fails here (then rework or delete the
workaround) instead of silently slowing every run down or, worse, changing what a run does."""

from __future__ import annotations

import dagster as dg
import pytest

from curation_assets.defs.shared import dagster_workarounds
from curation_assets.defs.shared.resources import CurationSettings  # importing it installs the schema memo

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def test_resource_construction_goes_through_the_memoised_schema_function():
    """Dagster derives a pythonic resource's schema through the module-level name the memo
    replaces, once per construction: a copy made by Dagster reuses the cached schema."""
    from dagster._config.pythonic_config import resource as pythonic_resource

    memo = pythonic_resource.infer_schema_from_config_class
    assert getattr(memo, "curation_memoised", False), "the workaround is no longer installed"
    assert dagster_workarounds.memoise_resource_schemas() is True  # idempotent: installed once
    assert pythonic_resource.infer_schema_from_config_class is memo
    before = dict(dagster_workarounds.schema_stats)
    CurationSettings()
    CurationSettings(input_path="/x")
    after = dagster_workarounds.schema_stats
    assert after["reused"] - before["reused"] + after["computed"] - before["computed"] == 2, (
        "constructing a resource no longer calls infer_schema_from_config_class: the memo has no effect")


def test_a_run_copies_a_resource_several_times_and_the_memo_answers_them():
    """The reason for the memo: one run re-derives a resource's schema several times (Dagster
    copies the resource); each of those is answered from the cache, not recomputed."""

    @dg.op
    def uses_settings(settings: CurationSettings) -> None:
        assert settings.options().input_path == "/in"

    @dg.job(resource_defs={"settings": CurationSettings(input_path="/in", output_path="/out")})
    def one_op():
        uses_settings()

    one_op.execute_in_process()  # warm: every schema this job needs is cached now
    before = dict(dagster_workarounds.schema_stats)
    result = one_op.execute_in_process(
        run_config={"resources": {"settings": {"config": {"input_path": "/in", "output_path": "/o2"}}}})
    assert result.success
    reused = dagster_workarounds.schema_stats["reused"] - before["reused"]
    computed = dagster_workarounds.schema_stats["computed"] - before["computed"]
    assert computed == 0 and reused >= 2, (reused, computed)


def test_the_memoised_schema_is_dagsters_own():
    """The memo returns what Dagster computes (same config type, same fields and defaults), and
    runs never change a cached schema (Dagster does not mutate it)."""
    from dagster._config.pythonic_config import resource as pythonic_resource

    memo = pythonic_resource.infer_schema_from_config_class
    original = memo.curation_original
    cached, fresh = memo(CurationSettings, fields_to_omit=set()), original(CurationSettings, fields_to_omit=set())
    assert cached.config_type.key == fresh.config_type.key
    assert {k: (f.default_provided, f.default_value if f.default_provided else None)
            for k, f in cached.config_type.fields.items()} == \
           {k: (f.default_provided, f.default_value if f.default_provided else None)
            for k, f in fresh.config_type.fields.items()}


def _two_asset_job():
    videos = dg.DynamicPartitionsDefinition(name="videos")

    @dg.asset(partitions_def=videos)
    def up(context) -> None:
        assert context.partition_keys

    @dg.asset(partitions_def=videos, deps=[up])
    def down(context) -> None:
        assert context.partition_keys

    return dg.Definitions(assets=[up, down]).resolve_implicit_global_asset_job_def()


@pytest.fixture
def counted_instance():
    """An instance whose ``has_dynamic_partition`` counts the questions that reach it."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", ["a", "b", "c"])
        asked: list[str] = []
        real = instance.has_dynamic_partition

        def counting(partitions_def_name: str, partition_key: str) -> bool:
            asked.append(partition_key)
            return real(partitions_def_name=partitions_def_name, partition_key=partition_key)

        instance.has_dynamic_partition = counting
        try:
            yield instance, asked
        finally:
            vars(instance).pop("has_dynamic_partition", None)


def test_a_run_asks_the_instance_about_its_partition_keys_many_times(counted_instance):
    """The reason for ``known_partitions``: Dagster asks the instance (one storage query each)
    whether the run's keys exist several times per run, through the instance's method."""
    instance, asked = counted_instance
    job = _two_asset_job()
    result = job.execute_in_process(instance=instance, tags=dict(zip(RANGE_TAGS, ("a", "b"))))
    assert result.success
    assert len(asked) >= 4, asked  # a ranged run over 2 assets: several questions per key


def test_known_partitions_answers_the_runs_keys_and_nothing_else(counted_instance):
    instance, asked = counted_instance
    job = _two_asset_job()
    with dagster_workarounds.known_partitions(instance, "videos", {"a", "b"}):
        result = job.execute_in_process(instance=instance, tags=dict(zip(RANGE_TAGS, ("a", "b"))))
        assert result.success
        assert asked == []  # every question about the run's keys was answered from the set
        # a key outside the set still goes to the instance: an unknown one is still refused
        assert instance.has_dynamic_partition("videos", "c") and asked == ["c"]
        assert not instance.has_dynamic_partition("videos", "typed-in")
        with pytest.raises(dg.DagsterUnknownPartitionError, match="typed-in"):
            job.execute_in_process(instance=instance, partition_key="typed-in")
        assert not instance.has_dynamic_partition("other", "a")  # other partition sets: the instance's
    # back to what answered before (here the fixture's counter): the instance is as it was
    assert vars(instance)["has_dynamic_partition"].__name__ == "counting"
    instance.has_dynamic_partition("videos", "a")
    assert asked[-1] == "a"
