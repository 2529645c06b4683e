"""The package-top Python API (issue 19): NeMo's ClipWriterStage, stages and Pipeline, mapped onto
the one settings definition, refusing by name what is not implemented."""

from __future__ import annotations

import dataclasses
import os

import pytest

from curation_assets import (
    ClipWriterStage,
    CosmosEmbed1EmbeddingStage,
    FixedStrideExtractorStage,
    MotionFilterStage,
    Pipeline,
    PipelineOptions,
    TransNetV2ClipExtractionStage,
    VideoReader,
)
from curation_assets.core.options import DEFAULTS


def test_writer_signature_is_the_references():
    fields = [(f.name, f.type, f.default) for f in dataclasses.fields(ClipWriterStage)]
    missing = dataclasses.MISSING
    assert fields == [
        ("output_path", "str", missing), ("input_path", "str", missing), ("upload_clips", "bool", missing),
        ("dry_run", "bool", missing), ("generate_embeddings", "bool", missing),
        ("generate_previews", "bool", missing), ("generate_captions", "bool", missing),
        ("embedding_algorithm", "str", "cosmos-embed1"), ("caption_models", "list[str] | None", None),
        ("enhanced_caption_models", "list[str] | None", None), ("verbose", "bool", False),
        ("max_workers", "int", 6), ("log_stats", "bool", False)]


def test_writer_maps_onto_the_settings(tmp_path):
    base = dict(output_path=str(tmp_path / "o"), input_path=str(tmp_path / "i"), upload_clips=False, dry_run=True,
                generate_previews=False, generate_captions=False)
    on = ClipWriterStage(generate_embeddings=True, **base).options()
    off = ClipWriterStage(generate_embeddings=False, max_workers=3, **base).options()
    assert (on.generate_embeddings, off.generate_embeddings) == ("on", "off")
    assert on.embedding_algorithm == DEFAULTS.embedding_algorithm  # "cosmos-embed1": our default variant
    assert (off.max_workers, off.upload_clips, off.dry_run) == (3, False, True)
    assert on.caption_models == tuple(DEFAULTS.caption_models)  # None: the setting's default
    with pytest.raises(ValueError, match=r"embedding_algorithm='internvideo2'.*cosmos-embed1-224p"):
        ClipWriterStage(generate_embeddings=True, embedding_algorithm="internvideo2", **base).options()
    with pytest.raises(ValueError, match=r"max_workers=0 is out of bounds \(allowed: 1 to 256\)"):
        ClipWriterStage(generate_embeddings=False, max_workers=0, **base).options()


def test_options_take_a_bool_and_name_the_allowed_values():
    assert PipelineOptions(generate_embeddings=True).generate_embeddings == "on"
    assert PipelineOptions(generate_embeddings=False).generate_embeddings == "off"
    assert PipelineOptions(generate_embeddings="auto").generate_embeddings == "auto"
    with pytest.raises(ValueError, match=r"generate_embeddings=1 \(expected text; choose one of auto, on, off or "
                                         r"true/false\)"):
        PipelineOptions(generate_embeddings=1)
    with pytest.raises(ValueError, match=r"splitting_algorithm=3 \(expected text; choose one of fixed_stride, "
                                         r"transnetv2\)"):
        PipelineOptions(splitting_algorithm=3)


def test_helpers_are_the_layouts_for_local_and_s3():
    for out in ("/data/out", "s3://bucket/curated"):
        assert ClipWriterStage.get_output_path_clips(out) == f"{out}/clips"
        assert ClipWriterStage.get_output_path_clips(out, filtered=True) == f"{out}/filtered_clips"
        assert ClipWriterStage.get_output_path_previews(out) == f"{out}/previews"
        assert ClipWriterStage.get_output_path_metas(out, "v0") == f"{out}/metas/v0"
        assert ClipWriterStage.get_output_path_ce1_embd_parquet(out) == f"{out}/ce1_embd_parquet"
        assert ClipWriterStage.get_output_path_processed_videos(out) == f"{out}/processed_videos"
        assert ClipWriterStage.get_output_path_processed_clip_chunks(out) == f"{out}/processed_clip_chunks"


def _writer(tmp_path, **kw) -> ClipWriterStage:
    return ClipWriterStage(output_path=str(tmp_path / "o"), input_path=str(tmp_path / "i"), upload_clips=True,
                           dry_run=False, generate_embeddings=False, generate_previews=True,
                           generate_captions=False, **kw)


