"""The layout checks as Dagster asset checks: evaluated per video partition inside a ranged run,
pointing at that video's materialisation; a failing check names the file; blocking
(``checks_block_downstream``) holds back a downstream asset that waits for blocking checks, and
off it does not; the clip table on each video's ``clips`` materialisation; the CLI summary."""

from __future__ import annotations

import io
import uuid

import dagster as dg
import pytest

from curation_assets.cli import run_pipeline
from curation_assets.core import layout
from curation_assets.core import layout_checks as lc
from curation_assets.core.options import PipelineOptions
from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.curation.checks import CHECK_ASSETS
from curation_assets.defs.shared.resources import CaptionService
from curation_assets.defs.shared.resources import CurationSettings
from curation_assets.partitions import VIDEOS_PARTITION_NAME, videos_partitions

from .model_fixtures import ChatServer
from .video_factory import make_video

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _options(videos, out, **kw) -> PipelineOptions:
    return PipelineOptions(input_path=str(videos), output_path=str(out), fixed_stride_split_duration=1.0,
                           fixed_stride_min_clip_length_s=0.5, generate_embeddings="off", **kw)


def _evaluations(instance, key: str) -> dict[str, dg.AssetCheckEvaluation]:
    """The latest evaluation of each layout check for partition ``key``."""
    out = {}
    for name, asset in CHECK_ASSETS.items():
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(asset, name), limit=100)
        for record in records:  # newest first
            if record.partition == key and record.event and record.event.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION":
                out[name] = record.event.dagster_event.event_specific_data
                break
    return out


def test_checks_per_partition_in_a_ranged_run_with_the_clip_table(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=2, fps=10, width=64, height=64)
    (videos / "broken.mp4").write_bytes(b"\x00" * 64)
    make_video(videos / "b.mp4", seconds=1, fps=10, width=64, height=64)
    keys = ["a.mp4", "broken.mp4", "b.mp4"]
    # 64x64 is too small for motion vectors: each clip gets the sentinel scores and an error
    options = _options(videos, out, generate_captions=True)
    with ChatServer() as server, dg.instance_for_test() as instance:
        service = CaptionService(base_url=server.base_url, backoff_s=0.01, timeout_s=10)
        defs = build_definitions(CurationSettings.from_options(options), caption_service=service)
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, keys)
        result = defs.resolve_job_def(CURATE_JOB_NAME).execute_in_process(
            instance=instance, tags=dict(zip(RANGE, (keys[0], keys[-1]))), raise_on_error=False)
        assert not result.success  # broken.mp4 fails its own partitions
        for key in ("a.mp4", "b.mp4"):
            evaluations = _evaluations(instance, key)
            assert set(evaluations) == set(lc.CHECKS), evaluations.keys()
            assert all(e.passed for e in evaluations.values()), \
                {n: e.description for n, e in evaluations.items()}
            (mat,) = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("clips"), asset_partitions=[key]), limit=1).records
            target = evaluations[lc.CLIP_FILES_DECODE].target_materialization_data
            assert target.storage_id == mat.storage_id and target.run_id == result.run_id
            table = mat.asset_materialization.metadata["clip_table"]
            rows = [r.data for r in table.records]
            assert len(rows) == {"a.mp4": 2, "b.mp4": 1}[key]
            assert [c.name for c in table.schema.columns] == ["clip", "start_s", "end_s", "status", "motion",
                                                              "aesthetic", "errors", "caption"]
            for row in rows:
                uuid.UUID(row["clip"])
                assert row["status"] == "passed" and row["motion"] == -1.0 and "motion_decode" in row["errors"]
                assert row["caption"] and len(row["caption"]) <= 80 and row["aesthetic"] is None
            assert rows[0]["start_s"] == 0.0 and rows[0]["end_s"] == 1.0
        assert _evaluations(instance, "broken.mp4") == {}  # not written: not checked


