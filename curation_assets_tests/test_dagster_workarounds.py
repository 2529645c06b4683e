"""The Dagster behaviour that ``defs/shared/dagster_workarounds.py`` relies on, and that each workaround
still has its effect: a Dagster upgrade that changes either fails here (then rework or delete the
workaround) instead of silently slowing every run down or, worse, changing what a run does."""

from __future__ import annotations

import dagster as dg

from curation_assets.defs.shared import dagster_workarounds
from curation_assets.defs.shared.resources import CurationSettings  # importing it installs the schema memo


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
