"""The backfill planning rules and range batching alone (core.backfill, no Dagster)."""

from __future__ import annotations

import pytest

from curation_assets.core import backfill
from curation_assets.core.backfill import Wanted, contiguous_batches, plan_backfill, reason_tag, run_key


def test_missing_failed_and_stale_are_wanted_current_and_busy_ones_are_not():
    keys = ["done", "old", "none", "failed", "busy", "untagged"]
    status = {"done": backfill.MATERIALIZED, "old": backfill.MATERIALIZED, "failed": backfill.FAILED,
              "busy": backfill.IN_PROGRESS, "untagged": backfill.MATERIALIZED}
    versions = {"done": "0.1.0:abc", "old": "0.1.0:def", "failed": "0.1.0:abc"}
    wanted = plan_backfill(keys, status, versions, "0.1.0:abc")
    assert [(w.key, w.reason) for w in wanted] == [("old", "stale"), ("none", "missing"), ("failed", "failed"),
                                                   ("untagged", "stale")]
    assert "0.1.0:def" in wanted[0].detail and "no recorded" in wanted[3].detail
    assert plan_backfill(keys, {k: backfill.MATERIALIZED for k in keys}, {k: "v" for k in keys}, "v") == []


def test_batches_are_runs_of_consecutive_keys_in_the_instance_order():
    order = [f"k{i}" for i in range(10)]
    assert contiguous_batches(order, ["k7", "k1", "k2", "k3", "k8", "k5"], 2) == [["k1", "k2"], ["k3"], ["k5"],
                                                                                 ["k7", "k8"]]
    assert contiguous_batches(order, order, 4) == [order[0:4], order[4:8], order[8:10]]
    assert contiguous_batches(order, [], 4) == []
    with pytest.raises(ValueError, match="not partitions"):
        contiguous_batches(order, ["k1", "nope"], 4)
    with pytest.raises(ValueError, match="batch size must be at least 1, got 0"):
        contiguous_batches(order, ["k1"], 0)


def test_run_keys_name_exactly_their_items_and_reasons_have_one_spelling():
    assert run_key("upload", ["a@1", "b@2"]) == run_key("upload", ["b@2", "a@1"])
    assert run_key("upload", ["a@1", "b@2"]) != run_key("upload", ["a@1", "b@3"])
    assert run_key("upload", ["a@1"]) != run_key("backfill", ["a@1"])
    assert reason_tag(["stale", "new", "stale", "missing"]) == "new+missing+stale"
    assert reason_tag([w.reason for w in (Wanted("a", "failed"),)]) == "failed"


def test_the_data_version_names_version_and_settings():
    record = {"version": "0.1.0", "settings_hash": "0123456789abcdef", "settings": {}}
    assert backfill.data_version(record) == "0.1.0:0123456789abcdef"