def test_a_filtered_clip_row_says_which_filter_and_its_score():
    from curation_assets.core.model import Clip, MotionScore, Span, Window
    from curation_assets.defs.curation.metadata import clip_row

    clip = Clip("/in/a.mp4", Span(0.0, 2.5, 0, 50), aesthetic_score=3.25, filtered_by="aesthetic",
                motion=MotionScore(0.01, 0.0001), windows=[Window(0, 49, captions={"qwen": "word " * 40})])
    row = clip_row(clip, ("qwen",))
    assert row["status"] == "filtered: aesthetic" and row["aesthetic"] == 3.25 and row["motion"] == 0.01
    assert row["end_s"] == 2.5 and len(row["caption"]) == 80 and row["caption"].endswith("…")
    assert clip_row(clip, ("other",))["caption"] == ""


def _stray_copy(videos, out, name: str) -> str:
    """A copy of the first clip of ``name`` left in filtered_clips/ by some earlier tool: the clip
    passes, so its mp4 is then in both folders (the clip id follows the spec's rule)."""
    uid = uuid.uuid5(uuid.NAMESPACE_URL, f"{videos / name}_0_10")
    rel = f"{layout.FILTERED_CLIPS}/{uid}.mp4"
    (out / layout.FILTERED_CLIPS).mkdir(parents=True, exist_ok=True)
    make_video(out / rel, seconds=1, fps=10, width=64, height=64)
    return rel


@dg.asset(partitions_def=videos_partitions, deps=["clips"],
          automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed())
def downstream_of_clips() -> None:
    """Stands for the packaging assets: follows each video's clips once its blocking checks pass."""


@pytest.mark.parametrize("blocking", [True, False])
def test_a_failing_check_names_the_file_and_blocks_downstream_only_when_set(tmp_path, blocking):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(videos / name, seconds=1, fps=10, width=64, height=64)
    stray = _stray_copy(videos, out, "a.mp4")
    options = _options(videos, out, generate_previews=False, checks_block_downstream=blocking)
    defs = dg.Definitions.merge(build_definitions(CurationSettings.from_options(options)),
                                dg.Definitions(assets=[downstream_of_clips]))
    downstream = dg.AssetSelection.assets(downstream_of_clips)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITION_NAME, ["a.mp4", "b.mp4"])
        # the automation sensor's first tick, before anything was written: nothing to do yet
        before = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=downstream)
        assert before.total_requested == 0
        result = defs.resolve_job_def(CURATE_JOB_NAME).execute_in_process(
            instance=instance, tags=dict(zip(RANGE, ("a.mp4", "b.mp4"))), raise_on_error=False)
        assert result.success is not blocking
        failed = _evaluations(instance, "a.mp4")[lc.CLIP_FILES_DECODE]
        assert not failed.passed and failed.blocking is blocking
        assert failed.description == f"{stray}: a passed clip's mp4 is also in filtered_clips/"
        assert failed.metadata["first_failure"].value == failed.description
        assert _evaluations(instance, "b.mp4")[lc.CLIP_FILES_DECODE].passed
        # both videos were written: their partitions are materialised either way
        mats = instance.fetch_materializations(dg.AssetKey("clips"), limit=10).records
        assert {r.asset_materialization.partition for r in mats} == {"a.mp4", "b.mp4"}
        if blocking:
            failure = next(e for e in result.all_events if e.is_step_failure)
            assert failure.step_key == "clip_writer" and "layout checks" in failure.step_failure_data.error.message
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=downstream,
                                                       cursor=before.cursor)
        requested = set(evaluation.get_requested_partitions(downstream_of_clips.key))
        assert requested == ({"b.mp4"} if blocking else {"a.mp4", "b.mp4"})


def test_the_cli_summary_reports_a_failing_check(tmp_path):
    videos, out = tmp_path / "in", tmp_path / "out"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=1, fps=10, width=64, height=64)
    stray = _stray_copy(videos, out, "a.mp4")
    report = io.StringIO()
    assert run_pipeline(_options(videos, out, generate_previews=False), home=str(tmp_path / "home"), stream=report) == 1
    line = next(l for l in report.getvalue().splitlines() if l.startswith("a.mp4"))
    assert f"FAILED: check {lc.CLIP_FILES_DECODE}: {stray}" in line, report.getvalue()
