"""The Dagster behaviour that ``defs/shared/dagster_workarounds.py`` relies on, and that each workaround
still has its effect: a Dagster upgrade that changes either fails here (then rework or delete the
workaround) instead of silently slowing every run down or, worse, changing what a run does."""

from __future__ import annotations

import dagster as dg
import pytest

from curation_assets.defs.shared import dagster_workarounds

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


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
