"""``manifest_snapshot`` through a real instance: the curate job and clip_manifest at a 2 s stride,
a snapshot, the same videos curated again at 3 s, clip_manifest and a second snapshot, whose
metadata carries the diff against the first (counts checked against the two snapshot files read
with pyarrow) and the command that repeats it."""

from __future__ import annotations

import json
import shlex

import dagster as dg
import pyarrow.parquet as pq
import pytest

from curation_assets.cli import main
from curation_assets.core.keys import key_from_rel_path
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.packaging import assets as pkg
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.partitions import VIDEOS_PARTITION_NAME
from curation_assets.reports import snapshot

from .video_factory import make_video

pytestmark = pytest.mark.slow

RELS = ("a.mp4", "b.mp4")
KEYS = [key_from_rel_path(r) for r in RELS]


def _defs(videos, out, stride: float) -> dg.Definitions:
    options = PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=stride,
                              fixed_stride_min_clip_length_s=1.0)
    return build_definitions(CurationSettings.from_options(options))


def _curate_and_manifest(defs: dg.Definitions, instance) -> None:
    tags = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}
    for job in (CURATE_JOB_NAME, pkg.MANIFEST_JOB_NAME):
        assert defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags).success


def _snapshot(defs: dg.Definitions, instance) -> dict:
    result = dg.materialize(defs.assets, selection=["manifest_snapshot"], instance=instance, resources=defs.resources)
    (mat,) = result.asset_materializations_for_node("manifest_snapshot")
    return {k: v.value for k, v in mat.metadata.items()}


def test_each_materialisation_writes_a_snapshot_and_records_the_diff_against_the_previous(tmp_path, capsys):
    videos = tmp_path / "in"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=6, fps=25, width=256, height=256, audio=False)
    make_video(videos / "b.mp4", seconds=2, fps=25, width=256, height=256, audio=False)
    out = tmp_path / "out"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, KEYS)
        two = _defs(videos, out, 2.0)
        _curate_and_manifest(two, instance)
        first = _snapshot(two, instance)
        assert first["num_clips"] == 4 and first["num_videos"] == 2 and "nothing to compare" in first["note"]
        assert snapshot.list_snapshots(str(out)) == [first["snapshot"]]

        three = _defs(videos, out, 3.0)
        _curate_and_manifest(three, instance)
        second = _snapshot(three, instance)
    assert snapshot.list_snapshots(str(out)) == [first["snapshot"], second["snapshot"]]
    assert second["previous_snapshot"] == first["snapshot"]
    # the counts against the two files, read with pyarrow alone
    old, new = (set(pq.read_table(md["snapshot"]).column("clip_uuid").to_pylist()) for md in (first, second))
    assert second["clips_removed"] == len(old - new) == 3 and second["clips_added"] == len(new - old) == 2
    assert second["clips_changed"] == 0 and second["videos_changed"] == 1 and second["videos_unchanged"] == 1
    assert second["videos_added"] == second["videos_removed"] == 0 and second["identical"] is False
    assert second["settings_changed"] == ["fixed_stride_split_duration"]
    assert "fixed_stride_split_duration: 2.0 -> 3.0" in second["diff"]
    assert "0.00-2.00 s, 2.00-4.00 s, 4.00-6.00 s -> 0.00-3.00 s, 3.00-6.00 s" in second["diff"]
    # the recorded command runs and says the same
    command = shlex.split(second["diff_command"])
    assert command[:2] == ["curation-assets", "diff"]
    assert main([*command[1:], "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {k: doc["summary"][k] for k in ("clips_added", "clips_removed", "videos_changed")} == {
        "clips_added": 2, "clips_removed": 3, "videos_changed": 1}