def test_pipeline_gathers_the_stages_settings(tmp_path):
    p = Pipeline(name="split", description="NeMo's shape")
    p.add_stage(VideoReader(input_video_path=os.path.relpath(tmp_path / "i"), video_limit=3))  # the writer's folder
    p.add_stage(FixedStrideExtractorStage(clip_len_s=4.0, clip_stride_s=4.0, min_clip_length_s=1.0, limit_clips=2))
    p.add_stage(MotionFilterStage(score_only=False, global_mean_threshold=0.01, per_patch_min_256_threshold=0.0))
    p.add_stage(_writer(tmp_path))
    o = p.options()
    assert (o.fixed_stride_split_duration, o.fixed_stride_min_clip_length_s, o.limit_clips) == (4.0, 1.0, 2)
    assert (o.motion_filter, o.motion_global_mean_threshold) == ("enable", 0.01)
    assert p._settings()[1] == {"video_limit": 3}
    scenes = Pipeline("t", stages=[TransNetV2ClipExtractionStage(threshold=0.3, limit_clips=-1), _writer(tmp_path)])
    assert (scenes.options().splitting_algorithm, scenes.options().limit_clips) == ("transnetv2", 0)  # -1: all
    with pytest.raises(ValueError, match=r"TransNetV2ClipExtractionStage\(entire_scene_as_clip=False\) is not "
                                         r"implemented; a video without a cut is one scene"):
        TransNetV2ClipExtractionStage(entire_scene_as_clip=False)
    no_motion = Pipeline("m", stages=[_writer(tmp_path)]).options()
    assert no_motion.motion_filter == "disable"  # no motion stage: no motion scores, as in NeMo


def test_refusals_name_the_stage_or_parameter(tmp_path):
    with pytest.raises(TypeError, match=r"FixedStrideExtractorStage has no parameter clip_overlap_s here"):
        FixedStrideExtractorStage(clip_len_s=4.0, clip_overlap_s=1.0)
    with pytest.raises(ValueError, match=r"FixedStrideExtractorStage\(clip_stride_s=2.0\) is not implemented; "
                                         r"clips are cut back to back"):
        Pipeline("s", stages=[FixedStrideExtractorStage(clip_len_s=4.0, clip_stride_s=2.0),
                              _writer(tmp_path)]).options()
    with pytest.raises(ImportError, match=r"InternVideo2EmbeddingStage is not implemented by curation_assets; use "
                                          r"CosmosEmbed1EmbeddingStage"):
        from curation_assets import InternVideo2EmbeddingStage  # noqa: F401

    class DocumentDedupStage:
        pass

    with pytest.raises(TypeError, match=r"DocumentDedupStage is not a stage curation_assets implements"):
        Pipeline("u").add_stage(DocumentDedupStage())
    with pytest.raises(TypeError, match=r"run\(DaskExecutor\) is not an executor curation_assets knows; use "
                                        r"XennaExecutor\(\), RayDataExecutor\(\) or none"):
        Pipeline("x", stages=[_writer(tmp_path)]).run(type("DaskExecutor", (), {})())
    with pytest.raises(ValueError, match=r"ClipWriterStage sets embedding_algorithm='cosmos-embed1-224p' but "
                                         r"CosmosEmbed1EmbeddingStage set 'cosmos-embed1-448p'"):
        Pipeline("c", stages=[CosmosEmbed1EmbeddingStage(variant="448p"),
                              _writer(tmp_path, embedding_algorithm="cosmos-embed1-224p")]).options()
    with pytest.warns(UserWarning, match=r"MotionFilterStage: gpus_per_worker have no effect here"):
        MotionFilterStage(score_only=True, gpus_per_worker=0.5)
    with pytest.raises(ValueError, match=r"ClipAestheticFilterStage added after ClipWriterStage"):
        from curation_assets import ClipAestheticFilterStage

        Pipeline("o", stages=[_writer(tmp_path)]).add_stage(ClipAestheticFilterStage(score_threshold=3.5))


def test_definitions_are_the_code_location_with_these_settings(tmp_path):
    from curation_assets.definitions import CURATE_JOB_NAME

    p = Pipeline("d", stages=[FixedStrideExtractorStage(clip_len_s=3.0, clip_stride_s=3.0), _writer(tmp_path)])
    defs = p.definitions()
    assert defs.resolve_job_def(CURATE_JOB_NAME).name == CURATE_JOB_NAME
    bound = defs.resources["settings"].data  # the settings resource every asset and IO manager reads
    expected = p.options().values()
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in bound.items()} == expected
    assert (bound["fixed_stride_split_duration"], bound["generate_embeddings"]) == (3.0, "off")
